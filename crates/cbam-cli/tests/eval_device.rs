//! `cbam eval --device` on the QEMU boards: 1,000 Fashion-MNIST test images through the
//! evaluation firmware over the debug link, every output equal to the host core's, the
//! accuracy equal to `cbam eval` on the host; and a link that damages frames on purpose
//! still gives the same result.
//!
//! Needs what `scripts/setup.sh` installs (QEMU, the embedded targets, the dataset). The
//! first run builds the evaluation firmware for each board (minutes); later runs reuse it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const IMAGES: &str = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const LABELS: &str = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fmnist_cbam.cbam")
}

/// `cbam eval` on the test set with `extra` arguments, as JSON; panics with stderr when
/// the command fails.
fn eval(limit: usize, extra: &[&str]) -> Value {
    assert!(
        PathBuf::from(IMAGES).is_file() && PathBuf::from(LABELS).is_file(),
        "the Fashion-MNIST test set is missing: run scripts/setup.sh (dataset-fashion-mnist)"
    );
    let limit = limit.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .arg("eval")
        .arg(model())
        .args(["--data", IMAGES, "--labels", LABELS, "--limit", &limit, "--json"])
        .args(extra)
        .output()
        .expect("the cbam binary runs");
    assert!(
        out.status.success(),
        "cbam eval {extra:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// The device run agrees with the host run on every image.
fn matches_the_host(board: &str, unit: &str) {
    let host = eval(1000, &[]);
    let device = eval(1000, &["--device", board]);
    assert_eq!(device["n"], 1000, "{device}");
    assert_eq!(device["host_mismatches"], 0, "{device}");
    assert_eq!(device["accuracy"], host["accuracy"], "{device}\n{host}");
    assert_eq!(device["board"], board);
    let latency = &device["latency"];
    assert_eq!(latency["unit"], unit, "{device}");
    let (min, median, max) = (
        latency["min"].as_u64().unwrap_or(0),
        latency["median"].as_u64().unwrap_or(0),
        latency["max"].as_u64().unwrap_or(0),
    );
    assert!(0 < min && min <= median && median <= max, "{latency}");
    let overhead = device["link_overhead"]["median"].as_u64().unwrap_or(0);
    assert!(
        0 < overhead && overhead < median,
        "the link costs something, and less than the model: {device}"
    );
    assert!(device["images_per_second"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn mps2_an386_matches_the_host_on_1000_images() {
    matches_the_host("mps2-an386", "instructions");
}

#[test]
fn riscv_virt_matches_the_host_on_1000_images() {
    matches_the_host("riscv-virt", "instructions");
}

/// `riscv-virt` counts with `minstret`, exact whatever ran before the inference, so even
/// the latencies must come out identical.
#[test]
fn damaged_and_lost_frames_are_resent_and_the_result_is_unchanged() {
    let clean = eval(300, &["--device", "riscv-virt"]);
    let faulty = eval(
        300,
        &["--device", "riscv-virt", "--link-fault-rate", "0.1"],
    );
    assert!(
        faulty["link"]["resent"].as_u64().unwrap_or(0) > 10,
        "the hook damaged frames: {faulty}"
    );
    assert_eq!(clean["link"]["resent"], 0, "{clean}");
    for key in ["n", "accuracy", "host_mismatches", "latency"] {
        assert_eq!(faulty[key], clean[key], "{key}: {faulty}\n{clean}");
    }
    assert_eq!(faulty["host_mismatches"], 0);
}
