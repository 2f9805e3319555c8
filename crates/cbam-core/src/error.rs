//! The one error type of the core: `Copy`, allocation-free, one variant per failure class.

use core::fmt;

/// Everything that can go wrong reading a blob or running a model.
///
/// Op and tensor indices are the positions in the blob's tables, so a message can be traced
/// back to the compiler's report of the same blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The slice is shorter than the header or than the header's `total_len`.
    Truncated { needed: usize, found: usize },
    /// The first four bytes are not `b"CBAM"`.
    BadMagic,
    /// The blob was written for a format version this core does not read.
    UnsupportedVersion { found: u16 },
    /// `header_len` is not the 64 bytes of format version 1.
    BadHeaderLen { found: u16 },
    /// `total_len` is smaller than the header itself.
    BadTotalLen { found: u32 },
    /// The CRC-32 of bytes `[16, total_len)` does not match the header.
    BadCrc { stored: u32, computed: u32 },
    /// A region (`what`) at `offset` with `len` bytes does not lie inside the blob.
    OffsetOutOfBounds {
        what: &'static str,
        offset: usize,
        len: usize,
    },
    /// A size computed from the blob's shapes or params overflows `usize`.
    ShapeOverflow { what: &'static str },
    /// A tensor record is inconsistent (`reason` says how).
    BadTensor { tensor: u16, reason: &'static str },
    /// A tensor index (in the header or an op record) is past the tensor table.
    BadTensorIndex { tensor: u16 },
    /// A tensor's bytes end past the header's `arena_size`.
    ArenaTooSmall {
        tensor: u16,
        needed: usize,
        arena_size: usize,
    },
    /// The header's scratch region does not lie inside the arena.
    ScratchOutsideArena,
    /// The caller's arena buffer is smaller than the header's `arena_size`.
    ArenaBufferTooSmall { needed: usize, found: usize },
    /// An op record carries a code this core does not implement.
    UnknownOp { op: u16, code: u16 },
    /// An op record has the wrong number of inputs for its code.
    BadInputCount { op: u16, found: u16 },
    /// An op's `params_len` is not 4 x the word count of its code.
    BadParamLen {
        op: u16,
        expected: usize,
        found: usize,
    },
    /// An op's parameters are out of range or inconsistent (`reason` says which).
    BadParams { op: u16, reason: &'static str },
    /// An op's tensor shapes do not agree with each other or with its params.
    ShapeMismatch { op: u16, reason: &'static str },
    /// An op reads a tensor that is neither the model input nor an earlier op's output.
    TensorNotReady { op: u16, tensor: u16 },
    /// An op's input, output and scratch overlap in the arena where they must not.
    ArenaOverlap { op: u16 },
    /// An op's `scratch_len` differs from what the core needs, or exceeds the header's scratch.
    BadScratch {
        op: u16,
        expected: usize,
        found: usize,
    },
    /// The model output tensor is not written by any op.
    OutputNeverWritten,
    /// A stage of the schedule cannot run band by band (`reason`).
    BadSchedule { stage: u16, reason: &'static str },
    /// The metadata section is not UTF-8.
    BadMetadata,
    /// The caller's input slice does not have the input tensor's `h*w*c` bytes.
    InputLength { expected: usize, found: usize },
    /// The caller's output slice does not have the output tensor's `h*w*c` bytes.
    OutputLength { expected: usize, found: usize },
    /// A kernel was called with slices whose lengths disagree with its shapes (`what`).
    SliceLength { what: &'static str },
    /// [`crate::Model::invoke_ops`] was given ops `start..end` that leave the op table or
    /// begin or end inside a band-by-band stage.
    BadOpRange { start: usize, end: usize },
    /// A [`crate::Model::run_split`] executor returned before running every row share of op
    /// `op`.
    ShareNotRun { op: u16 },
    /// [`crate::Model::pack_weights`] was given a buffer of `found` words; the model's
    /// packed weights take `needed`.
    PackBufferTooSmall { needed: usize, found: usize },
    /// [`crate::Model::with_packed_weights`] was given words that
    /// [`crate::Model::pack_weights`] did not write for this blob on this architecture.
    PackedForOtherModel,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            Truncated { needed, found } => write!(
                f,
                "blob truncated: need {needed} bytes, got {found}; re-copy or re-flash the whole file"
            ),
            BadMagic => f.write_str("not a .cbam blob (magic is not \"CBAM\"); pass the file written by `cbam quantize`"),
            UnsupportedVersion { found } => write!(
                f,
                "blob format version {found} is not supported (this core reads versions {} to {}); recompile the model with a matching cbam",
                crate::format::MIN_VERSION,
                crate::format::VERSION
            ),
            BadHeaderLen { found } => write!(f, "header_len is {found}, expected {}", crate::format::HEADER_LEN),
            BadTotalLen { found } => write!(f, "total_len {found} is smaller than the header"),
            BadCrc { stored, computed } => write!(
                f,
                "CRC mismatch (stored {stored:#010x}, computed {computed:#010x}): the blob is corrupted"
            ),
            OffsetOutOfBounds { what, offset, len } => write!(
                f,
                "{what} at offset {offset} ({len} bytes) lies outside the blob"
            ),
            ShapeOverflow { what } => write!(f, "{what}: size overflows usize on this target"),
            BadTensor { tensor, reason } => write!(f, "tensor {tensor}: {reason}"),
            BadTensorIndex { tensor } => write!(f, "tensor index {tensor} is past the tensor table"),
            ArenaTooSmall { tensor, needed, arena_size } => write!(
                f,
                "tensor {tensor} ends at arena byte {needed} but the header's arena_size is {arena_size}"
            ),
            ScratchOutsideArena => f.write_str("the header's scratch region lies outside arena_size"),
            ArenaBufferTooSmall { needed, found } => write!(
                f,
                "arena buffer has {found} bytes, the model needs {needed}; size it from Model::arena_size()"
            ),
            UnknownOp { op, code } => write!(f, "op {op}: unknown op code {code}; recompile with a matching cbam"),
            BadInputCount { op, found } => write!(f, "op {op}: wrong number of inputs ({found})"),
            BadParamLen { op, expected, found } => write!(
                f,
                "op {op}: params are {found} bytes, its code needs {expected}"
            ),
            BadParams { op, reason } => write!(f, "op {op}: bad parameters: {reason}"),
            ShapeMismatch { op, reason } => write!(f, "op {op}: shape mismatch: {reason}"),
            TensorNotReady { op, tensor } => write!(
                f,
                "op {op} reads tensor {tensor} before any op has written it"
            ),
            ArenaOverlap { op } => write!(
                f,
                "op {op}: its inputs, output and scratch overlap in the arena"
            ),
            BadScratch { op, expected, found } => write!(
                f,
                "op {op}: scratch_len is {found}, the core needs {expected} (within the header's scratch)"
            ),
            OutputNeverWritten => f.write_str("no op writes the model output tensor"),
            BadSchedule { stage, reason } => write!(
                f,
                "schedule stage {stage}: {reason}; recompile the model with a matching cbam"
            ),
            BadMetadata => f.write_str("the metadata section is not valid UTF-8"),
            InputLength { expected, found } => write!(
                f,
                "input has {found} values, the model input tensor needs {expected}"
            ),
            OutputLength { expected, found } => write!(
                f,
                "output buffer has {found} values, the model output tensor has {expected}"
            ),
            SliceLength { what } => write!(f, "kernel called with inconsistent slice lengths: {what}"),
            PackBufferTooSmall { needed, found } => write!(
                f,
                "packed-weights buffer has {found} words, the model needs {needed}; size it from Model::packed_weights_len()"
            ),
            PackedForOtherModel => f.write_str(
                "these packed weights were not written for this model blob on this architecture; pack them with Model::pack_weights"
            ),
            ShareNotRun { op } => write!(
                f,
                "op {op}: the executor returned without running every row share; call RowShare::run on each share it is given"
            ),
            BadOpRange { start, end } => write!(
                f,
                "ops {start}..{end} leave the op table or split a band-by-band stage; resume only at op boundaries outside stages"
            ),
        }
    }
}

impl core::error::Error for Error {}
