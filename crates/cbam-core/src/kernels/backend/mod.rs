//! The kernels' architecture seam: [`Backend`], the entry points an architecture may speed
//! up, and [`Active`], the backend this build runs. This is the only file that names an
//! architecture: the kernels call `Active::entry_point(..)` and nothing else.
//!
//! Each entry point's default is the portable code (`Portable`), the reference every
//! backend is tested against; a backend (one folder each) overrides what its instructions
//! do faster, with the same bits:
//! - `arm_dsp`: Cortex-M4/M7 (Armv7E-M), the DSP extension's packed multiply-accumulates
//!   under the inner products, the output stages and the CBAM steps;
//! - `simd` over `x86` (AVX2, detected at run time) or `neon` (aarch64): whole CONV2D,
//!   DEPTHWISE_CONV2D, ADD, MAX_POOL2D and the CBAM element-wise steps on vector lanes;
//!   the convolutions take the CPU's four-byte dot products where it has them (AVX-512
//!   VNNI, Armv8.2 `sdot`), also detected at run time.
//!
//! `suite` is the shared test suite each backend instantiates. `build.rs` sets
//! `cbam_backend` from the target (Arm target features are unstable in `cfg` on stable
//! Rust); this file maps it to a backend.

#[cfg(cbam_backend = "arm_dsp")]
mod arm_dsp;
#[cfg(cbam_backend = "neon")]
mod neon;
#[cfg(any(cbam_backend = "x86_64", cbam_backend = "neon"))]
mod simd;
#[cfg(any(test, feature = "test-support"))]
pub(crate) mod suite;
#[cfg(cbam_backend = "x86_64")]
mod x86;

/// The backend of this build.
#[cfg(cbam_backend = "arm_dsp")]
pub(crate) type Active = arm_dsp::ArmDsp;
/// The backend of this build (AVX2 where the CPU has it, else the portable code).
#[cfg(cbam_backend = "x86_64")]
pub(crate) type Active = simd::Simd<x86::Avx2>;
/// The backend of this build.
#[cfg(cbam_backend = "neon")]
pub(crate) type Active = simd::Simd<neon::Neon>;
/// The backend of this build: no architecture-specific code.
#[cfg(cbam_backend = "portable")]
pub(crate) type Active = Portable;

/// The activation range as the output stages of this build's backend read it.
pub(crate) type ActBounds = <Active as Backend>::ActBounds;

/// Input offsets for which `x + offset` fits a signed 16-bit lane for every int8 `x`
/// (and is never -32768): the packed backends take only these, any other offset runs the
/// portable code.
#[cfg(not(cbam_backend = "portable"))]
pub(crate) const PACKED_OFFSET: core::ops::RangeInclusive<i32> = -32_639..=32_639;

use super::depthwise::Interior;
use super::dot;
use super::requant::{self, BoundedStage, SignedProductRequant};
use super::{
    AddParams, CbamParams, ChannelPoolParams, Conv2dParams, ConvGeometry, DepthwiseParams,
    PoolKind, PoolParams, Shape,
};
use crate::cbam::spatial_conv;
use crate::math::ActRange;

/// The portable kernels: every entry point's default. The backend of the builds without
/// another, and the reference the shared suite compares every backend with.
#[cfg(any(test, feature = "test-support", cbam_backend = "portable"))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

#[cfg(any(test, feature = "test-support", cbam_backend = "portable"))]
impl Backend for Portable {
    type ActBounds = NoBounds;

    #[inline(always)]
    fn act_bounds(_: ActRange) -> NoBounds {
        NoBounds
    }
}

/// The [`Backend::ActBounds`] of the backends whose output stages clamp with each stage's
/// own range: nothing.
#[cfg(any(test, feature = "test-support", not(cbam_backend = "arm_dsp")))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct NoBounds;

/// The entry points of the kernels an architecture may replace, each with its portable
/// default. Every override returns exactly the default's bits for every input.
///
/// The inner products compute `sum (x + offset) * w` with int32 wrap-around, so any
/// summation order gives the same bits. The whole-step entry points answer `false` (or
/// `0` steps done) when the portable code must run instead: for parameters outside what
/// the fast path is exact for, or on a CPU without the instructions.
pub(crate) trait Backend: Sized {
    /// The activation range in the form this backend's output stages read it.
    type ActBounds: Copy;

    /// The [`Backend::ActBounds`] of `act`, made once per layer.
    fn act_bounds(act: ActRange) -> Self::ActBounds;

    /// `sum (x + offset) * w` over two equally long slices.
    #[inline]
    fn dot1(x: &[i8], w: &[i8], offset: i32) -> i32 {
        dot::dot1(x, w, offset)
    }

    /// `[dot1(x, w[0]), dot1(x, w[1])]` for rows as long as `x`: two output channels over
    /// one input run (the rows left over after [`Backend::dot4`]), so the input is loaded
    /// once per two weights.
    #[inline(always)]
    fn dot2(x: &[i8], w: [&[i8]; 2], offset: i32) -> [i32; 2] {
        dot::dot2(x, w, offset)
    }

    /// `[dot1(x, w[0]), .., dot1(x, w[3])]` for rows as long as `x`: four output channels
    /// over one input run, so the input is loaded once per four weights.
    #[inline(always)]
    fn dot4(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
        dot::dot4(x, w, offset)
    }

    /// [`Backend::dot4`] of the four consecutive rows of `x.len()` bytes each at the start of
    /// `rows` (a row-major weight matrix), which must hold them (the results are
    /// unspecified otherwise, though nothing reads past `rows`).
    #[inline(always)]
    fn dot4_rows(x: &[i8], rows: &[i8], offset: i32) -> [i32; 4] {
        dot::dot4_rows(x, rows, offset)
    }

    /// [`Backend::dot4`] for runs of a few words (small gathered windows).
    #[inline(always)]
    fn dot4_short(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
        dot::dot4(x, w, offset)
    }

    /// Lane-wise `acc[i] += (x[i] + offset) * w[i]`: four adjacent depthwise channels.
    #[inline(always)]
    fn mac_lanes4(acc: &mut [i32; 4], x: &[i8; 4], w: &[i8; 4], offset: i32) {
        dot::mac_lanes4(acc, x, w, offset)
    }

    /// [`Backend::mac_lanes4`] over the `n` taps of a kernel row whose input and weights
    /// advance by `x_step` and `w_step` bytes per tap (depth multiplier 1). Taps whose
    /// four bytes are not all inside both slices are skipped.
    #[inline(always)]
    fn mac_lanes4_row(
        acc: &mut [i32; 4],
        x: (&[i8], usize),
        w: (&[i8], usize),
        n: usize,
        offset: i32,
    ) {
        dot::mac_lanes4_taps::<Self>(acc, x, w, n, offset)
    }

    /// Lane-wise `acc[i] += sum x[i] * w[i]` (no input offset) over a whole 3x3 window of
    /// four adjacent depthwise channels: input taps `step` bytes apart within a row and
    /// `row` bytes apart between rows, weight taps `step` apart. Returns `false`, touching
    /// nothing, when a slice is too short for the window.
    #[inline(always)]
    fn mac_lanes4_3x3(acc: &mut [i32; 4], x: &[i8], row: usize, w: &[i8], step: usize) -> bool {
        dot::mac_lanes4_3x3(acc, x, row, w, step)
    }

    /// `(a * b + 2^31) >> 32`.
    #[inline(always)]
    fn mul_high_rounded(a: i32, b: i32) -> i32 {
        requant::mul_high_rounded(a, b)
    }

    /// [`SignedProductRequant`]'s value before its shift, for `x2 = 2 * x`.
    #[inline(always)]
    fn signed_product_unshifted(rq: &SignedProductRequant, x2: i32) -> i32 {
        rq.unshifted::<Self>(x2)
    }

    /// `clamp(requant(bias + dot) + zp)` of four adjacent output channels.
    #[inline(always)]
    fn finish4_bounded(
        stages: &[BoundedStage; 4],
        dots: [i32; 4],
        act: Self::ActBounds,
    ) -> [i8; 4] {
        let _ = act;
        let [s0, s1, s2, s3] = stages;
        let [d0, d1, d2, d3] = dots;
        [
            s0.finish_on::<Self>(d0),
            s1.finish_on::<Self>(d1),
            s2.finish_on::<Self>(d2),
            s3.finish_on::<Self>(d3),
        ]
    }

    /// The activation clamp `act` (whose bounds are `bounds`) of `N <= 4` adjacent
    /// outputs.
    #[inline(always)]
    fn clamp<const N: usize>(v: [i32; N], act: ActRange, bounds: Self::ActBounds) -> [i8; N] {
        let _ = bounds;
        v.map(|x| act.apply(x))
    }

    /// CONV2D over slices already checked against the shapes.
    #[inline(always)]
    fn conv2d(
        p: &Conv2dParams,
        in_shape: Shape,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
    ) -> bool {
        let _ = (p, in_shape, input, out_shape, output);
        false
    }

    /// CONV2D's weights packed once, ahead of its calls (see
    /// [`crate::kernels::conv2d::conv2d_packing`]): the words that takes, 0 for a backend
    /// whose kernel reads the weights as they are.
    #[inline(always)]
    fn conv2d_packing(p: &Conv2dParams, shapes: (Shape, Shape), out: &mut [i32]) -> usize {
        let _ = (p, shapes, out);
        0
    }

    /// DEPTHWISE_CONV2D over slices already checked against the shapes.
    #[inline(always)]
    fn depthwise(
        p: &DepthwiseParams,
        in_shape: Shape,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
    ) -> bool {
        let _ = (p, in_shape, input, out_shape, output);
        false
    }

    /// Whether the backend has a [`Backend::depthwise_3x3_interior`]: a constant, so that
    /// the depthwise kernel of a backend without one leaves out the call and the arguments
    /// it would gather for it.
    const HAS_DEPTHWISE_3X3_INTERIOR: bool = false;

    /// The `interior` pixels of the group of four depthwise channels from `first`, for a
    /// whole 3x3 window (no dilation) of geometry `g` over an input of `in_shape`;
    /// `weights` start at the group's first channel. `finish` turns each pixel's
    /// accumulators (started from `offset_term`) into its four outputs.
    #[inline(always)]
    fn depthwise_3x3_interior(
        (g, in_shape): (&ConvGeometry, Shape),
        (interior, first): (&Interior, usize),
        (input, weights): (&[i8], &[i8]),
        output: &mut [i8],
        offset_term: [i32; 4],
        finish: impl Fn([i32; 4]) -> [i8; 4],
    ) -> bool {
        let _ = (
            g,
            in_shape,
            interior,
            first,
            input,
            weights,
            output,
            offset_term,
            finish,
        );
        false
    }

    /// Dense ADD over equally long slices already checked against the shape.
    #[inline(always)]
    fn add_dense(p: &AddParams, in1: &[i8], in2: &[i8], out: &mut [i8]) -> bool {
        let _ = (p, in1, in2, out);
        false
    }

    /// MAX_POOL2D or AVG_POOL2D over slices already checked against the shapes
    /// (dilation 1).
    #[inline(always)]
    fn pool2d(
        kind: PoolKind,
        p: &PoolParams,
        in_shape: Shape,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
    ) -> bool {
        let _ = (kind, p, in_shape, input, out_shape, output);
        false
    }

    /// Each channel's wrapping sum and maximum over the pixels of an NHWC map of `c`
    /// channels (GLOBAL_AVG_POOL, GLOBAL_MAX_POOL), as `each(channel, sum, max)`; `false`,
    /// visiting none, where the portable kernel runs.
    #[inline(always)]
    fn channel_totals(input: &[i8], c: usize, each: impl FnMut(usize, i32, i8)) -> bool {
        let _ = (input, c, each);
        false
    }

    /// CHANNEL_POOL over slices already checked against the shapes and parameters.
    #[inline(always)]
    fn channel_pool(
        p: &ChannelPoolParams,
        in_shape: Shape,
        input: &[i8],
        output: &mut [i8],
    ) -> bool {
        let _ = (p, in_shape, input, output);
        false
    }

    /// Step 1 of the fused CBAM op (see [`crate::cbam::pool_channels`]) for the first
    /// channels: returns how many it did, the portable code does the rest.
    #[inline(always)]
    fn cbam_pool_channels(
        p: &CbamParams,
        data: &[i8],
        hw: usize,
        pa: &mut [i8],
        pm: &mut [i8],
    ) -> usize {
        let _ = (p, data, hw, pa, pm);
        0
    }

    /// Steps 4b and 5 of the fused CBAM op (see [`crate::cbam::scale_channels_and_pool`]).
    #[inline(always)]
    fn cbam_scale_channels(
        p: &CbamParams,
        data: &mut [i8],
        att: &[i8],
        maps: &mut [i8],
        table: &mut [i8],
    ) -> bool {
        let _ = (p, data, att, maps, table);
        false
    }

    /// Step 7b of the fused CBAM op (see [`crate::cbam::scale_pixels`]).
    #[inline(always)]
    fn cbam_scale_pixels(p: &CbamParams, data: &mut [i8], att: &[i8]) -> bool {
        let _ = (p, data, att);
        false
    }

    /// Steps 6 and 7a of the fused CBAM op (see [`crate::cbam::spatial_attention`]) by the
    /// ring of rows of [`spatial_conv`]; `false` to take the CONV2D kernel instead.
    #[inline(always)]
    fn cbam_spatial_conv(p: &CbamParams, shape: Shape, maps: &[i8], att: &mut [i8]) -> bool {
        let (h, w, taps) = (shape.h, shape.w, spatial_conv::row_taps(p.k));
        spatial_conv::rows(p, h, w, maps, att, taps, spatial_conv::dot_row)
    }
}
