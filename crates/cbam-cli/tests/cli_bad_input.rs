//! Bad input through the real `cbam` binary: every case exits non-zero, says which file is
//! wrong, and leaves no output file behind.

use std::path::Path;
use std::process::{Command, Output};

use cbam_e2e::scratch::Scratch;
use cbam_e2e::{files, onnx};

fn cbam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .output()
        .expect("the cbam binary runs")
}

/// Asserts a clean failure: exit code 1 (not a panic's 101), and stderr naming `file`.
fn assert_fails_naming(out: &Output, file: &Path, also: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1, stderr:\n{stderr}"
    );
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains(&*name),
        "stderr does not name {name}:\n{stderr}"
    );
    for word in also {
        assert!(stderr.contains(word), "stderr lacks {word:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The scratch directory of [`cbam_e2e::scratch`], with the commands these tests run.
struct Fixture(Scratch);

impl std::ops::Deref for Fixture {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Fixture {
    fn new() -> Self {
        Fixture(Scratch::new("good.onnx", 7))
    }

    fn s(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    fn eval(&self, model: &Path, data: &Path, labels: &Path) -> Output {
        cbam(&[
            "eval",
            Self::s(model),
            "--data",
            Self::s(data),
            "--labels",
            Self::s(labels),
        ])
    }
}

#[test]
fn the_fixture_itself_evaluates() {
    let f = Fixture::new();
    let out = f.eval(&f.model, &f.images, &f.labels);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 samples"));
}

#[test]
fn not_an_onnx_file() {
    let f = Fixture::new();
    let text = f.path("notes.onnx");
    std::fs::write(&text, "these are my notes, not a model\n").unwrap();
    assert_fails_naming(
        &cbam(&["inspect", Fixture::s(&text)]),
        &text,
        &["not an ONNX model"],
    );
    assert_fails_naming(&f.eval(&text, &f.images, &f.labels), &text, &[]);
}

#[test]
fn a_truncated_onnx() {
    let f = Fixture::new();
    let bytes = onnx::encode(&onnx::cbam_classifier(7));
    let cut = f.path("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails_naming(&cbam(&["inspect", Fixture::s(&cut)]), &cut, &["truncated"]);
}

#[test]
fn an_onnx_with_an_unsupported_op() {
    let f = Fixture::new();
    let model = f.path("erf.onnx");
    std::fs::write(&model, onnx::encode(&onnx::unsupported_op_model())).unwrap();
    assert_fails_naming(&cbam(&["inspect", Fixture::s(&model)]), &model, &["Erf"]);
}

#[test]
fn a_model_without_cbam_is_inspected_with_zero_blocks() {
    let f = Fixture::new();
    let model = f.path("plain.onnx");
    std::fs::write(&model, onnx::encode(&onnx::plain_classifier(3))).unwrap();
    let out = cbam(&["inspect", Fixture::s(&model), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cbam_blocks"], 0);
}

#[test]
fn data_of_the_wrong_shape() {
    let f = Fixture::new();
    let wrong = f.path("wrong.npy");
    files::write_npy_f32(&wrong, &[2, 1, 32, 32], &vec![0.0; 2 * 32 * 32]).unwrap();
    let labels = f.path("y.npy");
    files::write_npy_i64(&labels, &[0, 1]).unwrap();
    assert_fails_naming(
        &f.eval(&f.model, &wrong, &labels),
        &wrong,
        &["[N, 1, 28, 28]"],
    );
}

#[test]
fn an_empty_image_folder() {
    let f = Fixture::new();
    let folder = f.path("empty_folder");
    std::fs::create_dir_all(folder.join("shirt")).unwrap();
    let out = cbam(&["eval", Fixture::s(&f.model), "--data", Fixture::s(&folder)]);
    assert_fails_naming(&out, &folder, &["empty ImageFolder"]);
}

#[test]
fn labels_of_the_wrong_length() {
    let f = Fixture::new();
    let short = f.path("short-labels-idx1-ubyte");
    files::write_idx(&short, &[3], &[0, 1, 2]).unwrap();
    assert_fails_naming(
        &f.eval(&f.model, &f.images, &short),
        &short,
        &["3 labels for 4 samples"],
    );
}

#[test]
fn a_malformed_blob() {
    let f = Fixture::new();
    let blob = f.path("broken.cbam");
    let mut bytes = b"CBAM".to_vec();
    bytes.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&blob, &bytes).unwrap();
    let before = f.listing();
    assert_fails_naming(
        &f.eval(&blob, &f.images, &f.labels),
        &blob,
        &["cbam quantize"],
    );
    assert_eq!(f.listing(), before);
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let f = Fixture::new();
    let missing = f.path("missing.onnx");
    assert_fails_naming(&cbam(&["inspect", Fixture::s(&missing)]), &missing, &[]);
}

impl Fixture {
    /// `cbam quantize MODEL --calib DATA --out OUT.cbam --qdq OUT.onnx --report R.json`;
    /// also asserts that on failure none of the three outputs (nor a temp file) exists.
    fn quantize_fails(&self, model: &Path, calib: &Path, names: &Path, also: &[&str]) {
        let out = self.path("out.cbam");
        let qdq = self.path("out.int8.onnx");
        let report = self.path("report.json");
        let before = self.listing();
        let result = cbam(&[
            "quantize",
            Self::s(model),
            "--calib",
            Self::s(calib),
            "--out",
            Self::s(&out),
            "--qdq",
            Self::s(&qdq),
            "--report",
            Self::s(&report),
        ]);
        assert_fails_naming(&result, names, also);
        assert_eq!(self.listing(), before, "a failed quantize left files");
    }
}

#[test]
fn quantize_rejects_a_non_onnx_model_and_writes_nothing() {
    let f = Fixture::new();
    let text = f.path("notes.onnx");
    std::fs::write(&text, "not a model").unwrap();
    f.quantize_fails(&text, &f.images, &text, &["not an ONNX model"]);
}

#[test]
fn quantize_rejects_an_unsupported_op_and_writes_nothing() {
    let f = Fixture::new();
    let model = f.path("erf.onnx");
    std::fs::write(&model, onnx::encode(&onnx::unsupported_op_model())).unwrap();
    f.quantize_fails(&model, &f.images, &model, &["Erf"]);
}

#[test]
fn quantize_rejects_calibration_data_of_the_wrong_shape_and_writes_nothing() {
    let f = Fixture::new();
    let wrong = f.path("calib_wrong.npy");
    files::write_npy_f32(&wrong, &[2, 3, 28, 28], &vec![0.0; 2 * 3 * 28 * 28]).unwrap();
    f.quantize_fails(&f.model, &wrong, &wrong, &["[N, 1, 28, 28]"]);
}

#[test]
fn quantize_rejects_an_empty_image_folder_and_writes_nothing() {
    let f = Fixture::new();
    let folder = f.path("calib_folder");
    std::fs::create_dir_all(folder.join("bag")).unwrap();
    f.quantize_fails(&f.model, &folder, &folder, &["empty ImageFolder"]);
}
