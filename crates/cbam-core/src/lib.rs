//! cbam-core: the `no_std`, allocation-free int8 inference core.
//!
//! [`Model::parse`] validates a `.cbam` blob once (every offset, length, shape and the
//! arena size); [`Model::run`] runs it over a caller-given arena, and
//! [`Model::run_observed`] with an [`Observer`] (per-op hooks, CBAM attention maps);
//! [`argmax`] picks the class. [`TensorInfo`] describes the input and the output.
//!
//! With the `kernels` feature the kernels, the fused CBAM op and their fixed-point
//! arithmetic are public too (modules `kernels`, `cbam`, `math`), for benchmarks that
//! call them directly; `test-support` adds the shared kernel suite that device tests run
//! (`kernels::test_support`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod blob;
mod crc;
mod error;
mod interp;
pub mod le;
mod op_code;
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

pub use blob::{
    Model, OpInfo, TensorInfo, HEADER_LEN, MAGIC, OP_RECORD_LEN, TENSOR_RECORD_LEN, VERSION,
};
pub use crc::crc32;
pub use error::Error;
pub use interp::{argmax, NoObserver, Observer};
pub use op_code::{param_word_count, scratch_size, OpCode};
