//! cbam-core: the `no_std`, allocation-free int8 inference core.
//!
//! - [`math`]: TFLite's fixed-point requantization.
//! - [`kernels`]: one portable int8 kernel per op, [`cbam`]: the fused CBAM block.
//! - [`format`]: the `.cbam` blob format (FORMAT.md) in one place: constants, records, op
//!   codes, each op's parameter words and scratch size; the encoder behind feature `alloc`.
//! - [`blob`]: the `.cbam` reader (validates everything before the first run),
//!   [`Model::run`]: the interpreter over a caller-given arena.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

pub mod blob;
pub mod cbam;
mod crc;
mod error;
pub mod format;
mod interp;
pub mod kernels;
pub mod le;
pub mod math;
#[cfg(test)]
mod testblob;

pub use blob::{Model, OpInfo, TensorInfo};
pub use crc::crc32;
pub use error::Error;
pub use format::{OpCode, HEADER_LEN, MAGIC, OP_RECORD_LEN, TENSOR_RECORD_LEN, VERSION};
pub use interp::{argmax, NoObserver, Observer};
