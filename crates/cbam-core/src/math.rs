//! TFLite's fixed-point requantization primitives (gemmlowp semantics).
//!
//! Every kernel funnels its int32 accumulators through [`Requant::apply`], so these few
//! functions decide whether the core is bit-exact with TFLite Micro and CMSIS-NN.

/// `round(a * b / 2^31)` with ties towards +infinity, saturating the single overflow case
/// `i32::MIN * i32::MIN`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    // gemmlowp nudges and then truncates towards zero; the quotient always fits i32 once the
    // MIN*MIN case is excluded.
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded half away from zero; exponents above 31 are treated as 31.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    let exponent = exponent.min(31);
    let mask = ((1u32 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier`: `x * mult * 2^(shift - 31)` with TFLite's
/// rounding. `shift` is clamped to `-31..=30`; where TFLite's left shift would overflow
/// (undefined in C) this saturates.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, mult: i32, shift: i32) -> i32 {
    let shift = shift.clamp(-31, 30);
    let left = shift.max(0) as u32;
    let right = (-shift).max(0) as u32;
    let shifted = x.saturating_mul(1i32 << left);
    rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, mult), right)
}

/// `num / den` rounded half away from zero, as TFLite's average pooling does.
/// Returns 0 for a non-positive denominator instead of panicking.
#[inline]
pub fn div_round_half_away(num: i32, den: i32) -> i32 {
    if den <= 0 {
        return 0;
    }
    let half = den / 2;
    let biased = if num >= 0 {
        num.wrapping_add(half)
    } else {
        num.wrapping_sub(half)
    };
    biased / den
}

/// Saturates an int32 into the int8 range.
#[inline]
pub fn saturate_i8(x: i32) -> i8 {
    x.clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
}

/// The mean of `count` int8 levels of zero point `zp` from the wrapping sum of the levels
/// themselves, in the same quantization: `round_half_away((sum - zp * count) / count) + zp`
/// (the average pools and the channel pools of the CBAM and CHANNEL_POOL ops).
#[inline]
pub fn mean_level(sum: i32, count: i32, zp: i32) -> i8 {
    let centred = sum.wrapping_sub(zp.wrapping_mul(count));
    saturate_i8(div_round_half_away(centred, count).saturating_add(zp))
}

/// A real multiplier `M = mult * 2^(shift - 31)` in TFLite's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Requant {
    pub mult: i32,
    pub shift: i32,
}

impl Requant {
    pub const fn new(mult: i32, shift: i32) -> Self {
        Self { mult, shift }
    }

    /// Applies the multiplier to an accumulator.
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        multiply_by_quantized_multiplier(x, self.mult, self.shift)
    }

    /// Whether the encoding is one the blob format allows (`mult >= 0`, shift in range).
    pub fn is_valid(self) -> bool {
        self.mult >= 0 && (-31..=30).contains(&self.shift)
    }
}

/// The fused activation clamp, in the output's int8 domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActRange {
    pub min: i8,
    pub max: i8,
}

impl ActRange {
    /// No activation: the whole int8 range.
    pub const FULL: ActRange = ActRange {
        min: i8::MIN,
        max: i8::MAX,
    };

    /// Builds a range from the blob's int32 words, saturating them into int8.
    pub fn from_words(min: i32, max: i32) -> Self {
        Self {
            min: saturate_i8(min),
            max: saturate_i8(max),
        }
    }

    /// Clamps a requantized value (zero point already added) into the range.
    #[inline]
    pub fn apply(self, x: i32) -> i8 {
        // max-then-min rather than `clamp`, which panics when min > max.
        x.max(i32::from(self.min)).min(i32::from(self.max)) as i8
    }
}

/// `requant(acc) + zp`, clamped: the tail shared by every accumulating kernel.
#[inline]
pub fn requantize_to_i8(acc: i32, rq: Requant, out_zp: i32, act: ActRange) -> i8 {
    act.apply(rq.apply(acc).saturating_add(out_zp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn srdhm_reference(a: i32, b: i32) -> i32 {
        let ab = i128::from(a) * i128::from(b);
        // Ties towards +infinity: floor((ab + 2^30) / 2^31).
        let q = (ab + (1i128 << 30)).div_euclid(1i128 << 31);
        q.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
    }

    fn rdbp_reference(x: i32, e: u32) -> i32 {
        let d = 1i128 << e;
        let x = i128::from(x);
        let mag = (x.abs() * 2 + d) / (2 * d);
        (if x < 0 { -mag } else { mag }) as i32
    }

    fn mbqm_reference(x: i32, mult: i32, shift: i32) -> i32 {
        let left = shift.max(0) as u32;
        let right = (-shift).max(0) as u32;
        let shifted = (i128::from(x) << left).clamp(i128::from(i32::MIN), i128::from(i32::MAX));
        rdbp_reference(srdhm_reference(shifted as i32, mult), right)
    }

    #[test]
    fn srdhm_edges() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MAX),
            -i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MAX, i32::MAX),
            i32::MAX - 1
        );
        assert_eq!(saturating_rounding_doubling_high_mul(0, i32::MIN), 0);
        // Exactly half: ties go up for both signs.
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 29, 2), 1 << 0);
        assert_eq!(saturating_rounding_doubling_high_mul(1, 1 << 30), 1);
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1 << 30), 0);
        for &(a, b) in &[
            (i32::MIN, 1),
            (i32::MIN, -1),
            (-1, -1),
            (i32::MAX, -1 << 30),
        ] {
            assert_eq!(
                saturating_rounding_doubling_high_mul(a, b),
                srdhm_reference(a, b)
            );
        }
    }

    #[test]
    fn rdbp_edges_and_every_exponent() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(6, 2), 2);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(
            rounding_divide_by_pot(-7, 40),
            rounding_divide_by_pot(-7, 31)
        );
        for e in 0..=31 {
            for &x in &[
                i32::MIN,
                i32::MIN + 1,
                -3,
                -1,
                0,
                1,
                2,
                3,
                i32::MAX - 1,
                i32::MAX,
            ] {
                assert_eq!(
                    rounding_divide_by_pot(x, e),
                    rdbp_reference(x, e),
                    "x={x} e={e}"
                );
            }
        }
    }

    #[test]
    fn mbqm_every_shift_at_edges() {
        for shift in -31..=30 {
            for &x in &[i32::MIN, -1000, -1, 0, 1, 77, i32::MAX] {
                for &m in &[0, 1 << 30, (1 << 30) + 12345, i32::MAX] {
                    assert_eq!(
                        multiply_by_quantized_multiplier(x, m, shift),
                        mbqm_reference(x, m, shift),
                        "x={x} m={m} shift={shift}"
                    );
                }
            }
        }
        // Out-of-range shifts clamp rather than panic.
        assert_eq!(
            multiply_by_quantized_multiplier(1 << 20, 1 << 30, 99),
            multiply_by_quantized_multiplier(1 << 20, 1 << 30, 30)
        );
    }

    #[test]
    fn mbqm_matches_real_multiplier() {
        // M = 0.75 => mult = 0.75 * 2^31, shift 0.
        let m = (0.75f64 * (1u64 << 31) as f64) as i32;
        assert_eq!(multiply_by_quantized_multiplier(100, m, 0), 75);
        assert_eq!(multiply_by_quantized_multiplier(-3, m, 0), -2);
        // M = 0.75 * 2^-4.
        assert_eq!(multiply_by_quantized_multiplier(1600, m, -4), 75);
    }

    #[test]
    fn round_half_away_division() {
        assert_eq!(div_round_half_away(3, 2), 2);
        assert_eq!(div_round_half_away(-3, 2), -2);
        assert_eq!(div_round_half_away(1, 3), 0);
        assert_eq!(div_round_half_away(-2, 3), -1);
        assert_eq!(div_round_half_away(5, 0), 0);
    }

    #[test]
    fn mean_level_rounds_the_centred_mean_half_away_in_the_levels_quantization() {
        // Levels 1, 2 at zp 0: 1.5 -> 2; levels -1, -2: -1.5 -> -2.
        assert_eq!(mean_level(3, 2, 0), 2);
        assert_eq!(mean_level(-3, 2, 0), -2);
        // zp -128: centred 127 + 128 over two levels is 127.5 -> 128, back to level 0.
        assert_eq!(mean_level(-1, 2, -128), 0);
        assert_eq!(mean_level(127 * 7, 7, 127), 127);
        assert_eq!(mean_level(-128 * 300, 300, 5), -128);
    }

    #[test]
    fn act_range_never_panics_when_inverted() {
        let r = ActRange::from_words(50, -50);
        assert_eq!(r.apply(0), -50);
        assert_eq!(ActRange::from_words(-1000, 1000), ActRange::FULL);
    }

    proptest! {
        #[test]
        fn srdhm_matches_i128(a in any::<i32>(), b in any::<i32>()) {
            prop_assert_eq!(saturating_rounding_doubling_high_mul(a, b), srdhm_reference(a, b));
        }

        #[test]
        fn rdbp_matches_i128(x in any::<i32>(), e in 0u32..=31) {
            prop_assert_eq!(rounding_divide_by_pot(x, e), rdbp_reference(x, e));
        }

        #[test]
        fn mbqm_matches_i128(x in any::<i32>(), m in 0i32..=i32::MAX, shift in -31i32..=30) {
            prop_assert_eq!(multiply_by_quantized_multiplier(x, m, shift), mbqm_reference(x, m, shift));
        }

        #[test]
        fn div_matches_float(num in -(1i32 << 24)..(1i32 << 24), den in 1i32..100_000) {
            let q = f64::from(num) / f64::from(den);
            let expected = if q >= 0.0 { (q + 0.5).floor() } else { (q - 0.5).ceil() };
            prop_assert_eq!(div_round_half_away(num, den), expected as i32);
        }
    }
}
