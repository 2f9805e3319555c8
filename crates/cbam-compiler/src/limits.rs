//! The caps on sizes read from files, checked before anything of that size is allocated.
//!
//! A hostile or damaged file can declare any size: a 100k x 100k model input, a 4 GB arena,
//! a weight of `2^62` values. Each such size goes through checked arithmetic and is compared
//! with a cap here; the error names the cap and, where a legitimate model could need more,
//! the flag that raises it.

/// Values (`C * H * W`) of a model input: `--max-input-pixels`. 4 Mi covers a 2048x2048
/// grayscale or 1182x1182 RGB image, far above what an edge classifier takes.
pub const DEFAULT_MAX_INPUT_VALUES: u64 = 1 << 22;
/// Bytes of a `.cbam` blob's arena: `--max-arena`.
pub const DEFAULT_MAX_ARENA_BYTES: u64 = 64 << 20;
/// Bytes of data held in memory (decoded samples, decompressed IDX, labels): `--max-data-bytes`.
pub const DEFAULT_MAX_DATA_BYTES: u64 = 2 << 30;
/// Values of any one tensor of an imported model (weights and feature maps alike). Fixed:
/// a blob addresses its arena with 32-bit offsets, so larger tensors could never run.
pub const MAX_TENSOR_VALUES: u64 = 1 << 28;
/// Bytes of an ONNX or `.cbam` file: protobuf (and so ONNX) cannot exceed 2 GiB.
pub const MAX_MODEL_FILE_BYTES: u64 = 2 << 30;
/// Kernel sizes, strides, dilations and pads of a sliding window. Fixed: larger values are
/// no image model's and make tract loop or overflow.
pub const MAX_WINDOW: u64 = 1 << 16;
/// Positions of one pooling window (the product of `kernel_shape`). Fixed: tract builds a
/// table over every position, and a full-map pool of a 1024x1024 input still fits.
pub const MAX_WINDOW_AREA: u64 = 1 << 20;
/// Nodes of an ONNX graph. Fixed: far above any CNN (ResNet-152 has ~500).
pub const MAX_NODES: usize = 1 << 20;

/// The caps a user may raise, one flag each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_input_values: u64,
    pub max_arena_bytes: u64,
    pub max_data_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_values: DEFAULT_MAX_INPUT_VALUES,
            max_arena_bytes: DEFAULT_MAX_ARENA_BYTES,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
        }
    }
}

/// A size over its cap; `value: None` when computing it overflowed 64 bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {} {unit}, over the limit of {limit} {unit}; {}",
    .value.map_or("has more than 2^64".to_string(), |v| format!("is {v}")),
    .flag.map_or("cbam does not handle sizes this large".to_string(),
        |f| format!("if that is intended, raise the limit with {f} N"))
)]
pub struct LimitExceeded {
    pub what: String,
    pub value: Option<u64>,
    pub limit: u64,
    pub unit: &'static str,
    pub flag: Option<&'static str>,
}

/// `value` (`None`: overflowed) against `limit`.
pub fn check(
    what: impl FnOnce() -> String,
    value: Option<u64>,
    limit: u64,
    unit: &'static str,
    flag: Option<&'static str>,
) -> Result<u64, LimitExceeded> {
    match value {
        Some(v) if v <= limit => Ok(v),
        _ => Err(LimitExceeded {
            what: what(),
            value,
            limit,
            unit,
            flag,
        }),
    }
}

/// The product of `dims`, `None` on overflow.
pub fn product<I>(dims: I) -> Option<u64>
where
    I: IntoIterator,
    I::Item: TryInto<u64>,
{
    dims.into_iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(d.try_into().ok()?))
}

/// The values of a tensor of `dims`, at most [`MAX_TENSOR_VALUES`].
pub fn tensor_values(
    what: impl FnOnce() -> String,
    dims: &[usize],
) -> Result<usize, LimitExceeded> {
    let n = check(
        what,
        product(dims.iter().copied()),
        MAX_TENSOR_VALUES,
        "values",
        None,
    )?;
    // MAX_TENSOR_VALUES fits usize on every host cbam builds for (64-bit).
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

impl Limits {
    /// A model input of `shape` (`[C, H, W]` or with the batch): `C * H * W` values.
    pub fn check_input(&self, model: &str, shape: &[usize]) -> Result<u64, LimitExceeded> {
        check(
            || format!("the input {shape:?} of {model}"),
            product(shape.iter().copied()),
            self.max_input_values,
            "values",
            Some("--max-input-pixels"),
        )
    }

    /// A blob's arena.
    pub fn check_arena(&self, model: &str, bytes: u64) -> Result<u64, LimitExceeded> {
        check(
            || format!("the arena of {model}"),
            Some(bytes),
            self.max_arena_bytes,
            "bytes",
            Some("--max-arena"),
        )
    }

    /// Data about to be held in memory; `bytes: None` when its size overflowed.
    pub fn check_data(
        &self,
        what: impl FnOnce() -> String,
        bytes: Option<u64>,
    ) -> Result<u64, LimitExceeded> {
        check(
            what,
            bytes,
            self.max_data_bytes,
            "bytes",
            Some("--max-data-bytes"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_that_overflow_are_none() {
        assert_eq!(product([2usize, 3, 4]), Some(24));
        assert_eq!(product([1u64 << 62, 1, 2, 2]), None);
        assert_eq!(product(Vec::<usize>::new()), Some(1));
    }

    #[test]
    fn the_error_names_the_size_the_limit_and_the_flag() {
        let limits = Limits::default();
        let msg = limits
            .check_input("m.onnx", &[1, 100_000, 100_000])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("m.onnx") && msg.contains("10000000000"),
            "{msg}"
        );
        assert!(msg.contains("--max-input-pixels"), "{msg}");
        assert!(limits.check_input("m.onnx", &[1, 28, 28]).is_ok());
        let msg = tensor_values(|| "weight w".into(), &[1 << 62, 1, 2, 2])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("more than 2^64") && msg.contains("weight w"),
            "{msg}"
        );
    }
}
