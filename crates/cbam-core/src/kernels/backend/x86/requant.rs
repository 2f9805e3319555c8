//! The requantization on vector lanes, bit-exact with [`crate::kernels::requant::OutputRequant`]
//! and [`crate::math::multiply_by_quantized_multiplier`].

use super::{load_lanes, pack8};
use crate::kernels::backend::simd::isa::{ChannelBlock, TensorRequant};
use core::arch::x86_64::*;

/// Per-lane requantization constants (see [`requant_lanes`]).
#[derive(Clone, Copy)]
pub(super) struct Lanes {
    pub(super) mult: __m256i,
    pub(super) left: __m256i,
    pub(super) right: __m256i,
    pub(super) zp: __m256i,
    pub(super) min: __m256i,
    pub(super) max: __m256i,
}

impl Lanes {
    /// One tensor's constants in every lane, clamped to the whole int8 range.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn tensor(rq: &TensorRequant) -> Self {
        Self {
            mult: _mm256_set1_epi32(rq.mult),
            left: _mm256_set1_epi32(rq.left),
            right: _mm256_set1_epi32(rq.right),
            zp: _mm256_set1_epi32(rq.zp),
            min: _mm256_set1_epi32(i32::from(i8::MIN)),
            max: _mm256_set1_epi32(i32::from(i8::MAX)),
        }
    }
}

/// `clamp(requant(acc) + zp)` of channels `ch..ch + 4`, as `OutputRequant::apply`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn requant4(acc: __m128i, block: &ChannelBlock, ch: usize) -> [i8; 4] {
    let lanes = Lanes {
        mult: _mm256_zextsi128_si256(load_lanes(&block.mult, ch)),
        left: _mm256_zextsi128_si256(load_lanes(&block.left, ch)),
        right: _mm256_zextsi128_si256(load_lanes(&block.right, ch)),
        zp: _mm256_set1_epi32(block.zp),
        min: _mm256_set1_epi32(block.min),
        max: _mm256_set1_epi32(block.max),
    };
    let v = requant_lanes(_mm256_zextsi128_si256(acc), &lanes);
    let [b0, b1, b2, b3, ..] = pack8(v);
    [b0, b1, b2, b3]
}

/// `clamp(requant(acc) + zp, min, max)` lane by lane, as `OutputRequant::apply`: the
/// zero point is added after clamping to `+-2^24`, which cannot change the int8 result for
/// `|zp| <= 2^16` but keeps the add from overflowing.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn requant_lanes(acc: __m256i, k: &Lanes) -> __m256i {
    let scaled = scale_lanes(acc, k.mult, k.left, k.right);
    let bound = _mm256_set1_epi32(1 << 24);
    let scaled = _mm256_min_epi32(
        _mm256_max_epi32(scaled, _mm256_sub_epi32(_mm256_setzero_si256(), bound)),
        bound,
    );
    let v = _mm256_add_epi32(scaled, k.zp);
    _mm256_min_epi32(_mm256_max_epi32(v, k.min), k.max)
}

/// `x * 2^left` lane by lane, saturating (`left` in `0..=30`): the shift is exact iff
/// shifting back gives `x`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn saturating_shl(x: __m256i, left: __m256i) -> __m256i {
    let shifted = _mm256_sllv_epi32(x, left);
    let exact = _mm256_cmpeq_epi32(_mm256_srav_epi32(shifted, left), x);
    let saturated = _mm256_xor_si256(_mm256_set1_epi32(i32::MAX), _mm256_srai_epi32::<31>(x));
    _mm256_blendv_epi8(saturated, shifted, exact)
}

/// `multiply_by_quantized_multiplier` lane by lane: the saturating `acc * 2^left`, the
/// [`doubling_high`] multiply and the [`rounding_shr`] by `2^right`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn scale_lanes(acc: __m256i, mult: __m256i, left: __m256i, right: __m256i) -> __m256i {
    let one = _mm256_set1_epi32(1);
    let high = doubling_high(saturating_shl(acc, left), mult);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    rounding_shr(high, right, mask, _mm256_srai_epi32::<1>(mask))
}

/// The saturating rounding doubling high multiply lane by lane, as `(x * mult + 2^30) >> 31`
/// on 64-bit products (even lanes with `vpmuldq`, odd lanes moved down first), where only
/// `MIN * MIN` ends at `i32::MIN` and becomes `i32::MAX`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn doubling_high(x: __m256i, mult: __m256i) -> __m256i {
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, mult), nudge);
    let odd = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(mult)),
        nudge,
    );
    let high = _mm256_blend_epi32::<0b1010_1010>(
        _mm256_srli_epi64::<31>(even),
        _mm256_slli_epi64::<1>(odd),
    );
    _mm256_xor_si256(high, _mm256_cmpeq_epi32(high, _mm256_set1_epi32(i32::MIN)))
}

/// The rounding divide of `high` by `2^right`, half away from zero, lane by lane, with
/// `mask = 2^right - 1` and `half = mask >> 1`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn rounding_shr(high: __m256i, right: __m256i, mask: __m256i, half: __m256i) -> __m256i {
    let threshold = _mm256_sub_epi32(half, _mm256_srai_epi32::<31>(high));
    let round_up = _mm256_cmpgt_epi32(_mm256_and_si256(high, mask), threshold);
    _mm256_sub_epi32(_mm256_srav_epi32(high, right), round_up)
}

/// `a.saturating_add(b)` lane by lane: the sum overflowed iff it differs in sign from both.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn saturating_add(a: __m256i, b: __m256i) -> __m256i {
    let sum = _mm256_add_epi32(a, b);
    // Only the sign bit says overflow; spread it over the lane, as `vpblendvb` selects
    // byte by byte.
    let overflow = _mm256_srai_epi32::<31>(_mm256_and_si256(
        _mm256_xor_si256(a, sum),
        _mm256_xor_si256(b, sum),
    ));
    let saturated = _mm256_xor_si256(_mm256_set1_epi32(i32::MAX), _mm256_srai_epi32::<31>(a));
    _mm256_blendv_epi8(sum, saturated, overflow)
}
