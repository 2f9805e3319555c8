//! Cortex-M4/M7 (Armv7E-M): the entry points on the DSP extension's packed 16-bit
//! multiply-accumulates and byte-wise selects.
//!
//! - [`dot`]: the inner products (`SMLAD` over `SXTAB16`/`SXTB16` lanes) and the
//!   depthwise lane-wise products (`SMLABB`/`SMLATT`);
//! - the output stages: `SMMULR`/`SMMLAR` for the doubling high multiply, the activation
//!   clamp of four outputs at once on their packed bytes ([`ActBytes`]);
//! - [`depthwise`]: the 3x3 interior with its bounds checked once per row;
//! - [`cbam`], [`pow2`], [`scale`]: the fused CBAM op's pooling, scalings and spatial
//!   convolution.
//!
//! Every lane value fits 16 bits, every product 32 bits, and every sum wraps modulo 2^32
//! like the portable `wrapping_add`, so the results are the portable code's bits (the
//! sticky Q flag the multiply-accumulates may set is never read).
//!
//! The whole steps (the CBAM pooling, scalings and ring of rows, the depthwise interior)
//! and the functions under them are `#[inline]`: rustc exports whatever a trait impl
//! reaches through inlinable code, and an exported step would be compiled apart from the
//! kernel that calls it (measured: about one instruction more per pixel of the CBAM
//! scalings). As inline functions they stay private copies, which join their one caller.

#![allow(unsafe_code)]

mod cbam;
mod depthwise;
mod dot;
mod insn;
mod pow2;
mod scale;

use super::{Backend, PACKED_OFFSET};
use crate::kernels::depthwise::Interior;
use crate::kernels::requant::{BoundedStage, SignedProductRequant};
use crate::kernels::{CbamParams, ConvGeometry, Shape};
use crate::math::ActRange;

/// The Armv7E-M DSP extension.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArmDsp;

/// A layer's activation range with its bounds in all four bytes of a word, for the packed
/// clamp of four outputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActBytes {
    lo: u32,
    hi: u32,
}

impl ActBytes {
    /// The range applied to four packed signed bytes at once.
    #[inline(always)]
    fn clamp(self, packed: u32) -> u32 {
        insn::clamp_bytes(packed, self.lo, self.hi)
    }
}

/// The offset in both 16-bit lanes, for `SXTAB16`.
#[inline(always)]
fn splat_offset(offset: i32) -> u32 {
    (offset as u32 & 0xFFFF).wrapping_mul(0x0001_0001)
}

/// Four bytes as one little-endian word.
#[inline(always)]
fn word(bytes: &[i8; 4]) -> u32 {
    u32::from_le_bytes(bytes.map(|b| b as u8))
}

/// `v` saturated to int8, as a byte (one `SSAT`).
#[inline(always)]
fn saturated_byte(v: i32) -> u8 {
    v.clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as u8
}

impl Backend for ArmDsp {
    type ActBounds = ActBytes;
    const HAS_DEPTHWISE_3X3_INTERIOR: bool = true;

    fn act_bounds(act: ActRange) -> ActBytes {
        let splat = |b: i8| u32::from(b as u8).wrapping_mul(0x0101_0101);
        ActBytes {
            lo: splat(act.min),
            hi: splat(act.max),
        }
    }

    #[inline(always)]
    fn dot1(x: &[i8], w: &[i8], offset: i32) -> i32 {
        if PACKED_OFFSET.contains(&offset) {
            return dot::dot1(x, w, offset);
        }
        crate::kernels::dot::dot1(x, w, offset)
    }

    #[inline(always)]
    fn dot2(x: &[i8], w: [&[i8]; 2], offset: i32) -> [i32; 2] {
        if PACKED_OFFSET.contains(&offset) {
            return dot::dot2_rows(x, w, offset);
        }
        crate::kernels::dot::dot2(x, w, offset)
    }

    #[inline(always)]
    fn dot4(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
        if PACKED_OFFSET.contains(&offset) {
            return dot::dot4(x, w, offset);
        }
        crate::kernels::dot::dot4(x, w, offset)
    }

    #[inline(always)]
    fn dot4_rows(x: &[i8], rows: &[i8], offset: i32) -> [i32; 4] {
        if PACKED_OFFSET.contains(&offset) {
            return dot::dot4_rows(x, rows, offset);
        }
        crate::kernels::dot::dot4_rows(x, rows, offset)
    }

    /// Two passes of the two-row product, whose smaller set-up and register use serve the
    /// callers of short windows better than the single pass of `dot4`.
    #[inline(always)]
    fn dot4_short(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
        if PACKED_OFFSET.contains(&offset) {
            return dot::dot4_short(x, w, offset);
        }
        crate::kernels::dot::dot4(x, w, offset)
    }

    #[inline(always)]
    fn mac_lanes4(acc: &mut [i32; 4], x: &[i8; 4], w: &[i8; 4], offset: i32) {
        if PACKED_OFFSET.contains(&offset) {
            return dot::mac_lanes4(acc, x, w, offset);
        }
        crate::kernels::dot::mac_lanes4(acc, x, w, offset)
    }

    #[inline(always)]
    fn mac_lanes4_row(
        acc: &mut [i32; 4],
        (x, x_step): (&[i8], usize),
        (w, w_step): (&[i8], usize),
        n: usize,
        offset: i32,
    ) {
        if x_step == w_step && PACKED_OFFSET.contains(&offset) {
            let done = match n {
                3 => dot::mac_lanes4_row::<3>(acc, x, w, x_step, offset),
                2 => dot::mac_lanes4_row::<2>(acc, x, w, x_step, offset),
                _ => false,
            };
            if done {
                return;
            }
        }
        crate::kernels::dot::mac_lanes4_taps::<Self>(acc, (x, x_step), (w, w_step), n, offset)
    }

    #[inline(always)]
    fn mac_lanes4_3x3(acc: &mut [i32; 4], x: &[i8], row: usize, w: &[i8], step: usize) -> bool {
        dot::mac_lanes4_3x3(acc, x, row, w, step)
    }

    #[inline(always)]
    fn mul_high_rounded(a: i32, b: i32) -> i32 {
        insn::smmulr(a, b)
    }

    /// The sign from `x2` and the rounding constant as the accumulator: one `SMMLAR`.
    #[inline(always)]
    fn signed_product_unshifted(rq: &SignedProductRequant, x2: i32) -> i32 {
        let negative = x2.wrapping_add(rq.sign_offset) < 0;
        let ra = rq.bias.wrapping_sub(i32::from(negative));
        insn::smmlar(x2, rq.mult, ra)
    }

    /// The four activation clamps on the packed bytes: two `SSUB8`/`SEL` pairs instead of
    /// four pairs of compare-and-select (the activation range lies inside int8, so
    /// saturating each value first changes nothing).
    #[inline(always)]
    fn finish4_bounded(stages: &[BoundedStage; 4], dots: [i32; 4], act: ActBytes) -> [i8; 4] {
        let [s0, s1, s2, s3] = stages;
        let [d0, d1, d2, d3] = dots;
        let v = [
            s0.unclamped::<Self>(d0),
            s1.unclamped::<Self>(d1),
            s2.unclamped::<Self>(d2),
            s3.unclamped::<Self>(d3),
        ];
        let v = u32::from_le_bytes(v.map(saturated_byte));
        act.clamp(v).to_le_bytes().map(|b| b as i8)
    }

    /// Saturated and packed, then clamped all at once (the activation range lies inside
    /// int8).
    #[inline(always)]
    fn clamp<const N: usize>(v: [i32; N], _: ActRange, bounds: ActBytes) -> [i8; N] {
        const { assert!(N <= 4, "four int8 values per packed word") };
        let mut packed = [0u8; 4];
        for (b, x) in packed.iter_mut().zip(v) {
            *b = saturated_byte(x);
        }
        let clamped = bounds.clamp(u32::from_le_bytes(packed)).to_le_bytes();
        let mut out = [0i8; N];
        for (o, b) in out.iter_mut().zip(clamped) {
            *o = b as i8;
        }
        out
    }

    #[inline]
    fn depthwise_3x3_interior(
        (g, in_shape): (&ConvGeometry, Shape),
        (interior, first): (&Interior, usize),
        (input, weights): (&[i8], &[i8]),
        output: &mut [i8],
        offset_term: [i32; 4],
        finish: impl Fn([i32; 4]) -> [i8; 4],
    ) -> bool {
        let rows = depthwise::InteriorRows {
            g,
            in_shape,
            interior,
            first,
        };
        rows.run_3x3(input, weights, output, offset_term, finish)
    }

    #[inline]
    fn cbam_pool_channels(
        p: &CbamParams,
        data: &[i8],
        hw: usize,
        pa: &mut [i8],
        pm: &mut [i8],
    ) -> usize {
        cbam::pool_channels(p, data, hw, pa, pm)
    }

    #[inline]
    fn cbam_scale_channels(
        p: &CbamParams,
        data: &mut [i8],
        att: &[i8],
        maps: &mut [i8],
        table: &mut [i8],
    ) -> bool {
        cbam::channels_and_pool_packed(p, data, att, maps, table)
    }

    #[inline]
    fn cbam_scale_pixels(p: &CbamParams, data: &mut [i8], att: &[i8]) -> bool {
        cbam::pixels_packed(p, data, att)
    }

    #[inline]
    fn cbam_spatial_conv(p: &CbamParams, shape: Shape, maps: &[i8], att: &mut [i8]) -> bool {
        cbam::spatial_conv(p, shape, maps, att)
    }
}
