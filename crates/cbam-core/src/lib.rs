//! cbam-core: the `no_std`, allocation-free int8 inference core.
//!
//! [`Model::parse`] validates a `.cbam` blob once (every offset, length, shape and the
//! arena size); [`Model::run`] runs it over a caller-given arena, and
//! [`Model::run_observed`] with an [`Observer`] (per-op hooks, CBAM attention maps);
//! [`Model::input_mut`] then [`Model::invoke`] do the same without a second copy of the
//! input (it is written straight into the arena); [`argmax`] picks the class. [`TensorInfo`] describes the input and the output.
//!
//! - [`format`]: the `.cbam` blob format (FORMAT.md) in one place: constants, records, op
//!   codes, each op's parameter words and scratch size; the encoder behind feature `alloc`.
//! - [`blob`]: the `.cbam` reader (validates everything before the first run); the
//!   interpreter runs it over the kernels, one per op, and the fused CBAM block.
//!
//! With the `kernels` feature the kernels, the fused CBAM op and their fixed-point
//! arithmetic are public too (modules `kernels`, `cbam`, `math`), for benchmarks that
//! call them directly; `test-support` adds the shared kernel suite that device tests run
//! (`kernels::test_support`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

mod argmax;
pub mod blob;
mod crc;
mod error;
pub mod format;
mod interp;
pub mod le;
pub mod schedule;
#[cfg(test)]
mod testblob;

// The kernels, the fused CBAM op and their arithmetic are public only with the `kernels`
// feature: users run models, benchmarks and device tests call the kernels themselves.
#[cfg(feature = "kernels")]
pub mod cbam;
#[cfg(not(feature = "kernels"))]
mod cbam;
#[cfg(feature = "kernels")]
pub mod kernels;
#[cfg(not(feature = "kernels"))]
mod kernels;
#[cfg(feature = "kernels")]
pub mod math;
#[cfg(not(feature = "kernels"))]
mod math;

pub use argmax::{argmax, top1_tied};
pub use blob::{Model, OpInfo, TensorInfo};
pub use crc::crc32;
pub use error::Error;
pub use format::{OpCode, HEADER_LEN, MAGIC, OP_RECORD_LEN, TENSOR_RECORD_LEN, VERSION};
pub use interp::{NoObserver, Observer, RowShare, Split, MAX_SHARES};
