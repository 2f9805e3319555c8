//! The debug link of `cbam eval --device`, one crate for both ends so they cannot disagree.
//!
//! - [`frame`]: the wire format, `0x00 | COBS(kind, seq, len, payload, CRC-32) | 0x00`.
//! - [`receiver`]: a byte stream cut into frames, resynchronising after garbage.
//! - [`message`]: what frames carry (hello/identity, input chunks, output with latency,
//!   ack, NAK, failure, log).
//! - [`device`] and [`host`]: stop-and-wait retransmission. The host numbers each request
//!   and resends it on a NAK, a damaged frame or a timeout; the device answers a repeated
//!   number with its remembered reply instead of carrying the request out again. A damaged
//!   or lost frame therefore costs a resend, never a wrong result.
//!
//! `no_std`, no allocation: every buffer is a `heapless` vector of fixed capacity.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod device;
pub mod frame;
pub mod host;
#[cfg(test)]
mod lossy_tests;
pub mod message;
pub mod receiver;

pub use device::{Incoming, Responder};
pub use frame::{Frame, FrameError, Kind, MAX_ENCODED, MAX_PAYLOAD};
pub use host::{Event, LinkError, LinkStats, Requester};
pub use message::{
    CounterUnit, DeviceError, Identity, Output, Reply, Request, MAX_CHUNK, MAX_OUTPUT,
    PROTOCOL_VERSION,
};
pub use receiver::FrameReceiver;
