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

/// The output stage of sixteen consecutive channels as the micro-kernels apply it to every
/// pixel, decoded once per run of pixels: [`scale_lanes`] with its per-lane constants
/// (`-right`, the rounding fix-up mask) worked out ahead, the left shift skipped where no
/// channel has one, and the zero point, the narrowing and the clamp done on the sixteen
/// lanes at once where the zero point is a byte.
pub(super) struct Stage16 {
    /// What the accumulators start from: the channels' bias, or a micro-kernel's own.
    pub(super) start: [int32x4_t; 4],
    mult: [int32x4_t; 4],
    left: [int32x4_t; 4],
    neg_right: [int32x4_t; 4],
    /// All ones in the lanes with a right shift: where the rounding needs its fix-up.
    fixup: [int32x4_t; 4],
    shifts_left: bool,
    /// The general stage, for a zero point that is not a byte.
    lanes: [Lanes; 4],
    byte_zp: bool,
    zp16: int16x8_t,
    min8: int8x16_t,
    max8: int8x16_t,
}

impl Stage16 {
    /// Channels `at..at + 16` of `block` (zero constants past its channels).
    #[inline]
    #[target_feature(enable = "neon")]
    pub(super) fn new(block: &ChannelBlock, at: usize) -> Self {
        let (zp, min, max) = (
            vdupq_n_s32(block.zp),
            vdupq_n_s32(block.min),
            vdupq_n_s32(block.max),
        );
        let zero = vdupq_n_s32(0);
        let mut stage = Self {
            start: [zero; 4],
            mult: [zero; 4],
            left: [zero; 4],
            neg_right: [zero; 4],
            fixup: [zero; 4],
            shifts_left: false,
            lanes: [Lanes {
                mult: zero,
                left: zero,
                right: zero,
                zp,
                min,
                max,
            }; 4],
            byte_zp: i8::try_from(block.zp).is_ok(),
            zp16: vdupq_n_s16(block.zp as i16),
            min8: vdupq_n_s8(block.min as i8),
            max8: vdupq_n_s8(block.max as i8),
        };
        for q in 0..4 {
            let ch = at + 4 * q;
            let (mult, left, right) = (
                load_lanes(&block.mult, ch),
                load_lanes(&block.left, ch),
                load_lanes(&block.right, ch),
            );
            stage.start[q] = load_lanes(&block.bias, ch);
            stage.mult[q] = mult;
            stage.left[q] = left;
            stage.neg_right[q] = vnegq_s32(right);
            stage.fixup[q] = vreinterpretq_s32_u32(vcgtzq_s32(right));
            stage.shifts_left |= vmaxvq_s32(left) > 0;
            stage.lanes[q].mult = mult;
            stage.lanes[q].left = left;
            stage.lanes[q].right = right;
        }
        stage
    }

    /// `clamp(requant(acc) + zp)` of the sixteen channels (`acc` already holds the
    /// start), as bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    pub(super) fn finish(&self, acc: &[int32x4_t; 4]) -> int8x16_t {
        if !self.byte_zp {
            let v = [0, 1, 2, 3].map(|q| requant_lanes(acc[q], &self.lanes[q]));
            let lo = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
            let hi = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
            return vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
        }
        let mut v = [vdupq_n_s32(0); 4];
        for (q, v) in v.iter_mut().enumerate() {
            let x = if self.shifts_left {
                vqshlq_s32(acc[q], self.left[q])
            } else {
                acc[q]
            };
            let high = vqrdmulhq_s32(x, self.mult[q]);
            let negative = vshrq_n_s32::<31>(high);
            let high = vqaddq_s32(high, vandq_s32(negative, self.fixup[q]));
            *v = vrshlq_s32(high, self.neg_right[q]);
        }
        // Saturated to i16, plus the byte zero point (saturating, which cannot differ from
        // the 32-bit saturating add here: a value past the i16 range stays past the i8
        // range either way), saturated to i8 and clamped: what `requant_lanes` gives.
        let lo = vqaddq_s16(vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1])), self.zp16);
        let hi = vqaddq_s16(vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3])), self.zp16);
        let bytes = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
        vminq_s8(vmaxq_s8(bytes, self.min8), self.max8)
    }
}

/// The first `len` of `bytes` into `dst` (one 16-byte store where both are whole).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn store16(dst: &mut [i8], bytes: int8x16_t, len: usize) {
    match dst.first_chunk_mut::<16>() {
        // SAFETY: writes exactly the 16 bytes of the chunk.
        Some(d) if len >= 16 => unsafe { vst1q_s8(d.as_mut_ptr(), bytes) },
        _ => {
            let mut b = [0i8; 16];
            // SAFETY: writes exactly the 16 bytes of the local array.
            unsafe { vst1q_s8(b.as_mut_ptr(), bytes) };
            for (d, &v) in dst.iter_mut().zip(b.iter().take(len)) {
                *d = v;
            }
        }
    }
}
