//! The byte ports a board hands the evaluation firmware, as `embedded-io` traits, and the
//! log transports that go with them. Each is a thin adapter: framing, checking and
//! retransmission are `cbam-link`'s.

#[cfg(feature = "rtt")]
pub mod rtt;
#[cfg(all(feature = "semihosting", feature = "eval"))]
pub mod semihosting;
