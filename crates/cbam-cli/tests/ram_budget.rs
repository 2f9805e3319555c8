//! `cbam quantize --ram-budget`: the cheapest schedule that fits is written, and a budget
//! below the smallest schedule is refused with the shortfall.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cbam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .output()
        .expect("the cbam binary runs")
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Quantizes the example model with `extra` arguments; returns the run and its report.
fn quantize(dir: &Path, extra: &[&str]) -> (Output, Option<serde_json::Value>) {
    let blob = dir.join("m.cbam");
    let report = dir.join("m.json");
    let _ = std::fs::remove_file(&report);
    let model = models().join("fmnist_cbam.onnx");
    let calib = models().join("data/calib256_images.u8");
    let mut args = vec![
        "quantize",
        model.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--limit",
        "8",
        "--no-bias-correction",
        "--out",
        blob.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = cbam(&args);
    let json = std::fs::read(&report)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap());
    (out, json)
}

fn arena_of(blob: &Path) -> usize {
    let bytes = std::fs::read(blob).unwrap();
    cbam_core::Model::parse(&bytes).unwrap().arena_size()
}

#[test]
fn the_budget_picks_the_cheapest_schedule_that_fits_or_says_by_how_much_none_does() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = quantize(dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("arena: layer-by-layer"), "{stdout}");
    let s = &report.unwrap()["schedules"];
    let (layer, in_place, patch) = (
        s["layer_by_layer"].as_u64().unwrap() as usize,
        s["in_place"].as_u64().unwrap() as usize,
        s["patch"].as_u64().unwrap() as usize,
    );
    assert_eq!(s["chosen"], "in-place");
    assert!(patch < in_place && in_place <= layer, "{s}");

    // A budget the whole-tensor plan meets: no stages, no extra work.
    let (out, report) = quantize(dir.path(), &["--ram-budget", &in_place.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.unwrap()["schedules"]["chosen"], "in-place");

    // Only band-by-band stages fit; the budget also takes a KB suffix.
    let kb = patch.div_ceil(1024);
    let budget = if kb * 1024 < in_place {
        format!("{kb}KB")
    } else {
        patch.to_string()
    };
    let (out, report) = quantize(dir.path(), &["--ram-budget", &budget]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.unwrap()["schedules"]["chosen"], "patch");
    assert!(arena_of(&dir.path().join("m.cbam")) < in_place);

    // Below the smallest: refused, with the shortfall, and nothing written.
    std::fs::remove_file(dir.path().join("m.cbam")).unwrap();
    let below = (patch / 4).to_string();
    let (out, _) = quantize(dir.path(), &["--ram-budget", &below]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no schedule fits") && stderr.contains("misses it by"),
        "{stderr}"
    );
    assert!(!dir.path().join("m.cbam").exists());

    let (out, _) = quantize(dir.path(), &["--ram-budget", "lots"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a byte count"));
}

/// `cbam flash --dry-run --no-build` on a 128 KB board with `--stack` set so that only the
/// patch-based arena leaves room: the fit check reads the arena the blob was written with.
fn fits_nucleo(blob: &Path, stack: usize) -> bool {
    let out = cbam(&[
        "flash",
        "--board",
        "nucleo-f411re",
        "--model",
        blob.to_str().unwrap(),
        "--dry-run",
        "--no-build",
        "--stack",
        &stack.to_string(),
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.success(), text.contains("fits;"), "{text}");
    out.status.success()
}

#[test]
fn the_flash_fit_check_counts_the_scheduled_arena() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = quantize(dir.path(), &["--schedule", "in-place"]);
    assert!(out.status.success());
    let s = &report.unwrap()["schedules"];
    let (in_place, patch) = (
        s["in_place"].as_u64().unwrap() as usize,
        s["patch"].as_u64().unwrap() as usize,
    );
    let whole = dir.path().join("whole.cbam");
    std::fs::rename(dir.path().join("m.cbam"), &whole).unwrap();
    let (out, _) = quantize(dir.path(), &["--schedule", "patch"]);
    assert!(out.status.success());
    let patched = dir.path().join("m.cbam");
    assert_eq!(arena_of(&patched), patch);
    // The STM32F411's 128 KB of RAM less the patch arena, less half the arenas' difference.
    let stack = 128 * 1024 - patch - (in_place - patch) / 2;
    assert!(
        !fits_nucleo(&whole, stack),
        "the whole-tensor arena must not fit"
    );
    assert!(fits_nucleo(&patched, stack), "the patch arena must fit");
}
