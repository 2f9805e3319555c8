//! Where the end-to-end tests find the example models and the test images.

use std::path::{Path, PathBuf};

pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The grayscale Fashion-MNIST models the e2e suite must quantize: every top-level
/// `models/*.onnx`, and every entry of `models/manifest.json` whose `trained` is true
/// (entries name their ONNX file as `onnx`, `path` or `file`, relative to `models/`), that
/// takes one input channel. The RGB models are [`rgb_models`].
pub fn example_models() -> Vec<PathBuf> {
    let dir = workspace_root().join("models");
    let mut models = top_level_onnx(&dir);
    models.extend(manifest_models(&dir));
    models.sort();
    models.dedup();
    models.retain(|m| input_chw(m).is_some_and(|[c, _, _]| c == 1));
    models
}

/// The `*.onnx` files directly in `dir`.
fn top_level_onnx(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "onnx"))
                .collect()
        })
        .unwrap_or_default()
}

/// `[C, H, W]` of an ONNX model's image input.
pub fn input_chw(onnx: &Path) -> Option<[usize; 3]> {
    let bytes = std::fs::read(onnx).ok()?;
    let proto = cbam_compiler::import::decode_model(&bytes, onnx).ok()?;
    match cbam_compiler::import::input_of(&proto).ok()?.1.as_slice() {
        [1, c, h, w] => Some([*c, *h, *w]),
        _ => None,
    }
}

/// An RGB example model with its calibration and test ImageFolders.
#[derive(Debug, Clone)]
pub struct RgbModel {
    pub onnx: PathBuf,
    pub calib: PathBuf,
    pub test: PathBuf,
}

/// The top-level RGB example models (three input channels) with the committed RGB
/// Fashion-MNIST ImageFolders at their input size (`models/data/rgb/calib*_S`, `test*_S`).
pub fn rgb_models() -> Vec<RgbModel> {
    let dir = workspace_root().join("models");
    let rgb = dir.join("data").join("rgb");
    let folder = |prefix: &str, size: usize| -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&rgb)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with(prefix) && n.ends_with(&format!("_{size}"))
                    })
            })
            .collect();
        found.sort();
        found.into_iter().next()
    };
    let mut models: Vec<RgbModel> = top_level_onnx(&dir)
        .into_iter()
        .filter_map(|onnx| {
            let [c, h, _] = input_chw(&onnx)?;
            (c == 3).then_some(())?;
            Some(RgbModel {
                calib: folder("calib", h)?,
                test: folder("test", h)?,
                onnx,
            })
        })
        .collect();
    models.sort_by(|a, b| a.onnx.cmp(&b.onnx));
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
