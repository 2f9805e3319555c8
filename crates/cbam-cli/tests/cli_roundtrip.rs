//! The `cbam` binary end to end on small generated models: quantize, then eval the blob
//! against its float source, with every output format the commands promise.

use std::path::Path;
use std::process::{Command, Output};

use cbam_e2e::{files, onnx};

fn cbam(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .output()
        .expect("the cbam binary runs");
    assert!(
        out.status.success(),
        "cbam {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 40 textured 28x28 images with labels 0..9, as an uncompressed IDX pair.
fn write_images(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let images = dir.join("images-idx3-ubyte");
    let labels = dir.join("labels-idx1-ubyte");
    let n = 40;
    let pixels: Vec<u8> = (0..n * 28 * 28)
        .map(|i| ((i * 37 + (i / 784) * 91) % 251) as u8)
        .collect();
    files::write_idx(&images, &[n as u32, 28, 28], &pixels).unwrap();
    let l: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    files::write_idx(&labels, &[n as u32], &l).unwrap();
    (images, labels)
}

#[test]
fn quantize_then_eval_a_cbam_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cbam.onnx");
    std::fs::write(&model, onnx::encode(&onnx::cbam_classifier(5))).unwrap();
    let (images, labels) = write_images(dir.path());
    let blob = dir.path().join("cbam.cbam");
    let qdq = dir.path().join("cbam.int8.onnx");
    let report = dir.path().join("report.json");

    let out = cbam(&[
        "quantize",
        s(&model),
        "--calib",
        s(&images),
        "--out",
        s(&blob),
        "--qdq",
        s(&qdq),
        "--report",
        s(&report),
        "--method",
        "percentile",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cbam.cbam"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(report["blob_bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["calibration_images"], 40);

    let inspect = cbam(&["inspect", s(&model), "--json"]);
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["cbam_blocks"], 2);
    assert!(inspect["macs"].as_u64().unwrap() > 0 && inspect["params"].as_u64().unwrap() > 0);

    let eval = cbam(&[
        "eval",
        s(&blob),
        "--data",
        s(&images),
        "--labels",
        s(&labels),
        "--reference",
        s(&model),
        "--json",
    ]);
    let eval: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(eval["n"], 40);
    assert_eq!(eval["backend"], "int8-core");
    let agreement = eval["agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement), "{eval}");
    assert!(
        agreement >= 0.8,
        "int8 disagrees with float on most images: {eval}"
    );
    assert!(eval["accuracy"].as_f64().is_some());

    // The QDQ model runs in tract through the same command.
    let eval_qdq = cbam(&[
        "eval",
        s(&qdq),
        "--data",
        s(&images),
        "--labels",
        s(&labels),
        "--limit",
        "8",
    ]);
    assert!(String::from_utf8_lossy(&eval_qdq.stdout).contains("8 samples"));
}

#[test]
fn a_model_without_cbam_still_quantizes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("plain.onnx");
    std::fs::write(&model, onnx::encode(&onnx::plain_classifier(9))).unwrap();
    let (images, _) = write_images(dir.path());
    let blob = dir.path().join("plain.cbam");
    cbam(&[
        "quantize",
        s(&model),
        "--calib",
        s(&images),
        "--out",
        s(&blob),
    ]);
    assert!(cbam_core::Model::parse(&std::fs::read(&blob).unwrap()).is_ok());
}

/// Runs `cbam` and returns its stderr, whatever its exit status.
fn cbam_stderr(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .output()
        .expect("the cbam binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_blob_fits_pictures_as_quantize_was_told_and_run_can_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cbam.onnx");
    std::fs::write(&model, onnx::encode(&onnx::cbam_classifier(5))).unwrap();
    let (images, _) = write_images(dir.path());
    let blob = dir.path().join("stretch.cbam");
    cbam(&[
        "quantize",
        s(&model),
        "--calib",
        s(&images),
        "--limit",
        "16",
        "--no-bias-correction",
        "--resize",
        "stretch",
        "--out",
        s(&blob),
    ]);
    let wide = dir.path().join("wide.png");
    image::GrayImage::from_fn(56, 28, |x, y| image::Luma([(x * 4 + y) as u8]))
        .save(&wide)
        .unwrap();

    let (ok, recorded) = cbam_stderr(&["run", s(&blob), "--input", s(&wide)]);
    assert!(ok, "{recorded}");
    assert!(
        recorded.contains("56x28 resized to the model input 28x28") && !recorded.contains("crop"),
        "the blob's stretch is not applied: {recorded}"
    );
    let (ok, flag) = cbam_stderr(&["run", s(&blob), "--input", s(&wide), "--resize", "crop"]);
    assert!(ok, "{flag}");
    assert!(
        flag.contains("56x28 centre-cropped to 28x28"),
        "--resize does not replace the blob's: {flag}"
    );
    let (ok, onnx_default) = cbam_stderr(&["run", s(&model), "--input", s(&wide)]);
    assert!(
        ok && onnx_default.contains("centre-cropped"),
        "{onnx_default}"
    );

    let (ok, bgr) = cbam_stderr(&[
        "run",
        s(&blob),
        "--input",
        s(&wide),
        "--channel-order",
        "bgr",
    ]);
    assert!(!ok && bgr.contains("3 input channels"), "{bgr}");
    let (ok, bad) = cbam_stderr(&["run", s(&blob), "--input", s(&wide), "--resize", "crop:2"]);
    assert!(!ok && bad.contains("crop fraction"), "{bad}");
}
