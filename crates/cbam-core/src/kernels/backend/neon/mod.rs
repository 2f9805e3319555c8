//! aarch64: NEON (part of the architecture's baseline, so no detection). Written for the
//! Pi 4's Cortex-A72, which has no dot-product instructions: the products are `smlal` of
//! `x + offset` (`i16`) by sign-extended weights into `i32` lanes, wrapping like the
//! portable `wrapping_add`. Where the CPU has `sdot` (the Pi 5's Cortex-A76, detected at
//! run time), the convolutions take it instead ([`dot`]).
//!
//! The requantization maps onto NEON's own fixed-point instructions
//! (see [`requant::requant_lanes`]).

#![allow(unsafe_code)]

mod conv;
mod depthwise;
mod dot;
mod elementwise;
mod gemm;
mod requant;
use super::simd::isa::{AddLanes, ChannelBlock, Isa, SmallWeights, TensorRequant};
use core::arch::aarch64::*;
use dot::Sdot;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon;

super::simd::isa::forward_isa!(
    Neon,
    detect: Some(Neon),
    dot: (Sdot, Sdot::detect()),
    "NEON is enabled for every aarch64 target this module is compiled for"
);

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

/// NEON with its dot-product extension left out, so that the Pi 4's kernels are tested on
/// a CPU (or QEMU's default one) that has `sdot` too.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeonPairs;

#[cfg(test)]
super::simd::isa::forward_isa!(
    NeonPairs,
    detect: Some(NeonPairs),
    dot: (super::simd::isa::NoDot, None),
    "NEON is enabled for every aarch64 target this module is compiled for"
);

#[cfg(test)]
mod tests {
    use super::super::simd::Simd;
    use super::{Neon, Sdot};

    crate::kernels::backend::suite::backend_suite!(Simd<Neon>, true);
    crate::kernels::backend::simd::tests::isa_tests!(Neon);

    /// The suite above tests the `sdot` kernels only where the CPU has them.
    #[test]
    fn sdot_packs_like_portable() {
        match Sdot::detect() {
            Some(sdot) => crate::kernels::backend::simd::tests::dot_pack_matches_portable(sdot),
            None => std::eprintln!("sdot absent: its kernels are not tested here"),
        }
    }
}

#[cfg(test)]
mod pair_tests {
    use super::super::simd::Simd;
    use super::NeonPairs;

    crate::kernels::backend::suite::backend_suite!(Simd<NeonPairs>, true);
    crate::kernels::backend::simd::tests::isa_tests!(NeonPairs);
}
