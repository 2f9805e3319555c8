//! The test images the firmware embeds, and the default set: Fashion-MNIST.
//!
//! Fashion-MNIST's preferred source: the repo's `models/data/test64_{images,labels}.u8`
//! (raw 28x28 pixels, one byte per label). Fallback: the Debian `dataset-fashion-mnist`
//! IDX files, whose first images are the same test split. A model's own images come from
//! an ImageFolder instead (`crate::folder`).

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::Error;

/// Side of a Fashion-MNIST image.
pub const SIDE: usize = 28;
/// Bytes of one raw image.
pub const IMAGE_LEN: usize = SIDE * SIDE;

/// Debian's `dataset-fashion-mnist` install location.
pub const SYSTEM_DATASET_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// `n` raw images and their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImages {
    /// 8-bit pixels, image after image, each `h x w x c` (channels interleaved).
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    /// `[h, w, c]` of every image.
    pub shape: [usize; 3],
    pub origin: Origin,
    /// Files read, for `cargo:rerun-if-changed`.
    pub sources: Vec<PathBuf>,
}

/// Where the images came from, which decides what a model of another input size gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The default set: a model of another input size still runs, on inputs cut from its
    /// pixel stream.
    FashionMnist,
    /// An ImageFolder named for the model: its images must be the model's input.
    Folder(PathBuf),
}

impl TestImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Raw pixels of image `i`.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let len = self.image_len();
        self.pixels.get(i * len..(i + 1) * len)
    }
}

/// Loads the first `n` test images: from `data_dir` (the repo's `models/data`)
/// when its files exist, else from `system_dir` (IDX, gzip).
pub fn load(data_dir: &Path, system_dir: &Path, n: usize) -> Result<TestImages, Error> {
    let raw_images = data_dir.join("test64_images.u8");
    let raw_labels = data_dir.join("test64_labels.u8");
    if raw_images.is_file() && raw_labels.is_file() {
        let pixels = read(&raw_images)?;
        let labels = read(&raw_labels)?;
        return take(pixels, labels, n, vec![raw_images, raw_labels]);
    }
    let idx_images = system_dir.join("t10k-images-idx3-ubyte.gz");
    let idx_labels = system_dir.join("t10k-labels-idx1-ubyte.gz");
    if !idx_images.is_file() || !idx_labels.is_file() {
        return Err(Error::NoTestImages {
            repo: raw_images,
            system: idx_images,
        });
    }
    let pixels = idx_payload(&idx_images, 0x0803, &[SIDE as u32, SIDE as u32])?;
    let labels = idx_payload(&idx_labels, 0x0801, &[])?;
    take(pixels, labels, n, vec![idx_images, idx_labels])
}

fn take(
    mut pixels: Vec<u8>,
    mut labels: Vec<u8>,
    n: usize,
    sources: Vec<PathBuf>,
) -> Result<TestImages, Error> {
    let available = (pixels.len() / IMAGE_LEN).min(labels.len());
    if n == 0 || n > available {
        return Err(Error::ImageCount {
            wanted: n,
            available,
            file: sources.first().cloned().unwrap_or_default(),
        });
    }
    pixels.truncate(n * IMAGE_LEN);
    labels.truncate(n);
    Ok(TestImages {
        pixels,
        labels,
        shape: [SIDE, SIDE, 1],
        origin: Origin::FashionMnist,
        sources,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// The payload of a gzip'd IDX file after its header, checked against the
/// expected magic and trailing dimensions (the first dimension is the count).
fn idx_payload(path: &Path, magic: u32, dims: &[u32]) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    GzDecoder::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let header_len = 8 + 4 * dims.len();
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let bad = |why: &str| Error::Idx {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    if word(0) != Some(magic) {
        return Err(bad("wrong magic number"));
    }
    for (i, want) in dims.iter().enumerate() {
        if word(2 + i) != Some(*want) {
            return Err(bad("unexpected image dimensions"));
        }
    }
    bytes
        .get(header_len..)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| bad("truncated header"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn gz(path: &Path, bytes: &[u8]) {
        let mut enc = GzEncoder::new(
            std::fs::File::create(path).expect("create"),
            Compression::fast(),
        );
        enc.write_all(bytes).expect("write");
        enc.finish().expect("finish");
    }

    fn idx_images(n: u32) -> Vec<u8> {
        let mut bytes = [0x0803u32, n, 28, 28]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<_>>();
        bytes.extend((0..n as usize * IMAGE_LEN).map(|i| (i % 251) as u8));
        bytes
    }

    #[test]
    fn repo_files_win_over_the_system_dataset() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("test64_images.u8"),
            vec![7u8; 3 * IMAGE_LEN],
        )
        .expect("write");
        std::fs::write(dir.path().join("test64_labels.u8"), [1u8, 2, 3]).expect("write");
        let set = load(dir.path(), Path::new("/nonexistent"), 2).expect("load");
        assert_eq!(set.labels, vec![1, 2]);
        assert_eq!(set.pixels.len(), 2 * IMAGE_LEN);
    }

    #[test]
    fn idx_fallback_skips_the_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        gz(
            &dir.path().join("t10k-images-idx3-ubyte.gz"),
            &idx_images(2),
        );
        let mut labels = [0x0801u32, 2]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<_>>();
        labels.extend([9, 4]);
        gz(&dir.path().join("t10k-labels-idx1-ubyte.gz"), &labels);
        let set = load(Path::new("/nonexistent"), dir.path(), 2).expect("load");
        assert_eq!(set.labels, vec![9, 4]);
        assert_eq!(set.image(1).map(|p| p[0]), Some((IMAGE_LEN % 251) as u8));
    }

    #[test]
    fn asking_for_more_images_than_exist_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("test64_images.u8"), vec![0u8; IMAGE_LEN]).expect("write");
        std::fs::write(dir.path().join("test64_labels.u8"), [0u8]).expect("write");
        let err = load(dir.path(), Path::new("/nonexistent"), 5).expect_err("too many");
        assert!(err.to_string().contains('5'), "{err}");
    }

    #[test]
    fn a_wrong_idx_magic_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = idx_images(1);
        bytes[3] = 0x01;
        gz(&dir.path().join("t10k-images-idx3-ubyte.gz"), &bytes);
        gz(
            &dir.path().join("t10k-labels-idx1-ubyte.gz"),
            &[0, 0, 8, 1, 0, 0, 0, 1, 3],
        );
        let err = load(Path::new("/nonexistent"), dir.path(), 1).expect_err("bad magic");
        assert!(err.to_string().contains("magic"), "{err}");
    }
}
