//! Input data for calibration, evaluation and pruning: one [`Dataset`] type loaded from
//! any of the sources the CLI accepts.
//!
//! Sources ([`load`] picks by looking at the path and the first bytes):
//! - a `.npy` float32 array `[N, C, H, W]` that is exactly the model input (already
//!   normalised), labels from a `.npy` of int64/int32/uint8;
//! - an ImageFolder directory `DIR/<class>/*.png|jpg|jpeg` (classes sorted by name);
//! - an IDX pair as Fashion-MNIST ships it (`*-images-idx3-ubyte[.gz]`,
//!   `*-labels-idx1-ubyte[.gz]`);
//! - raw `.u8` files: `N x C x H x W` bytes at the model's input size, labels one byte each.
//!
//! Image sources keep each sample's raw 8-bit pixels, because a blob whose input
//! quantization absorbed the normalisation is fed `pixel - 128` directly.

mod convert;
mod idx;
mod image_folder;
mod npy;
mod preprocess;
mod raw_u8;

use std::path::{Path, PathBuf};

use crate::fsio;
use crate::ir::Graph;
use crate::limits::{LimitExceeded, DEFAULT_MAX_DATA_BYTES};

pub(crate) use convert::normalisation_problem;
pub use convert::{FittedImage, InputSpec};
pub use image_folder::{list as list_image_folder, ImageFolderListing};
pub use preprocess::{ChannelOrder, Preprocess, Resize};

/// Why a data source could not be loaded. Every variant names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not a data source cbam understands ({why}); pass a .npy float32 array [N,C,H,W], \
         an ImageFolder directory DIR/<class>/*.png, an IDX file (.gz or raw) or a .u8 file",
        path.display()
    )]
    UnknownFormat { path: PathBuf, why: String },
    #[error("{}: malformed {kind} file: {why}", path.display())]
    Malformed {
        path: PathBuf,
        kind: &'static str,
        why: String,
    },
    #[error(
        "{}: data shape {found} does not fit the model input; expected {expected}. {fix}",
        path.display()
    )]
    Shape {
        path: PathBuf,
        found: String,
        expected: String,
        fix: String,
    },
    #[error(
        "{}: empty ImageFolder: no .png/.jpg/.jpeg images in class subdirectories; \
         lay the images out as DIR/<class>/<image>.png",
        path.display()
    )]
    EmptyImageFolder { path: PathBuf },
    #[error(
        "{}: {found} labels for {expected} samples; pass the labels file that belongs to \
         the data (one label per sample, in the same order)",
        path.display()
    )]
    LabelCount {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error("{}: label {value} at index {index} is negative; labels are class indices 0..N", path.display())]
    NegativeLabel {
        path: PathBuf,
        index: usize,
        value: i64,
    },
    #[error("{}: {source}", path.display())]
    TooLarge {
        path: PathBuf,
        source: LimitExceeded,
    },
    #[error(
        "{}: label {label} of sample {index} is not one of the model's {classes} classes \
         (0..={}); the labels belong to another data set or model",
        path.display(),
        .classes.saturating_sub(1)
    )]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: usize,
        classes: usize,
    },
    #[error(
        "{}: sample {index} holds {value} at position {position}; inputs must be finite \
         numbers: fix the array before saving it",
        path.display()
    )]
    NotFinite {
        path: PathBuf,
        index: usize,
        position: usize,
        value: f32,
    },
    #[error("{}: cannot decode image: {source}", path.display())]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error(
        "the model input has {channels} channels; image data can only be converted to 1 \
         (grayscale) or 3 (RGB) channels, so pass a .npy array that is exactly the model input"
    )]
    Channels { channels: usize },
    #[error("the model's pixel normalisation is unusable: {why}; fix cbam.mean/cbam.std in the ONNX metadata_props")]
    Meta { why: String },
    #[error("the model input shape {shape:?} is not [C, H, W]; only image models take image data")]
    NotAnImageModel { shape: Vec<usize> },
    #[error(
        "sample has {found} input values but the core's input tensor holds {expected} \
         ({h}x{w}x{c}); the data was loaded for another model"
    )]
    CoreInputSize {
        expected: usize,
        found: usize,
        h: usize,
        w: usize,
        c: usize,
    },
}

impl DataError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One input: the model's float input and, for image sources, the raw pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The model input, `[C, H, W]` flattened (NCHW with the batch dimension dropped),
    /// normalised as the model expects.
    pub input: Vec<f32>,
    /// The 8-bit pixels the input was computed from, `[C, H, W]` flattened, after any
    /// channel conversion and resize. For `.npy` data: `None`, or under a per-channel
    /// normalisation the pixels the input stands for ([`InputSpec::pixels_of`]).
    pub pixels: Option<Vec<u8>>,
    /// The class index, when the source has labels.
    pub label: Option<usize>,
}

/// A loaded data source, every sample shaped like the model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The model input shape `[C, H, W]` every sample has.
    pub shape: [usize; 3],
    pub samples: Vec<Sample>,
    /// Class names, for ImageFolder sources (index = label); empty otherwise.
    pub classes: Vec<String>,
    /// Things the user should know that did not stop loading (e.g. images resized).
    pub notes: Vec<String>,
    /// How many samples the source holds (before any limit); a labels file must match it.
    pub source_len: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// True when every sample has a label (so accuracy can be computed).
    pub fn has_labels(&self) -> bool {
        !self.samples.is_empty() && self.samples.iter().all(|s| s.label.is_some())
    }
}

/// Where to read samples and labels from.
#[derive(Debug, Clone, Default)]
pub struct DataSource {
    pub data: PathBuf,
    /// Labels file for `.npy`, IDX and `.u8` data; ImageFolder labels come from the folders.
    pub labels: Option<PathBuf>,
    /// Load at most this many samples (the first ones).
    pub limit: Option<usize>,
}

/// Load `source` shaped for a model with input `spec`, holding at most
/// [`DEFAULT_MAX_DATA_BYTES`] of data.
pub fn load(source: &DataSource, spec: &InputSpec) -> Result<Dataset, DataError> {
    load_within(source, spec, DEFAULT_MAX_DATA_BYTES)
}

/// [`load`], holding at most `max_bytes` of data in memory: files read, data decompressed,
/// samples decoded. Every size a file declares is checked against it before it is allocated.
pub fn load_within(
    source: &DataSource,
    spec: &InputSpec,
    max_bytes: u64,
) -> Result<Dataset, DataError> {
    let path = source.data.as_path();
    let cap = Cap {
        path,
        max_bytes,
        limit: source.limit.unwrap_or(usize::MAX),
    };
    let mut dataset = match detect(path)? {
        Kind::ImageFolder => image_folder::load(&cap, spec)?,
        Kind::Npy => npy::load_inputs(&cap, spec)?,
        Kind::Idx => idx::load_images(&cap, spec)?,
        Kind::RawU8 => raw_u8::load_images(&cap, spec)?,
    };
    if let Some(labels_path) = &source.labels {
        let labels = load_labels_within(labels_path, usize::MAX, max_bytes)?;
        attach_labels(&mut dataset, labels, labels_path)?;
    }
    Ok(dataset)
}

/// How much of one source a loader may take: at most `limit` samples and `max_bytes` held.
pub(crate) struct Cap<'p> {
    pub path: &'p Path,
    pub max_bytes: u64,
    pub limit: usize,
}

impl<'p> Cap<'p> {
    /// All of the source at `path`, within the default cap (for tests).
    #[cfg(test)]
    pub fn whole(path: &'p Path) -> Self {
        Cap {
            path,
            max_bytes: DEFAULT_MAX_DATA_BYTES,
            limit: usize::MAX,
        }
    }

    /// `samples` samples of `spec` decoded (float input and 8-bit pixels) fit the cap.
    pub fn check_samples(&self, samples: usize, spec: &InputSpec) -> Result<(), DataError> {
        let per_sample = crate::limits::product([spec.len() as u64, 5]);
        let bytes = per_sample.and_then(|b| b.checked_mul(samples as u64));
        self.check(
            || format!("{samples} decoded samples of {:?}", spec.shape),
            bytes,
        )
    }

    /// `bytes` (`None`: overflowed) of `what` fit the cap.
    pub fn check(
        &self,
        what: impl FnOnce() -> String,
        bytes: Option<u64>,
    ) -> Result<(), DataError> {
        let limits = crate::limits::Limits {
            max_data_bytes: self.max_bytes,
            ..Default::default()
        };
        limits
            .check_data(what, bytes)
            .map(|_| ())
            .map_err(|source| DataError::TooLarge {
                path: self.path.to_path_buf(),
                source,
            })
    }

    /// The whole file, if it is a regular file within the cap.
    pub fn read(&self) -> Result<Vec<u8>, DataError> {
        read_file(self.path, self.max_bytes)
    }
}

/// Load `source` for the model `graph` (its input shape, mean and std).
pub fn load_for_graph(source: &DataSource, graph: &Graph) -> Result<Dataset, DataError> {
    load(source, &InputSpec::from_graph(graph)?)
}

/// Labels from a `.npy` (int64/int32/uint8/...), an IDX1 file (optionally gzipped) or a
/// `.u8` file (one byte per label); at most `limit` of them.
pub fn load_labels(path: &Path, limit: usize) -> Result<Vec<usize>, DataError> {
    load_labels_within(path, limit, DEFAULT_MAX_DATA_BYTES)
}

fn load_labels_within(path: &Path, limit: usize, max_bytes: u64) -> Result<Vec<usize>, DataError> {
    let cap = Cap {
        path,
        max_bytes,
        limit,
    };
    let raw: Vec<i64> =
        match detect(path)? {
            Kind::Npy => npy::load_labels(&cap)?,
            Kind::Idx => idx::load_labels(&cap)?,
            Kind::RawU8 => raw_u8::load_labels(&cap)?,
            Kind::ImageFolder => return Err(DataError::UnknownFormat {
                path: path.to_path_buf(),
                why: "a directory cannot be a labels file; ImageFolder data carries its own labels"
                    .into(),
            }),
        };
    raw.into_iter()
        .take(limit)
        .enumerate()
        .map(|(index, value)| {
            usize::try_from(value).map_err(|_| DataError::NegativeLabel {
                path: path.to_path_buf(),
                index,
                value,
            })
        })
        .collect()
}

/// Classes of a model whose output has `shape`: its one axis longer than 1, or `None` when
/// the output is not a vector of class scores (a feature map, an image, a single value).
pub fn class_count(shape: &[usize]) -> Option<usize> {
    match shape
        .iter()
        .filter(|&&d| d != 1)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [&classes] => Some(classes),
        _ => None,
    }
}

/// Every label of `dataset` names one of `classes` classes (a label past the last class
/// would only ever count as wrong, silently lowering the accuracy).
pub fn check_labels(dataset: &Dataset, labels: &Path, classes: usize) -> Result<(), DataError> {
    let bad = dataset
        .samples
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.label.filter(|&l| l >= classes).map(|l| (i, l)));
    match bad {
        Some((index, label)) => Err(DataError::LabelOutOfRange {
            path: labels.to_path_buf(),
            index,
            label,
            classes,
        }),
        None => Ok(()),
    }
}

fn attach_labels(dataset: &mut Dataset, labels: Vec<usize>, path: &Path) -> Result<(), DataError> {
    // Compared with the whole source, not the limited sample list, so a labels file that
    // belongs to other data is caught even when only its first entries are used.
    if labels.len() != dataset.source_len {
        return Err(DataError::LabelCount {
            path: path.to_path_buf(),
            expected: dataset.source_len,
            found: labels.len(),
        });
    }
    for (sample, label) in dataset.samples.iter_mut().zip(labels) {
        sample.label = Some(label);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ImageFolder,
    Npy,
    Idx,
    RawU8,
}

fn detect(path: &Path) -> Result<Kind, DataError> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_dir() {
        return Ok(Kind::ImageFolder);
    }
    let mut head = [0u8; 6];
    let n = read_prefix(path, &mut head)?;
    let head = head.get(..n).unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if head.starts_with(npy::MAGIC) {
        return Ok(Kind::Npy);
    }
    if head.starts_with(&[0x1f, 0x8b]) || idx::looks_like_idx(head) {
        return Ok(Kind::Idx);
    }
    if name.ends_with(".u8") {
        return Ok(Kind::RawU8);
    }
    let why = if name.ends_with(".npy") {
        "the file has a .npy name but no NumPy header".to_string()
    } else {
        "neither a NumPy header, an IDX header, gzip data nor a .u8 name".to_string()
    };
    Err(DataError::UnknownFormat {
        path: path.to_path_buf(),
        why,
    })
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> Result<usize, DataError> {
    let (mut file, _) = fsio::open_regular(path).map_err(|e| DataError::io(path, e))?;
    read_up_to(&mut file, buf).map_err(|e| DataError::io(path, e))
}

/// Fills `buf` as far as the reader goes; the count is short only at the end of the data.
fn read_up_to(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, DataError> {
    fsio::read_regular(path, max_bytes, "raise the limit with --max-data-bytes N")
        .map_err(|e| DataError::io(path, e))
}

/// The int8 tensor the core takes as its input, NHWC `(h, w, c)`.
///
/// With `raw_pixels` (the blob's header flag: the compiler folded `/255`, mean and std into
/// the input quantization) and a sample that has pixels, the input is `pixel - 128`, exactly
/// what a device feeds from its camera. Otherwise the float input is quantised with the
/// input tensor's `scale` and `zero_point`, which is the same mapping when the flag is set.
pub fn core_input(
    sample: &Sample,
    hwc: [usize; 3],
    scale: f32,
    zero_point: i32,
    raw_pixels: bool,
) -> Result<Vec<i8>, DataError> {
    let mut out = Vec::new();
    core_input_into(sample, hwc, scale, zero_point, raw_pixels, &mut out)?;
    Ok(out)
}

/// [`core_input`] into `out` (cleared first), so a loop over samples reuses one buffer.
pub fn core_input_into(
    sample: &Sample,
    hwc: [usize; 3],
    scale: f32,
    zero_point: i32,
    raw_pixels: bool,
    out: &mut Vec<i8>,
) -> Result<(), DataError> {
    let [h, w, c] = hwc;
    let expected = h * w * c;
    if sample.input.len() != expected {
        return Err(DataError::CoreInputSize {
            expected,
            found: sample.input.len(),
            h,
            w,
            c,
        });
    }
    let to_int8 = |chw_index: usize| -> i8 {
        match (&sample.pixels, raw_pixels) {
            (Some(pixels), true) => {
                let p = pixels.get(chw_index).copied().unwrap_or(128);
                (i16::from(p) - 128) as i8
            }
            _ => {
                let x = sample.input.get(chw_index).copied().unwrap_or(0.0);
                quantize(x, scale, zero_point)
            }
        }
    };
    out.clear();
    out.reserve(expected);
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                out.push(to_int8((ch * h + y) * w + x));
            }
        }
    }
    Ok(())
}

/// [`core_input`] for the core's input tensor description and the blob's raw-pixel flag
/// (`Model::input()`, `Model::input_is_raw_pixels()`).
pub fn core_input_for(
    sample: &Sample,
    input: &cbam_core::TensorInfo,
    raw_pixels: bool,
) -> Result<Vec<i8>, DataError> {
    core_input(
        sample,
        [input.h, input.w, input.c],
        input.scale,
        input.zero_point,
        raw_pixels,
    )
}

/// [`core_input_for`] into `out`, reusing its allocation.
pub fn core_input_for_into(
    sample: &Sample,
    input: &cbam_core::TensorInfo,
    raw_pixels: bool,
    out: &mut Vec<i8>,
) -> Result<(), DataError> {
    core_input_into(
        sample,
        [input.h, input.w, input.c],
        input.scale,
        input.zero_point,
        raw_pixels,
        out,
    )
}

/// `clamp(round(x / scale) + zero_point)` with round-half-away-from-zero, as TFLite
/// quantises its inputs.
pub fn quantize(x: f32, scale: f32, zero_point: i32) -> i8 {
    if scale.is_nan() || scale <= 0.0 || !x.is_finite() {
        return zero_point.clamp(-128, 127) as i8;
    }
    let q = (x / scale).round() as i64 + i64::from(zero_point);
    q.clamp(-128, 127) as i8
}

#[cfg(test)]
mod tests;
