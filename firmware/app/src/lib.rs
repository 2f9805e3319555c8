//! The cbam firmware, written once for every board.
//!
//! A board crate does only the wiring: it provides a latency [`Counter`], a
//! status LED (`embedded_hal::digital::OutputPin`), a delay
//! (`embedded_hal::delay::DelayNs`) and an [`Exit`], then calls [`run`] with the
//! model blob, a static arena and the build-generated [`TestSet`]. The app
//! validates the blob, checks the arena, runs every embedded image, compares
//! each output with the host core's, logs with `defmt` and exits pass/fail.
//!
//! With the `eval` feature the same wiring plus a byte port ([`transport`]) serves
//! `cbam eval --device` instead ([`eval`]): the host streams its test set over the
//! debug link and compares every output with its own core.
#![cfg_attr(not(test), no_std)]

#[macro_use]
mod log;

pub mod arena;
pub mod counter;
mod entry;
#[cfg(feature = "eval")]
pub mod eval;
pub mod input;
#[cfg(feature = "kernel-bench")]
pub mod kernel_bench;
pub mod layers;
pub mod region;
pub mod runner;
pub mod summary;
pub mod testset;
pub mod transport;

// The entry macro names the traits through this path, so board crates need no import.
pub use embedded_hal;
#[cfg(feature = "eval")]
pub use embedded_io;

pub use arena::StaticArena;
pub use counter::{Counter, CounterKind};
pub use runner::{run, run_on_stack, AppError, Board, Buffers, Exit, Identity};
pub use summary::Summary;
pub use testset::TestSet;
