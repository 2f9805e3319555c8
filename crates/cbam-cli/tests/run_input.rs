//! `cbam run` and `cbam attention` through the real binary on the committed test images
//! (`models/data/images`, the first Fashion-MNIST test images, labels 9 2 1 1 6 1 4 6), with
//! both backends; and the bad inputs the Pi user can hit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const LABELS: [usize; 8] = [9, 2, 1, 1, 6, 1, 4, 6];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn images() -> PathBuf {
    root().join("models/data/images")
}

fn float_model() -> PathBuf {
    root().join("models/fmnist_cbam.onnx")
}

fn cbam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .output()
        .expect("the cbam binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The blob and QDQ model of `fmnist_cbam.onnx`, made once per test process.
fn quantized() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static MODELS: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let blob = dir.path().join("m.cbam");
        let qdq = dir.path().join("m.int8.onnx");
        let calib = root().join("models/data/calib256_images.u8");
        let out = cbam(&[
            "quantize",
            s(&float_model()),
            "--calib",
            s(&calib),
            "--out",
            s(&blob),
            "--qdq",
            s(&qdq),
        ]);
        assert!(
            out.status.success(),
            "quantize failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, blob, qdq)
    })
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = cbam(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cbam {args:?} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

fn top1s(report: &serde_json::Value) -> Vec<usize> {
    report["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| f["top_k"][0]["class"].as_u64().expect("class") as usize)
        .collect()
}

fn correct(classes: &[usize]) -> usize {
    classes
        .iter()
        .zip(LABELS)
        .filter(|(a, b)| **a == *b)
        .count()
}

fn assert_fails_with(out: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\n{stderr}");
    for w in words {
        assert!(stderr.contains(w), "stderr lacks {w:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_core_classifies_a_directory_and_reports_speed() {
    let (_, blob, _) = quantized();
    let report = run_json(&[
        "run",
        s(blob),
        "--input",
        s(&images()),
        "--json",
        "--top-k",
        "2",
    ]);
    assert_eq!(report["backend"], "core");
    let classes = top1s(&report);
    assert_eq!(classes.len(), 8);
    assert!(correct(&classes) >= 6, "{classes:?} vs {LABELS:?}");
    let frame = &report["frames"][0];
    assert_eq!(frame["top_k"].as_array().map(Vec::len), Some(2));
    assert_eq!(frame["output_q"].as_array().map(Vec::len), Some(10));
    assert_eq!(frame["top_k"][0]["label"], "Ankle boot");
    let summary = &report["summary"];
    assert_eq!(summary["frames"], 8);
    for key in ["fps", "p50_ms", "p90_ms", "p99_ms"] {
        assert!(
            summary[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {summary}"
        );
    }
}

#[test]
fn split_layers_and_parallel_frames_give_the_one_thread_bits() {
    let (_, blob, _) = quantized();
    let images = images();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", s(blob), "--input", s(&images), "--json"];
        args.extend_from_slice(extra);
        let report = run_json(&args);
        let frames = report["frames"].as_array().expect("frames").clone();
        let q: Vec<_> = frames.iter().map(|f| f["output_q"].clone()).collect();
        assert_eq!(q.len(), 8, "{extra:?}");
        q
    };
    let one = run(&[]);
    assert_eq!(run(&["--threads", "3", "--split-layers"]), one);
    assert_eq!(run(&["--threads", "2"]), one);
}

#[test]
fn tract_float_and_qdq_agree_with_the_core() {
    let (_, blob, _) = quantized();
    let core = top1s(&run_json(&[
        "run",
        s(blob),
        "--input",
        s(&images()),
        "--json",
    ]));
    let float = run_json(&[
        "run",
        s(&float_model()),
        "--input",
        s(&images()),
        "--json",
        "--backend",
        "tract",
    ]);
    assert_eq!(float["backend"], "tract");
    let float = top1s(&float);
    let agree = core.iter().zip(&float).filter(|(a, b)| a == b).count();
    assert!(agree >= 7, "core {core:?} float {float:?}");
    assert!(correct(&float) >= 6, "{float:?}");
}

#[test]
fn one_image_and_frames_limit() {
    let image = images().join("test_001.png");
    let report = run_json(&["run", s(&float_model()), "--input", s(&image), "--json"]);
    assert_eq!(top1s(&report), vec![2]);
    let report = run_json(&[
        "run",
        s(&float_model()),
        "--input",
        s(&images()),
        "--json",
        "--frames",
        "3",
    ]);
    assert_eq!(report["summary"]["frames"], 3);
}

#[test]
fn frames_zero_is_a_clear_error() {
    let out = cbam(&[
        "run",
        s(&float_model()),
        "--input",
        s(&images()),
        "--frames",
        "0",
    ]);
    assert_fails_with(&out, &["--frames 0"]);
}

#[test]
fn an_unreadable_image_alone_fails_and_in_a_directory_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG but not really").unwrap();
    let out = cbam(&["run", s(&float_model()), "--input", s(&bad)]);
    assert_fails_with(&out, &["broken.png", "cannot decode"]);

    std::fs::copy(images().join("test_000.png"), dir.path().join("good.png")).unwrap();
    let out = cbam(&["run", s(&float_model()), "--input", s(dir.path()), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains("broken.png"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(top1s(&report), vec![9]);
    assert_eq!(report["warnings"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_large_rgb_image_is_cropped_and_resized_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let small = image::open(images().join("test_001.png"))
        .unwrap()
        .to_rgb8();
    // 84x56 RGB with the 28x28 image scaled x2 in the middle: the centre crop recovers it.
    let mut big = image::RgbImage::new(84, 56);
    let scaled = image::imageops::resize(&small, 56, 56, image::imageops::FilterType::Nearest);
    image::imageops::replace(&mut big, &scaled, 14, 0);
    let path = dir.path().join("big.png");
    big.save(&path).unwrap();
    let out = cbam(&["run", s(&float_model()), "--input", s(&path), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("84x56") && stderr.contains("resized"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(top1s(&report), vec![2]);
}

#[test]
fn a_y4m_video_runs_frame_by_frame_and_a_truncated_one_ends_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let gray = image::open(images().join("test_000.png"))
        .unwrap()
        .to_luma8();
    let mut video = b"YUV4MPEG2 W28 H28 F30:1 Cmono\n".to_vec();
    for _ in 0..3 {
        video.extend_from_slice(b"FRAME\n");
        video.extend_from_slice(gray.as_raw());
    }
    video.extend_from_slice(b"FRAME\n");
    video.extend_from_slice(&gray.as_raw()[..100]);
    let path = dir.path().join("clip.y4m");
    std::fs::write(&path, &video).unwrap();
    let out = cbam(&["run", s(&float_model()), "--input", s(&path), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut off"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(top1s(&report), vec![9, 9, 9]);

    std::fs::write(&path, b"YUV4MPEG2 garbage\n").unwrap();
    assert_fails_with(
        &cbam(&["run", s(&float_model()), "--input", s(&path)]),
        &["corrupt Y4M", "clip.y4m"],
    );
}

#[test]
fn overlays_are_written_by_both_backends() {
    let (_, blob, _) = quantized();
    for model in [blob.clone(), float_model()] {
        let dir = tempfile::tempdir().unwrap();
        let out = cbam(&[
            "run",
            s(&model),
            "--input",
            s(&images()),
            "--frames",
            "2",
            "--overlay",
            s(dir.path()),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in ["frame_00000.png", "frame_00001.png"] {
            let png = image::open(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                png.width() >= 224 && png.height() > 224,
                "{name}: {}x{}",
                png.width(),
                png.height()
            );
        }
        assert!(!dir.path().join("frame_00002.png").exists());
    }
}

#[test]
fn attention_draws_every_block_for_core_and_tract() {
    let (dir, blob, _) = quantized();
    let out_png = dir.path().join("attention.png");
    let image = images().join("test_000.png");
    let out = cbam(&[
        "attention",
        s(blob),
        s(&image),
        "--compare",
        s(&float_model()),
        "-o",
        s(&out_png),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = image::open(&out_png).unwrap();
    // Input + 3 CBAM blocks per row, two rows.
    assert!(
        png.width() >= 4 * 224 && png.height() >= 2 * 224,
        "{}x{}",
        png.width(),
        png.height()
    );
}

#[test]
fn backend_mismatch_and_missing_camera_are_clear_errors() {
    let out = cbam(&[
        "run",
        s(&float_model()),
        "--input",
        s(&images()),
        "--backend",
        "core",
    ]);
    assert_fails_with(&out, &["--backend core", "cbam quantize"]);
    let out = cbam(&[
        "run",
        s(&float_model()),
        "--camera",
        "/dev/video-cbam-test-none",
    ]);
    assert_fails_with(&out, &["no camera", "/dev/video-cbam-test-none"]);
}
