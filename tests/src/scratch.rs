//! A scratch directory for the tests that drive the `cbam` binary: a small CBAM classifier
//! and four labelled 28x28 images as IDX files, all removed when it is dropped.

use std::path::{Path, PathBuf};

use crate::{files, onnx};

pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub model: PathBuf,
    pub images: PathBuf,
    pub labels: PathBuf,
}

impl Scratch {
    /// The classifier ([`onnx::cbam_classifier`] of `seed`) saved as `model_name`.
    pub fn new(model_name: &str, seed: u32) -> Self {
        let dir = tempfile::tempdir().expect("a temp directory");
        let model = dir.path().join(model_name);
        std::fs::write(&model, onnx::encode(&onnx::cbam_classifier(seed))).expect("model");
        let images = dir.path().join("images-idx3-ubyte");
        let pixels: Vec<u8> = (0..4 * 28 * 28).map(|i| (i * 7 % 256) as u8).collect();
        files::write_idx(&images, &[4, 28, 28], &pixels).expect("images");
        let labels = dir.path().join("labels-idx1-ubyte");
        files::write_idx(&labels, &[4], &[0, 1, 2, 3]).expect("labels");
        Scratch {
            dir,
            model,
            images,
            labels,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The names in the directory, sorted: compared before and after a command to show it
    /// left no file (not even a temp file) behind.
    pub fn listing(&self) -> Vec<String> {
        listing(self.dir.path())
    }
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("a readable directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
