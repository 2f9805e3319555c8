//! cbam-core: the `no_std`, allocation-free int8 inference core.
//!
//! - [`math`]: TFLite's fixed-point requantization.
//! - [`kernels`]: one portable int8 kernel per op, [`cbam`]: the fused CBAM block.
//! - [`blob`]: the `.cbam` reader (validates everything before the first run),
//!   [`Model::run`]: the interpreter over a caller-given arena.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

mod argmax;
pub mod blob;
pub mod cbam;
mod crc;
mod error;
mod interp;
pub mod kernels;
pub mod le;
pub mod math;
mod op_code;
#[cfg(test)]
mod testblob;

pub use argmax::{argmax, top1_tied};
pub use blob::{
    Model, OpInfo, TensorInfo, HEADER_LEN, MAGIC, OP_RECORD_LEN, TENSOR_RECORD_LEN, VERSION,
};
pub use crc::crc32;
pub use error::Error;
pub use interp::{NoObserver, Observer};
pub use op_code::{param_word_count, scratch_size, OpCode};
