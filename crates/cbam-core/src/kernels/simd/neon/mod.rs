//! aarch64: NEON (part of the architecture's baseline, so no detection). Written for the
//! Pi 4's Cortex-A72, which has no dot-product instructions: the products are `smlal` of
//! `x + offset` (`i16`) by sign-extended weights into `i32` lanes, wrapping like the
//! portable `wrapping_add`.
//!
//! The requantization maps onto NEON's own fixed-point instructions
//! (see [`requant::requant_lanes`]).

#![allow(unsafe_code)]

mod conv;
mod elementwise;
mod requant;
use super::backend::{AddLanes, Backend, ChannelBlock, SmallWeights, TensorRequant};
use core::arch::aarch64::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon;

impl Backend for Neon {
    #[inline]
    fn widen(self, dst: &mut [i16], src: &[i8], offset: i16) {
        // SAFETY: NEON is enabled for every aarch64 target this module is compiled for
        // (`cfg(target_feature = "neon")` on its declaration).
        unsafe { conv::widen(dst, src, offset) }
    }

    #[inline]
    fn pixel(
        self,
        window: &[i16],
        weights: &[i8],
        per_out: usize,
        block: &ChannelBlock,
        out: &mut [i8],
    ) {
        // SAFETY: as in `widen`.
        unsafe { conv::pixel(window, weights, per_out, block, out) }
    }

    #[inline]
    fn pixel2(
        self,
        windows: [&[i16]; 2],
        weights: &[i8],
        per_out: usize,
        block: &ChannelBlock,
        outs: [&mut [i8]; 2],
    ) {
        // SAFETY: as in `widen`.
        unsafe { conv::pixel2(windows, weights, per_out, block, outs) }
    }

    #[inline]
    fn pair_row(
        self,
        plane: &[i16],
        wp: usize,
        taps: &[i32],
        kw: usize,
        block: &ChannelBlock,
        out: &mut [i8],
    ) {
        // SAFETY: as in `widen`.
        unsafe { conv::pair_row(plane, wp, taps, kw, block, out) }
    }

    #[inline]
    fn pixel_small(
        self,
        window: &[i16],
        weights: &SmallWeights,
        block: &ChannelBlock,
        out: &mut [i8],
    ) {
        // SAFETY: as in `widen`.
        unsafe { conv::pixel_small(window, weights, block, out) }
    }

    #[cfg(test)]
    fn requant(self, acc: &[i32], block: &ChannelBlock, out: &mut [i8]) {
        // SAFETY: as in `widen`.
        unsafe { conv::requant_all(acc, block, out) }
    }

    #[inline]
    fn scale_by_lanes(self, v: &mut [i8], att: &[i8], zp: i8, rq: &TensorRequant) -> (i32, i8) {
        // SAFETY: as in `widen`.
        unsafe { elementwise::scale_by_lanes(v, att, zp, rq) }
    }

    #[inline]
    fn scale_by_one(self, v: &mut [i8], att: i8, zp: i8, rq: &TensorRequant) {
        // SAFETY: as in `widen`.
        unsafe { elementwise::scale_by_one(v, att, zp, rq) }
    }

    #[inline]
    fn channel_sums(self, data: &[i8], sums: &mut [i32], maxs: &mut [i8]) {
        // SAFETY: as in `widen`.
        unsafe { elementwise::channel_sums(data, sums, maxs) }
    }

    #[inline]
    fn add(self, a: &[i8], b: &[i8], out: &mut [i8], k: &AddLanes) {
        // SAFETY: as in `widen`.
        unsafe { elementwise::add(a, b, out, k) }
    }
}

#[inline]
#[target_feature(enable = "neon")]
fn load_lanes(words: &[i32], at: usize) -> int32x4_t {
    let lanes = words
        .get(at..)
        .and_then(<[i32]>::first_chunk::<4>)
        .copied()
        .unwrap_or_default();
    // SAFETY: reads exactly the 16 bytes of the local array.
    unsafe { vld1q_s32(lanes.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn load_window(x: &[i16; 16]) -> (int16x8_t, int16x8_t) {
    // SAFETY: reads exactly the 32 bytes of `x`.
    unsafe { (vld1q_s16(x.as_ptr()), vld1q_s16(x.as_ptr().add(8))) }
}

/// The lanes of `lo` then `hi` (int8-range values) as bytes.
#[inline]
#[target_feature(enable = "neon")]
fn pack8(lo: int32x4_t, hi: int32x4_t) -> [i8; 8] {
    let narrow = vqmovn_s16(vcombine_s16(vqmovn_s32(lo), vqmovn_s32(hi)));
    let mut bytes = [0i8; 8];
    // SAFETY: writes exactly the 8 bytes of the local array.
    unsafe { vst1_s8(bytes.as_mut_ptr(), narrow) };
    bytes
}

/// Eight int8 values sign-extended to two `i32x4`.
#[inline]
#[target_feature(enable = "neon")]
fn load8(bytes: &[i8; 8]) -> (int32x4_t, int32x4_t) {
    // SAFETY: reads exactly the 8 bytes of the array.
    let wide = vmovl_s8(unsafe { vld1_s8(bytes.as_ptr()) });
    (vmovl_s16(vget_low_s16(wide)), vmovl_high_s16(wide))
}
