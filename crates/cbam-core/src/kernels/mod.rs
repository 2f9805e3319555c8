//! The int8 kernels, one module per op, with their parameters in one file (`params`).
//! Each kernel is written once over the entry points of the backend this build selected
//! (`backend`: inner products, output stages, a few whole steps), whose portable versions
//! are the reference; no kernel names an architecture.
//!
//! Every kernel checks its slice lengths against its shapes on entry (returning
//! [`Error::SliceLength`]) so that all indexing after that point is in bounds by
//! construction. Accumulation wraps like TFLite's int32 arithmetic instead of panicking
//! in debug builds on adversarial weights.

/// Evaluates `$run` with `$stages` bound to the layer's output stages: the short
/// [`requant::BoundedStage`]s when every channel qualifies for accumulators `bias + dot`
/// with `|dot| <= $max_abs_dot`, else the general [`requant::ExactStage`]s. `$run` is
/// compiled once per kind, so each copy of a kernel loop has its stage inlined.
macro_rules! with_stages {
    ($quant:expr, $max_abs_dot:expr, |$stages:ident| $run:expr) => {
        match $quant.bounded_stages($max_abs_dot) {
            Some($stages) => $run,
            None => {
                let $stages = $quant.exact_stages();
                $run
            }
        }
    };
}

pub mod add;
pub(crate) mod backend;
mod channel_groups;
pub mod concat;
pub mod conv2d;
pub mod depthwise;
pub(crate) mod dot;
pub mod fully_connected;
pub mod global_pool;
pub mod mul;
mod params;
pub mod pool;
pub(crate) mod requant;
pub mod sigmoid;

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

use crate::error::Error;

pub use params::{
    AddParams, CbamMlp, CbamParams, ChannelQuant, ConcatInput, Conv2dParams, ConvGeometry,
    DepthwiseParams, FullyConnectedParams, GlobalAvgPoolParams, In2Channels, MulBroadcast,
    MulParams, PoolKind, PoolOrder, PoolParams, Shape, SigmoidLut,
};

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

    /// The general output stage of every channel, for the hot loops.
    #[inline]
    pub(crate) fn exact_stages(&self) -> impl Iterator<Item = requant::ExactStage> + '_ {
        self.channels().map(|(bias, rq)| requant::ExactStage {
            bias,
            rq: requant::OutputRequant::new(rq, self.out_zp, self.act),
        })
    }

    /// The short output stage of every channel, or `None` unless every channel qualifies
    /// for it when `|dot| <= max_abs_dot` (see [`requant::BoundedStage`]).
    #[inline]
    pub(crate) fn bounded_stages(
        &self,
        max_abs_dot: u64,
    ) -> Option<impl Iterator<Item = requant::BoundedStage> + '_> {
        let stage = move |(bias, rq)| {
            requant::BoundedStage::new(bias, rq, self.out_zp, self.act, max_abs_dot)
        };
        if self.channels().map(stage).any(|s| s.is_none()) {
            return None;
        }
        Some(self.channels().filter_map(stage))
    }

    /// The largest `|sum (x - in_zp) * w|` over `terms` products of int8 `x` and `w`.
    pub(crate) fn max_abs_dot(&self, terms: usize) -> u64 {
        let x = u64::from(self.in_zp.unsigned_abs()) + 128;
        (terms as u64).saturating_mul(x * 128)
    }
}
