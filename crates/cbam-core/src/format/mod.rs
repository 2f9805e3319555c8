//! The `.cbam` blob format of [FORMAT.md](../../FORMAT.md), as code: the one home of its
//! constants, record layouts, op codes, each op's parameter words and each op's scratch size.
//!
//! The reader ([`crate::blob`]) decodes through this module; the compiler's writer and every
//! test encoder encode through it ([`BlobWriter`], behind the `alloc` feature, so the core
//! stays `no_std` without an allocator by default). It depends on nothing in the crate but
//! [`crate::le`] and [`crate::crc`], so the error type, the kernels and the reader can all
//! use it without a cycle.
//!
//! - `records`: the header, tensor record and op record, field by field ([`HeaderFields`],
//!   [`TensorFields`], [`OpFields`]);
//! - `words`: parameter words in general ([`Words`], [`WordBuf`]) and the groups several ops
//!   share ([`ActWords`], [`RequantWords`], [`PerChannelWords`]);
//! - `params`: one words layout per op ([`Conv2dWords`], ..., [`ChannelPoolWords`]);
//! - `ops`: the op table ([`OpCode`], [`OpParams`]);
//! - `scratch`: the scratch bytes an op needs ([`cbam_scratch_size`]);
//! - `writer`: the blob assembler ([`BlobWriter`]; feature `alloc`).
//!
//! Adding an op is one row of the op table with its words layout, one kernel with its
//! validating constructor in the reader, and its lowering in the compiler.

mod ops;
mod params;
mod records;
mod scratch;
mod words;
#[cfg(any(test, feature = "alloc"))]
mod writer;

pub use ops::{OpCode, OpParams, OpWords};
pub use params::{
    AddWords, CbamWords, ChannelPoolWords, ConcatWords, Conv2dWords, DepthwiseWords,
    FullyConnectedWords, GlobalAvgPoolWords, LutWords, MulWords, NoWords, PoolWords,
};
pub use records::{
    seal_crc, Field, HeaderFields, OpFields, StageFields, TensorFields, STAGE_FLAG_LOOKAHEAD,
};
pub use scratch::{cbam_lookahead_scratch_size, cbam_scratch_size, lookahead_maps_hold_sums};
pub use words::{ActWords, PerChannelWords, RequantWords, WordBuf, Words, MAX_WORDS};
#[cfg(any(test, feature = "alloc"))]
pub use writer::{BlobWriter, ConstArrays, TooLarge, Unplaced};

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"CBAM";
/// The format version the compiler writes (and the newest this core reads).
pub const VERSION: u16 = 3;
/// The oldest version this core still reads (version 1: no schedule, no band buffers).
pub const MIN_VERSION: u16 = 1;
/// Bytes of the header.
pub const HEADER_LEN: u16 = 64;
/// Bytes of one tensor record.
pub const TENSOR_RECORD_LEN: usize = 32;
/// Bytes of one op record.
pub const OP_RECORD_LEN: usize = 32;
/// The header's CRC covers the bytes from here to `total_len`.
pub const CRC_START: usize = 16;
/// Bytes of one stage record of the schedule.
pub const STAGE_RECORD_LEN: usize = 8;
/// Input slots of an op record.
pub const MAX_INPUTS: usize = 4;
/// The tensor index of an unused input slot.
pub const NO_INPUT: u16 = 0xFFFF;
/// Constant arrays start at a multiple of this from the blob start (for aligned loads from
/// an aligned flash address; the reader never relies on it).
pub const ARRAY_ALIGN: usize = 16;
/// Parameter words start at a multiple of this.
pub const WORD_ALIGN: usize = 4;
/// Header flag bit 0: the input quantization is `q = pixel - 128` for raw 8-bit pixels.
pub const FLAG_RAW_PIXELS: u32 = 1;
/// Tensor record flag bit 0: the model input.
pub const TENSOR_FLAG_INPUT: u32 = 1;
/// Tensor record flag bit 1: the model output.
pub const TENSOR_FLAG_OUTPUT: u32 = 2;

const _: () = assert!(HeaderFields::LEN == HEADER_LEN as usize);
const _: () = assert!(TensorFields::LEN == TENSOR_RECORD_LEN);
const _: () = assert!(OpFields::LEN == OP_RECORD_LEN);
const _: () = assert!(StageFields::LEN == STAGE_RECORD_LEN);

#[cfg(test)]
mod tests;
