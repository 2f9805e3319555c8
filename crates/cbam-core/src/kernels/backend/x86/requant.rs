//! The requantization on vector lanes, bit-exact with [`crate::kernels::requant::OutputRequant`]
//! and [`crate::math::multiply_by_quantized_multiplier`].

use super::{load_lanes, load_lanes8, pack8};
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

/// Output zero points for which [`Stage16::finish`] may add the zero point with `i16`
/// saturation: a value saturated at `+-32767` plus such a zero point is still outside the
/// int8 range on the same side, so the final clamp gives what the exact sum would.
const NARROW_ZP: core::ops::RangeInclusive<i32> = -32_640..=32_640;

/// The output stage of sixteen consecutive channels, decoded once per run of pixels.
pub(super) struct Stage16 {
    pub(super) bias: [__m256i; 2],
    mult: [__m256i; 2],
    left: [__m256i; 2],
    right: [__m256i; 2],
    mask: [__m256i; 2],
    half: [__m256i; 2],
    /// Whether any channel has a left shift (a multiplier above one: rare).
    shifts_left: bool,
    narrow: bool,
    zp16: __m256i,
    min8: __m128i,
    max8: __m128i,
    /// The general stage, for a zero point that is not narrow.
    lanes: [Lanes; 2],
    /// Whether [`Stage16::finish`] may take the short form (see [`Stage16::new`]).
    short: bool,
    /// The multipliers of the odd channels, in the low half of each 64-bit lane.
    mult_odd: [__m256i; 2],
    /// The short form's rounding constants of the even and the odd channels as 64-bit
    /// lanes (see [`scale_short`]).
    round: [[__m256i; 2]; 2],
}

impl Stage16 {
    /// Channels `at..at + 16` of `block`, whose accumulators (before the bias) are sums of
    /// `taps` products of inputs and weights.
    ///
    /// The short form of the output stage holds where no channel shifts left, every
    /// multiplier is non-negative, every right shift is at least 1 and the accumulators
    /// plus bias stay inside `+-2^30` (so that nothing saturates and the rounding needs no
    /// overflow guard): then the doubling high multiply and the rounding divide fold into
    /// one 64-bit add and shift, `h + 2^(r-1) = (x * mult + 2^30 + 2^(r+30)) >> 31`,
    /// followed by `(h + 2^(r-1) - [x < 0]) >> r`, which is the round half away from
    /// zero of `h / 2^r`. (With a non-negative multiplier `h < 0` only where `x < 0`, and
    /// where `x < 0` but `h = 0` both give 0.)
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn new(block: &ChannelBlock, at: usize, taps: usize) -> Self {
        let (zp, min, max) = (
            _mm256_set1_epi32(block.zp),
            _mm256_set1_epi32(block.min),
            _mm256_set1_epi32(block.max),
        );
        let one = _mm256_set1_epi32(1);
        let mult = [
            load_lanes8(&block.mult, at),
            load_lanes8(&block.mult, at + 8),
        ];
        let left = [
            load_lanes8(&block.left, at),
            load_lanes8(&block.left, at + 8),
        ];
        let right = [
            load_lanes8(&block.right, at),
            load_lanes8(&block.right, at + 8),
        ];
        let mask = [
            _mm256_sub_epi32(_mm256_sllv_epi32(one, right[0]), one),
            _mm256_sub_epi32(_mm256_sllv_epi32(one, right[1]), one),
        ];
        let lanes = [
            Lanes {
                mult: mult[0],
                left: left[0],
                right: right[0],
                zp,
                min,
                max,
            },
            Lanes {
                mult: mult[1],
                left: left[1],
                right: right[1],
                zp,
                min,
                max,
            },
        ];
        let bias = [
            load_lanes8(&block.bias, at),
            load_lanes8(&block.bias, at + 8),
        ];
        Self {
            bias,
            mult,
            left,
            right,
            mask,
            half: [
                _mm256_srai_epi32::<1>(mask[0]),
                _mm256_srai_epi32::<1>(mask[1]),
            ],
            shifts_left: {
                let any = _mm256_or_si256(left[0], left[1]);
                _mm256_testz_si256(any, any) == 0
            },
            narrow: NARROW_ZP.contains(&block.zp),
            // Only read for a narrow zero point, which then fits.
            zp16: _mm256_set1_epi16(block.zp as i16),
            min8: _mm_set1_epi8(block.min as i8),
            max8: _mm_set1_epi8(block.max as i8),
            lanes,
            short: short_form(block, (at, taps), [&left, &mult, &right, &bias]),
            mult_odd: [
                _mm256_srli_epi64::<32>(mult[0]),
                _mm256_srli_epi64::<32>(mult[1]),
            ],
            round: [round64(right[0]), round64(right[1])],
        }
    }

    /// `clamp(requant(bias + acc) + zp)` of the sixteen channels, as bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn finish(&self, acc: &[__m256i; 2]) -> __m128i {
        self.finish_sums(&[
            _mm256_add_epi32(acc[0], self.bias[0]),
            _mm256_add_epi32(acc[1], self.bias[1]),
        ])
    }

    /// [`Stage16::finish`] of accumulators that started from the bias.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn finish_sums(&self, sums: &[__m256i; 2]) -> __m128i {
        if !self.narrow {
            return pack16(
                requant_lanes(sums[0], &self.lanes[0]),
                requant_lanes(sums[1], &self.lanes[1]),
            );
        }
        self.narrow_bytes([self.scale(0, sums[0]), self.scale(1, sums[1])])
    }

    /// Whether [`Stage16::finish_short`] applies: the short form and a narrow zero point
    /// (the common case).
    #[inline]
    pub(super) fn short_narrow(&self) -> bool {
        self.short && self.narrow
    }

    /// [`Stage16::finish_sums`] where [`Stage16::short_narrow`] holds: one form only, small
    /// enough for the compiler to inline into a micro-kernel, where the general one stays
    /// a call.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn finish_short(&self, sums: &[__m256i; 2]) -> __m128i {
        self.narrow_bytes([self.scale_short(0, sums[0]), self.scale_short(1, sums[1])])
    }

    /// [`Stage16::finish_short`] of the first eight channels alone: the low eight bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn finish8_short(&self, sum: __m256i) -> __m128i {
        let scaled = self.scale_short(0, sum);
        self.narrow_bytes([scaled, scaled])
    }

    /// The short form of [`Stage16::scale`].
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scale_short(&self, h: usize, sum: __m256i) -> __m256i {
        let h = h.min(1);
        scale_short(
            sum,
            self.mult[h],
            self.mult_odd[h],
            self.round[h],
            self.right[h],
        )
    }

    /// [`Stage16::finish_sums`] of the first eight channels alone: the low eight bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn finish8_sums(&self, sum: __m256i) -> __m128i {
        if !self.narrow {
            let v = requant_lanes(sum, &self.lanes[0]);
            return pack16(v, v);
        }
        let scaled = self.scale(0, sum);
        self.narrow_bytes([scaled, scaled])
    }

    /// The requantized `sum` (bias added) of half `h` of the channels, before the zero
    /// point.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scale(&self, h: usize, sum: __m256i) -> __m256i {
        let h = h.min(1);
        if self.short {
            return self.scale_short(h, sum);
        }
        let x = if self.shifts_left {
            saturating_shl(sum, self.left[h])
        } else {
            sum
        };
        let high = doubling_high(x, self.mult[h]);
        rounding_shr(high, self.right[h], self.mask[h], self.half[h])
    }

    /// The scaled values of the sixteen channels plus the narrow zero point, as bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn narrow_bytes(&self, scaled: [__m256i; 2]) -> __m128i {
        // Saturated to i16 and back in channel order, plus the zero point (see NARROW_ZP),
        // saturated to i8 and clamped to the activation range.
        let words = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(scaled[0], scaled[1]));
        let words = _mm256_adds_epi16(words, self.zp16);
        let bytes = _mm_packs_epi16(
            _mm256_castsi256_si128(words),
            _mm256_extracti128_si256::<1>(words),
        );
        _mm_min_epi8(_mm_max_epi8(bytes, self.min8), self.max8)
    }
}

/// Whether channels `at..at + 16` of `block` (those it has) take [`Stage16`]'s short form
/// with accumulators of `taps` products; `left`, `mult`, `right` and `bias` are those
/// channels' lanes. Lane by lane, since a stage is made for every run of pixels.
#[inline]
#[target_feature(enable = "avx2")]
fn short_form(
    block: &ChannelBlock,
    (at, taps): (usize, usize),
    [left, mult, right, bias]: [&[__m256i; 2]; 4],
) -> bool {
    if block.n <= at {
        return true;
    }
    let products = block.product_bound(taps);
    let Some(room) = (1u64 << 30)
        .checked_sub(products)
        .and_then(|r| i32::try_from(r).ok())
    else {
        return false;
    };
    let (zero, none) = (_mm256_setzero_si256(), _mm256_set1_epi32(-1));
    let room = _mm256_set1_epi32(room);
    let channels = _mm256_set1_epi32(i32::try_from(block.n.saturating_sub(at)).unwrap_or(0));
    let mut all = none;
    for h in 0..2 {
        let index = _mm256_add_epi32(
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            _mm256_set1_epi32(8 * h as i32),
        );
        let absent = _mm256_xor_si256(_mm256_cmpgt_epi32(channels, index), none);
        // |bias| as the instruction gives it: negative only for i32::MIN, which fails.
        let abs = _mm256_abs_epi32(bias[h]);
        let ok = [
            _mm256_cmpeq_epi32(left[h], zero),
            _mm256_cmpgt_epi32(mult[h], none),
            _mm256_cmpgt_epi32(right[h], zero),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(32), right[h]),
            _mm256_cmpgt_epi32(abs, none),
            _mm256_cmpgt_epi32(room, abs),
        ]
        .into_iter()
        .fold(none, |a, b| _mm256_and_si256(a, b));
        all = _mm256_and_si256(all, _mm256_or_si256(ok, absent));
    }
    _mm256_movemask_epi8(all) == -1
}

/// [`scale_lanes`] without a left shift, for lanes where `|x| < 2^30`, `mult >= 0` and
/// `1 <= right <= 31` (see [`Stage16::new`] for why it is exact): `mult_odd` holds the odd
/// lanes' multipliers in the low halves of the 64-bit lanes, `round` the even and the odd
/// lanes' [`rounding_constant`]s as 64-bit lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn scale_short(
    x: __m256i,
    mult: __m256i,
    mult_odd: __m256i,
    round: [__m256i; 2],
    right: __m256i,
) -> __m256i {
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, mult), round[0]);
    let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), mult_odd);
    let odd = _mm256_add_epi64(odd, round[1]);
    // Bits 31..62 of each sum: `h + 2^(right - 1)`, which fits `i32`.
    let rounded = _mm256_blend_epi32::<0b1010_1010>(
        _mm256_srli_epi64::<31>(even),
        _mm256_slli_epi64::<1>(odd),
    );
    let rounded = _mm256_add_epi32(rounded, _mm256_srai_epi32::<31>(x));
    _mm256_srav_epi32(rounded, right)
}

/// [`doubling_high`] for lanes where `|x| < 2^30` (nothing saturates): [`scale_short`]
/// without a right shift.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn doubling_high_short(x: __m256i, mult: __m256i, mult_odd: __m256i) -> __m256i {
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, mult), nudge);
    let odd = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), mult_odd),
        nudge,
    );
    _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<31>(even), _mm256_slli_epi64::<1>(odd))
}

/// [`scale_short`]'s rounding constant of a right shift: `2^30 + 2^(right + 30)` (`2^30`
/// for none).
pub(super) const fn rounding_constant(right: i32) -> i64 {
    if right <= 0 {
        return 1 << 30;
    }
    let right = if right > 31 { 31 } else { right };
    (1i64 << 30) + (1i64 << (right + 30))
}

/// The short form's rounding constants [`rounding_constant`] of the even and the odd
/// lanes of `right` (eight channels' right shifts) as 64-bit lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn round64(right: __m256i) -> [__m256i; 2] {
    let r = _mm256_min_epi32(
        _mm256_max_epi32(right, _mm256_setzero_si256()),
        _mm256_set1_epi32(31),
    );
    let base = _mm256_set1_epi64x(1 << 30);
    [
        _mm256_and_si256(r, _mm256_set1_epi64x(0xFFFF_FFFF)),
        _mm256_srli_epi64::<32>(r),
    ]
    .map(|r| {
        let power = _mm256_sllv_epi64(
            _mm256_set1_epi64x(1),
            _mm256_add_epi64(r, _mm256_set1_epi64x(30)),
        );
        let shifted = _mm256_cmpgt_epi64(r, _mm256_setzero_si256());
        _mm256_add_epi64(base, _mm256_and_si256(power, shifted))
    })
}

/// The sixteen int8-range lanes of `a` then `b` as bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn pack16(a: __m256i, b: __m256i) -> __m128i {
    // `packs` works within 128-bit halves: [a0-3, b0-3 | a4-7, b4-7], put back in order.
    let words = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(a, b));
    _mm_packs_epi16(
        _mm256_castsi256_si128(words),
        _mm256_extracti128_si256::<1>(words),
    )
}

#[cfg(test)]
mod tests {
    use super::{rounding_constant, Stage16};
    use crate::kernels::backend::simd::isa::{ChannelBlock, BLOCK};
    use crate::kernels::test_support::Rng;
    use core::arch::x86_64::*;

    /// The channel-by-channel definition of the short form's condition.
    fn short_reference(block: &ChannelBlock, at: usize, taps: usize) -> bool {
        let products = block.product_bound(taps);
        (at..block.n.min(at + 16)).all(|ch| {
            let acc = products.saturating_add(u64::from(block.bias[ch].unsigned_abs()));
            block.left[ch] == 0
                && block.mult[ch] >= 0
                && (1..=31).contains(&block.right[ch])
                && acc < 1 << 30
        })
    }

    fn lanes64(v: __m256i) -> [i64; 4] {
        let mut out = [0i64; 4];
        // SAFETY: writes exactly the 32 bytes of the array.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
        out
    }

    /// [`Stage16::new`] decides the short form and makes its rounding constants lane by
    /// lane: the same answers as the definitions, channel by channel, at the edges of
    /// every condition (biases around `2^30` less the products, `i32::MIN`, shifts from
    /// -31 to 30, negative multipliers, blocks ending inside and before the stage).
    #[test]
    fn stage_constants_match_their_definitions() {
        super::super::Avx2::detect().expect("this machine lacks AVX2");
        let mut rng = Rng::new(0x57A6);
        for _ in 0..3000 {
            let any = rng.range(1, BLOCK + 1);
            let n = rng.pick(&[1, 5, 16, 17, 31, 33, BLOCK, any]);
            let in_zp = rng.pick(&[-128, 0, 127, 5000, -32_639]);
            let taps = rng.pick(&[1, 9, 27, 288, 4608, 70_000]);
            let mut block = ChannelBlock {
                bias: [0; BLOCK],
                mult: [0; BLOCK],
                left: [0; BLOCK],
                right: [0; BLOCK],
                zp: 0,
                min: -128,
                max: 127,
                in_zp,
                n,
            };
            let edge = (1i64 << 30) - block.product_bound(taps).min(1 << 31) as i64;
            // Every channel inside the short form but one, whose bias is at an edge.
            let all_short = rng.range(0, 2) == 0;
            let odd_one = rng.range(0, n);
            for ch in 0..n {
                let shift = if all_short {
                    rng.pick(&[-1, -31, -7])
                } else {
                    {
                        let any = rng.int(-31, 30);
                        rng.pick(&[-31, -30, -1, 0, 1, 30, any])
                    }
                };
                block.left[ch] = shift.max(0);
                block.right[ch] = (-shift).max(0);
                block.mult[ch] = if all_short {
                    {
                        let any = rng.mult();
                        rng.pick(&[0, 1, i32::MAX, any])
                    }
                } else {
                    {
                        let any = rng.mult();
                        rng.pick(&[0, 1, -1, i32::MAX, i32::MIN, any])
                    }
                };
                let small = rng.int(-99, 99).into();
                let bias = rng.pick(&[edge - 1, edge, edge - 2, 0, small]);
                let sign = rng.pick(&[1, -1]);
                let near = (sign * bias).clamp(i32::MIN.into(), i32::MAX.into()) as i32;
                block.bias[ch] = if !all_short || ch == odd_one {
                    rng.pick(&[near, near, near, i32::MIN, i32::MAX])
                } else {
                    rng.int(-99, 99)
                };
            }
            for at in (0..BLOCK).step_by(16) {
                // SAFETY: the machine has AVX2 (checked above).
                let stage = unsafe { Stage16::new(&block, at, taps) };
                assert_eq!(
                    stage.short,
                    short_reference(&block, at, taps),
                    "n={n} at={at} taps={taps} in_zp={in_zp}"
                );
                for (h, [even, odd]) in stage.round.iter().enumerate() {
                    let want = |first: usize| {
                        [0, 2, 4, 6].map(|i| rounding_constant(block.right[at + 8 * h + first + i]))
                    };
                    assert_eq!(lanes64(*even), want(0), "at={at}");
                    assert_eq!(lanes64(*odd), want(1), "at={at}");
                }
            }
        }
    }
}
