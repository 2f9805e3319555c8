//! The host backends (x86_64 AVX2, aarch64 NEON) for the Raspberry Pi and the PC: whole
//! CONV2D, ADD, MAX_POOL2D and the CBAM element-wise steps on vector lanes, the same bits
//! as the portable kernels, several times faster.
//!
//! - [`isa`]: the [`Isa`] trait each instruction set implements (`x86`, `neon`) and the
//!   constants it works from;
//! - [`conv`], [`depthwise`], [`cbam`], [`add`]: the loops and checks around the arithmetic, written once
//!   for every [`Isa`];
//! - [`pool`]: MAX_POOL2D in plain Rust with the channels innermost, which the compiler
//!   vectorises by itself (so it needs no instruction set detected).
//!
//! Each entry point answers `false` on a CPU without the instruction set and for
//! parameters outside what the fast path is exact for; the portable kernel then runs.

mod add;
mod cbam;
pub(super) mod conv;
pub(super) mod depthwise;
pub(super) mod gemm;
pub(super) mod isa;
pub(super) mod pool;
mod prepacked;
mod scratch;
#[cfg(test)]
pub(super) mod tests;
pub(super) mod words;

use super::{Backend, NoBounds};
use crate::kernels::{
    AddParams, CbamParams, Conv2dParams, DepthwiseParams, PoolKind, PoolParams, Shape,
};
use crate::math::ActRange;
use core::marker::PhantomData;
pub(super) use isa::Isa;

/// A CPU feature probed on first use and remembered: the instruction sets' `detect`.
pub(super) struct Probed(core::sync::atomic::AtomicU8);

impl Probed {
    const UNKNOWN: u8 = 0;
    const ABSENT: u8 = 1;
    const PRESENT: u8 = 2;

    pub(super) const fn new() -> Self {
        Self(core::sync::atomic::AtomicU8::new(Self::UNKNOWN))
    }

    /// `probe()`, asked on the first call only.
    #[inline]
    pub(super) fn get(&self, probe: fn() -> bool) -> bool {
        use core::sync::atomic::Ordering::Relaxed;
        match self.0.load(Relaxed) {
            Self::UNKNOWN => {
                let present = probe();
                let state = if present { Self::PRESENT } else { Self::ABSENT };
                self.0.store(state, Relaxed);
                present
            }
            known => known == Self::PRESENT,
        }
    }
}

/// The host backend over the instruction set `I`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Simd<I>(PhantomData<I>);

impl<I: Isa> Backend for Simd<I> {
    type ActBounds = NoBounds;

    #[inline(always)]
    fn act_bounds(_: ActRange) -> NoBounds {
        NoBounds
    }

    #[inline]
    fn conv2d(
        p: &Conv2dParams,
        in_shape: Shape,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
    ) -> bool {
        I::detect().is_some_and(|isa| conv::conv2d(isa, p, in_shape, input, out_shape, output))
    }

    #[inline]
    fn conv2d_packing(p: &Conv2dParams, shapes: (Shape, Shape), out: &mut [i32]) -> usize {
        I::detect().map_or(0, |isa| conv::prepack(isa, p, shapes, out))
    }

    #[inline]
    fn depthwise(
        p: &DepthwiseParams,
        in_shape: Shape,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
    ) -> bool {
        I::detect()
            .is_some_and(|isa| depthwise::depthwise(isa, p, in_shape, input, out_shape, output))
    }

    #[inline]
    fn add_dense(p: &AddParams, in1: &[i8], in2: &[i8], out: &mut [i8]) -> bool {
        I::detect().is_some_and(|isa| add::add_dense(isa, p, in1, in2, out))
    }

    #[inline]
    fn pool2d(
        kind: PoolKind,
        p: &PoolParams,
        in_shape: Shape,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
    ) -> bool {
        match I::detect() {
            Some(isa) => isa.pool2d(kind, p, in_shape, input, out_shape, output),
            None => pool::pool2d(kind, p, in_shape, input, out_shape, output),
        }
    }

    #[inline]
    fn channel_totals(input: &[i8], c: usize, each: impl FnMut(usize, i32, i8)) -> bool {
        I::detect().is_some_and(|isa| cbam::channel_totals(isa, input, c, each))
    }

    /// All channels or none.
    #[inline]
    fn cbam_pool_channels(
        p: &CbamParams,
        data: &[i8],
        _: usize,
        pa: &mut [i8],
        pm: &mut [i8],
    ) -> usize {
        match I::detect() {
            Some(isa) if cbam::pool_channels(isa, p, data, pa, pm) => p.c,
            _ => 0,
        }
    }

    #[inline]
    fn cbam_scale_channels(
        p: &CbamParams,
        data: &mut [i8],
        att: &[i8],
        maps: &mut [i8],
        _: &mut [i8],
    ) -> bool {
        I::detect().is_some_and(|isa| cbam::scale_channels_and_pool(isa, p, data, att, maps))
    }

    #[inline]
    fn cbam_scale_pixels(p: &CbamParams, data: &mut [i8], att: &[i8]) -> bool {
        I::detect().is_some_and(|isa| cbam::scale_pixels(isa, p, data, att))
    }

    /// Never: the CONV2D kernel's vector path is faster than the ring of rows here.
    #[inline]
    fn cbam_spatial_conv(_: &CbamParams, _: Shape, _: &[i8], _: &mut [i8]) -> bool {
        false
    }
}
