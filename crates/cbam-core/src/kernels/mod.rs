//! The int8 kernels, one module per op. The inner products they share live in [`dot`]
//! (portable) with a Cortex-M4/M7 DSP version in `arm_dsp`, chosen in `dot` only.
//!
//! Every kernel checks its slice lengths against its shapes on entry (returning
//! [`Error::SliceLength`]) so that all indexing after that point is in bounds by
//! construction. Accumulation wraps like TFLite's int32 arithmetic instead of panicking
//! in debug builds on adversarial weights.

pub mod add;
#[cfg(cbam_arm_dsp)]
mod arm_dsp;
mod channel_groups;
pub mod concat;
pub mod conv2d;
pub mod depthwise;
pub(crate) mod dot;
pub mod fully_connected;
pub mod global_pool;
pub mod mul;
pub mod pool;
pub(crate) mod requant;
pub mod sigmoid;

#[cfg(test)]
pub(crate) mod test_support;

use crate::error::Error;

/// An activation tensor's shape, NHWC with batch 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c }
    }

    /// `h * w`, or `None` on overflow.
    pub fn pixels(&self) -> Option<usize> {
        self.h.checked_mul(self.w)
    }

    /// `h * w * c`, or `None` on overflow.
    pub fn len(&self) -> Option<usize> {
        self.pixels()?.checked_mul(self.c)
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.h == 0 || self.w == 0 || self.c == 0
    }
}

/// Fails with `SliceLength { what }` unless `actual == expected` (and `expected` exists).
pub(crate) fn check_len(
    actual: usize,
    expected: Option<usize>,
    what: &'static str,
) -> Result<(), Error> {
    match expected {
        Some(n) if n == actual => Ok(()),
        _ => Err(Error::SliceLength { what }),
    }
}

/// `sum (x + x_offset) * w` over two equally long slices, with int32 wrap-around.
#[inline]
pub(crate) fn dot_with_offset(x: &[i8], w: &[i8], x_offset: i32) -> i32 {
    dot::dot1(x, w, x_offset)
}

/// Per-output-channel bias and requantizers with the tensors' zero points and the clamp:
/// the quantization of every accumulating kernel (conv, depthwise, fully connected).
#[derive(Clone, Copy, Debug)]
pub struct ChannelQuant<'a> {
    pub in_zp: i32,
    pub out_zp: i32,
    pub act: crate::math::ActRange,
    pub bias: crate::le::I32Le<'a>,
    pub mult: crate::le::I32Le<'a>,
    pub shift: crate::le::I32Le<'a>,
}

impl ChannelQuant<'_> {
    /// Fails unless every per-channel array has exactly `channels` words.
    pub(crate) fn check(&self, channels: usize) -> Result<(), Error> {
        if self.bias.len() == channels
            && self.mult.len() == channels
            && self.shift.len() == channels
        {
            Ok(())
        } else {
            Err(Error::SliceLength {
                what: "per-channel bias/mult/shift",
            })
        }
    }

    /// `(bias, requantizer)` per output channel.
    pub(crate) fn channels(&self) -> impl Iterator<Item = (i32, crate::math::Requant)> + '_ {
        self.bias
            .iter()
            .zip(self.mult.iter().zip(self.shift.iter()))
            .map(|(b, (m, s))| (b, crate::math::Requant::new(m, s)))
    }

    /// `(bias, output stage)` per output channel, for the hot loops.
    #[inline]
    pub(crate) fn outputs(&self) -> impl Iterator<Item = (i32, requant::OutputRequant)> + '_ {
        self.channels()
            .map(|(b, rq)| (b, requant::OutputRequant::new(rq, self.out_zp, self.act)))
    }
}
