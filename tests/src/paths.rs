//! Where the end-to-end tests find the example models and the test images.

use std::path::{Path, PathBuf};

pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The models the e2e suite must quantize: every top-level `models/*.onnx`, and every
/// entry of `models/manifest.json` whose `trained` is true (entries name their ONNX file
/// as `onnx`, `path` or `file`, relative to `models/`).
pub fn example_models() -> Vec<PathBuf> {
    let dir = workspace_root().join("models");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "onnx"))
                .collect()
        })
        .unwrap_or_default();
    models.extend(manifest_models(&dir));
    models.sort();
    models.dedup();
    models
}

fn manifest_models(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let entries = json
        .get("models")
        .and_then(|m| m.as_array())
        .or_else(|| json.as_array())
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .filter(|e| e.get("trained").and_then(|t| t.as_bool()) == Some(true))
        .filter_map(|e| {
            ["onnx", "path", "file"]
                .iter()
                .find_map(|k| e.get(*k).and_then(|v| v.as_str()))
                .map(|name| dir.join(name))
        })
        .filter(|p| p.is_file())
        .collect()
}

/// An images file and its labels file.
#[derive(Debug, Clone)]
pub struct TestSet {
    pub images: PathBuf,
    pub labels: PathBuf,
}

/// The Fashion-MNIST test set: the IDX files the set-up script installs, or the 64 test
/// images committed under `models/data/`.
pub fn fashion_mnist_test() -> Option<TestSet> {
    let system = Path::new("/usr/share/datasets/fashion-mnist");
    let idx = TestSet {
        images: system.join("t10k-images-idx3-ubyte.gz"),
        labels: system.join("t10k-labels-idx1-ubyte.gz"),
    };
    if idx.images.is_file() && idx.labels.is_file() {
        return Some(idx);
    }
    let data = workspace_root().join("models").join("data");
    let u8s = TestSet {
        images: data.join("test64_images.u8"),
        labels: data.join("test64_labels.u8"),
    };
    (u8s.images.is_file() && u8s.labels.is_file()).then_some(u8s)
}

/// Calibration images, never the test images: the Fashion-MNIST training set when
/// installed, else the 256 training images committed under `models/data/`.
pub fn calibration_images() -> Option<PathBuf> {
    let train = Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    let committed = workspace_root().join("models/data/calib256_images.u8");
    [train.to_path_buf(), committed]
        .into_iter()
        .find(|p| p.is_file())
}
