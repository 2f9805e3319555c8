//! `cbam eval --device` end to end: 1,000 Fashion-MNIST test images through the evaluation
//! firmware on each QEMU board, every output equal to the host core's and the accuracy
//! equal to `cbam eval` on the host; a link that damages frames on purpose gives the same
//! result; a link that goes dead ends the run with a clear error; a real board without
//! its probe is refused before anything is built.
//!
//! Needs what `scripts/setup.sh` installs (QEMU, the embedded targets, the dataset). The
//! first run builds the evaluation firmware of each QEMU board (minutes); later runs reuse
//! it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const IMAGES: &str = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const LABELS: &str = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
/// Longer than any run here may take, a first firmware build included: a hang fails.
const HANG: Duration = Duration::from_secs(15 * 60);

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fmnist_cbam.cbam")
}

/// `cbam eval` on the first `limit` test images with `extra` arguments; killed after HANG.
fn cbam_eval(limit: usize, extra: &[&str]) -> Output {
    assert!(
        PathBuf::from(IMAGES).is_file() && PathBuf::from(LABELS).is_file(),
        "the Fashion-MNIST test set is missing: run scripts/setup.sh (dataset-fashion-mnist)"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .arg("eval")
        .arg(model())
        .args(["--data", IMAGES, "--labels", LABELS, "--json"])
        .args(["--limit", &limit.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cbam binary runs");
    let start = Instant::now();
    while child.try_wait().expect("waiting for cbam").is_none() {
        if start.elapsed() > HANG {
            let _ = child.kill();
            panic!("cbam eval {extra:?} still runs after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("cbam's output")
}

/// The JSON report of a run that must succeed.
fn report(limit: usize, extra: &[&str]) -> Value {
    let out = cbam_eval(limit, extra);
    assert!(
        out.status.success(),
        "cbam eval {extra:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// The stderr of a run that must fail.
fn failure(limit: usize, extra: &[&str]) -> String {
    let out = cbam_eval(limit, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "cbam eval {extra:?} succeeded:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "a failed run printed a report");
    stderr
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// 1,000 images on `board`: the device agrees with the host core on every one.
fn matches_the_host(board: &str) {
    let host = report(1000, &[]);
    let device = report(1000, &["--device", board]);
    assert_eq!(device["n"], 1000, "{device}");
    assert_eq!(device["host_mismatches"], 0, "{device}");
    assert_eq!(device["accuracy"], host["accuracy"], "{device}\n{host}");
    assert_eq!(device["ties"], host["ties"], "{device}\n{host}");
    assert_eq!(device["board"], board);
    assert!(
        device["firmware"]["build"]
            .as_str()
            .is_some_and(|b| b.starts_with("cbam-firmware-")),
        "{device}"
    );
    let latency = &device["latency"];
    assert_eq!(latency["unit"], "instructions", "{device}");
    let (min, median, p99, max) = (
        number(&latency["min"]),
        number(&latency["median"]),
        number(&latency["p99"]),
        number(&latency["max"]),
    );
    assert!(
        0 < min && min <= median && median <= p99 && p99 <= max,
        "{latency}"
    );
    let overhead = number(&device["link_overhead"]["median"]);
    assert!(
        0 < overhead && overhead < median,
        "the link costs something, and less than the model: {device}"
    );
    assert_eq!(
        device["link"]["resent"], 0,
        "a clean link resends nothing: {device}"
    );
    assert!(device["images_per_second"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn mps2_an386_matches_the_host_on_1000_images() {
    matches_the_host("mps2-an386");
}

#[test]
fn riscv_virt_matches_the_host_on_1000_images() {
    matches_the_host("riscv-virt");
}

/// `riscv-virt` counts with `minstret`, exact whatever ran before the inference, so even
/// the latencies must come out identical.
#[test]
fn damaged_and_lost_frames_are_resent_and_the_result_is_unchanged() {
    let clean = report(200, &["--device", "riscv-virt"]);
    let faulty = report(200, &["--device", "riscv-virt", "--link-fault-rate", "0.1"]);
    assert!(
        number(&faulty["link"]["resent"]) >= 10,
        "the hook damaged frames: {faulty}"
    );
    for key in ["n", "accuracy", "ties", "host_mismatches", "latency"] {
        assert_eq!(faulty[key], clean[key], "{key}: {faulty}\n{clean}");
    }
    assert_eq!(faulty["host_mismatches"], 0);
}

#[test]
fn a_dead_link_ends_the_run_with_a_clear_error() {
    // Hello and four images pass; the fifth image's request and all after it are lost.
    let stderr = failure(
        20,
        &[
            "--device",
            "riscv-virt",
            "--link-cut-after",
            "5",
            "--link-timeout",
            "5",
        ],
    );
    assert!(stderr.contains("image 4 on riscv-virt"), "{stderr}");
    assert!(
        stderr.contains("the debug link is dead: the device sent nothing for 5.0 s"),
        "{stderr}"
    );
}

/// Nothing is built or flashed when the probe is not there: the error comes at once.
#[test]
fn a_real_board_without_its_probe_is_a_clear_error() {
    for board in ["nucleo-f411re", "esp32c3-devkit"] {
        let start = Instant::now();
        let stderr = failure(1, &["--device", board, "--probe", "1209:0001"]);
        assert!(
            stderr.contains("no attached probe matches --probe 1209:0001"),
            "{board}: {stderr}"
        );
        assert!(stderr.contains("plugged in"), "{board}: {stderr}");
        assert!(!stderr.contains("building"), "{board}: {stderr}");
        assert!(start.elapsed() < Duration::from_secs(60), "{board}");
    }
}
