//! The `.cbam` blob reader (FORMAT.md): validates everything once, then reads in place.

mod decode;
mod header;
mod op_record;
mod read;
pub(crate) mod stages;
mod tensor;
mod validate;

use crate::error::Error;
use crate::format::{OpCode, FLAG_RAW_PIXELS};
pub(crate) use decode::{decode_op, Kernel, Op};
pub(crate) use header::Header;
pub(crate) use tensor::{Span, Tensor};

/// Shape and quantization of a model input or output tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorInfo {
    pub h: usize,
    pub w: usize,
    /// Channels stored (the kept count for a pruned tensor).
    pub c: usize,
    pub full_c: usize,
    pub scale: f32,
    pub zero_point: i32,
}

impl TensorInfo {
    fn of(t: &Tensor) -> Self {
        Self {
            h: t.shape.h,
            w: t.shape.w,
            c: t.shape.c,
            full_c: t.full_c,
            scale: t.scale,
            zero_point: t.zero_point,
        }
    }

    /// `h * w * c`: the values the caller passes or receives.
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The real value of a quantized one (host-side convenience; kernels never use floats).
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (i32::from(q) - self.zero_point) as f32
    }
}

/// What an op is, for per-layer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OpInfo {
    pub code: OpCode,
    /// Multiply-accumulates per run as the core counts them (0 for pooling and copies).
    pub macs: u64,
    /// `(h, w, c)` of the output tensor.
    pub output: (usize, usize, usize),
}

/// A validated model blob, borrowed in place (e.g. from flash).
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub(crate) blob: &'a [u8],
    pub(crate) header: Header,
    input: TensorInfo,
    output: TensorInfo,
    /// Convolution weights packed for this CPU's kernels (see `Model::pack_weights`), or
    /// empty.
    pub(crate) packed: &'a [i32],
}

impl<'a> Model<'a> {
    /// Validates the whole blob: header, CRC, every table, offset, shape, op parameter,
    /// arena range and the op order. After `Ok`, [`Model::run`] cannot fail on the blob's
    /// account, only on the caller's buffers.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let (header, blob) = Header::parse(bytes)?;
        validate::model(blob, &header)?;
        let input = TensorInfo::of(&tensor::tensor(blob, &header, header.input_tensor)?);
        let output = TensorInfo::of(&tensor::tensor(blob, &header, header.output_tensor)?);
        Ok(Self {
            blob,
            header,
            input,
            output,
            packed: &[],
        })
    }

    /// Bytes of arena [`Model::run`] needs (activations and scratch).
    pub fn arena_size(&self) -> usize {
        self.header.arena_size
    }

    pub fn input(&self) -> TensorInfo {
        self.input
    }

    pub fn output(&self) -> TensorInfo {
        self.output
    }

    /// Whether the input takes raw 8-bit pixels as `q = pixel - 128` (normalisation folded in).
    pub fn input_is_raw_pixels(&self) -> bool {
        self.header.flags & FLAG_RAW_PIXELS != 0
    }

    /// The value of a metadata key (`name`, `labels`, `source`, `calibration`, ...).
    pub fn meta(&self, key: &str) -> Option<&'a str> {
        self.header
            .meta(self.blob)
            .lines()
            .filter_map(|line| line.split_once('='))
            .find_map(|(k, v)| (k == key).then_some(v))
    }

    /// The class labels from the `labels` metadata key, in output order.
    pub fn labels(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.meta("labels")
            .into_iter()
            .flat_map(|l| l.split(','))
            .filter(|l| !l.is_empty())
    }

    pub fn n_ops(&self) -> usize {
        usize::from(self.header.n_ops)
    }

    /// Op `index`'s code, MAC count and output shape.
    pub fn op(&self, index: usize) -> Option<OpInfo> {
        let op = decode_op(self.blob, &self.header, u16::try_from(index).ok()?).ok()?;
        let s = op.output.shape;
        Some(OpInfo {
            code: op.record.code,
            macs: op.macs(),
            output: (s.h, s.w, s.c),
        })
    }

    /// Multiply-accumulates per inference as the header states them.
    pub fn macs(&self) -> u64 {
        u64::from(self.header.macs)
    }

    /// The shared scratch region's size (part of [`Model::arena_size`]).
    pub fn scratch_size(&self) -> usize {
        self.header.scratch_size
    }

    /// The CRC-32 the header stores (and `parse` checked): identifies the blob, e.g. to
    /// tell whether outputs computed at build time belong to the blob found in flash.
    pub fn crc(&self) -> u32 {
        self.header.crc32
    }
}

/// The arena span of tensor `index` (validated by `parse`).
pub(crate) fn tensor_span(blob: &[u8], header: &Header, index: u16) -> Result<Span, Error> {
    tensor::tensor(blob, header, index).map(|t| t.span)
}

#[cfg(test)]
mod tests;
