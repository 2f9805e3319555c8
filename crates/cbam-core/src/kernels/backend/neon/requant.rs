//! The requantization on vector lanes, bit-exact with [`crate::kernels::requant::OutputRequant`]
//! and [`crate::math::multiply_by_quantized_multiplier`].

use super::{load_lanes, pack8};
use crate::kernels::backend::simd::isa::{ChannelBlock, TensorRequant};
use core::arch::aarch64::*;

/// Per-lane requantization constants (see [`requant_lanes`]).
#[derive(Clone, Copy)]
pub(super) struct Lanes {
    pub(super) mult: int32x4_t,
    pub(super) left: int32x4_t,
    pub(super) right: int32x4_t,
    pub(super) zp: int32x4_t,
    pub(super) min: int32x4_t,
    pub(super) max: int32x4_t,
}

impl Lanes {
    /// One tensor's constants in every lane, clamped to the whole int8 range.
    #[inline]
    #[target_feature(enable = "neon")]
    pub(super) fn tensor(rq: &TensorRequant) -> Self {
        Self {
            mult: vdupq_n_s32(rq.mult),
            left: vdupq_n_s32(rq.left),
            right: vdupq_n_s32(rq.right),
            zp: vdupq_n_s32(rq.zp),
            min: vdupq_n_s32(i32::from(i8::MIN)),
            max: vdupq_n_s32(i32::from(i8::MAX)),
        }
    }
}

/// `clamp(requant(acc) + zp)` of channels `ch..ch + 4`, as `OutputRequant::apply`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn requant4(acc: int32x4_t, block: &ChannelBlock, ch: usize) -> [i8; 4] {
    let lanes = Lanes {
        mult: load_lanes(&block.mult, ch),
        left: load_lanes(&block.left, ch),
        right: load_lanes(&block.right, ch),
        zp: vdupq_n_s32(block.zp),
        min: vdupq_n_s32(block.min),
        max: vdupq_n_s32(block.max),
    };
    let [b0, b1, b2, b3, ..] = pack8(requant_lanes(acc, &lanes), vdupq_n_s32(0));
    [b0, b1, b2, b3]
}

/// `clamp(requant(acc) + zp, min, max)` lane by lane, as `OutputRequant::apply`: `sqadd`
/// is the saturating zero-point add, then the clamp.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn requant_lanes(acc: int32x4_t, k: &Lanes) -> int32x4_t {
    let v = vqaddq_s32(scale_lanes(acc, k.mult, k.left, k.right), k.zp);
    vminq_s32(vmaxq_s32(v, k.min), k.max)
}

/// `multiply_by_quantized_multiplier` lane by lane:
/// - `sqshl` is the saturating `acc * 2^left`;
/// - `sqrdmulh` is `(2 * x * mult + 2^31) >> 32` saturating `MIN * MIN` to `MAX`, which
///   is exactly gemmlowp's nudge-and-truncate (both are `floor((x * mult + 2^30) / 2^31)`);
/// - `srshl` by `-right` rounds half up, gemmlowp's divide rounds half away from zero:
///   subtracting 1 (saturating) from negative values first turns one into the other, for
///   `right > 0` only.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn scale_lanes(
    acc: int32x4_t,
    mult: int32x4_t,
    left: int32x4_t,
    right: int32x4_t,
) -> int32x4_t {
    let x = vqshlq_s32(acc, left);
    let high = vqrdmulhq_s32(x, mult);
    let negative = vshrq_n_s32::<31>(high);
    let shifting = vreinterpretq_s32_u32(vcgtzq_s32(right));
    let high = vqaddq_s32(high, vandq_s32(negative, shifting));
    vrshlq_s32(high, vnegq_s32(right))
}
