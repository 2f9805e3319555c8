//! [`OutputRequant`]: `requantize_to_i8` with its per-channel constants decoded once and a
//! cheaper, bit-identical form of the doubling high multiply, for the kernels' hot loops.

use crate::math::{ActRange, Requant};

/// The output stage of one channel: `clamp(requant(acc) + zp)`, equal bit for bit to
/// [`crate::math::requantize_to_i8`] for every input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutputRequant {
    mult: i32,
    left: u32,
    right: u32,
    mask: i32,
    half: i32,
    zp: i32,
    min: i32,
    max: i32,
}

impl OutputRequant {
    #[inline(always)]
    pub(crate) fn new(rq: Requant, zp: i32, act: ActRange) -> Self {
        // The same clamping of the shift as `multiply_by_quantized_multiplier`.
        let shift = rq.shift.clamp(-31, 30);
        let right = (-shift).max(0) as u32;
        let mask = ((1u64 << right) - 1) as i32;
        Self {
            mult: rq.mult,
            left: shift.max(0) as u32,
            right,
            mask,
            half: mask >> 1,
            zp,
            min: i32::from(act.min),
            max: i32::from(act.max),
        }
    }

    /// The requantized value before the zero point and clamp (`multiply_by_quantized_multiplier`).
    #[inline(always)]
    pub(crate) fn scale(&self, acc: i32) -> i32 {
        let shifted = if self.left == 0 {
            acc
        } else {
            acc.saturating_mul(1 << self.left)
        };
        // gemmlowp nudges by +-2^30 and truncates; for both signs that is
        // floor((ab + 2^30) / 2^31), an arithmetic shift. Only i32::MIN * i32::MIN exceeds
        // i32 afterwards (2^31 wraps to i32::MIN), and no other product rounds to i32::MIN
        // (the most negative is i32::MIN * i32::MAX -> i32::MIN + 1), so that value means
        // "saturate to i32::MAX" as gemmlowp's does.
        let ab = i64::from(shifted) * i64::from(self.mult);
        let high = ((ab + (1 << 30)) >> 31) as i32;
        let high = if high == i32::MIN { i32::MAX } else { high };
        // Rounding divide by 2^right, half away from zero.
        let threshold = self.half + i32::from(high < 0);
        (high >> self.right) + i32::from((high & self.mask) > threshold)
    }

    #[inline(always)]
    pub(crate) fn apply(&self, acc: i32) -> i8 {
        let v = self.scale(acc).saturating_add(self.zp);
        v.max(self.min).min(self.max) as i8
    }
}

/// The requantization of a product `x = (v - zp) * k` of an int8 `v`, an int8 zero point and
/// a factor `k` in `0..=256` (the CBAM scalings), into int8 with the whole int8 range, in
/// fewer steps than [`OutputRequant`] and with the same bits.
///
/// With `|x| < 2^17` nothing can saturate, so: the doubling high multiply of `x` is
/// `(2x * mult + 2^31) >> 32` (one `SMMULR` on Armv7E-M); the rounding divide by `2^r`,
/// half away from zero, is `(h + 2^(r-1) - [h < 0]) >> r`; and the output zero point is
/// added before the shift as `zp * 2^r`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProductRequant {
    mult: i32,
    /// `2^(r-1) + zp * 2^r`.
    bias: i32,
    right: u32,
}

impl ProductRequant {
    /// `None` outside the range the short form is exact for (a multiplier above one, a
    /// negative multiplier, no or a very large right shift, a zero point outside int8):
    /// the caller then uses [`OutputRequant`].
    pub(crate) fn new(rq: Requant, zp: i32) -> Option<Self> {
        let right = u32::try_from(rq.shift.checked_neg()?).ok()?;
        if rq.mult < 0 || !(1..=22).contains(&right) || i8::try_from(zp).is_err() {
            return None;
        }
        Some(Self {
            mult: rq.mult,
            bias: (1 << (right - 1)) + (zp << right),
            right,
        })
    }

    /// `clamp(requant(x) + zp, -128, 127)` for `x2 = 2 * x`, `|x| <= 2^16 + 2^8`.
    #[inline(always)]
    pub(crate) fn apply_doubled(&self, x2: i32) -> i8 {
        let h = mul_high_rounded(x2, self.mult);
        let t = h
            .wrapping_add(self.bias)
            .wrapping_sub(((h as u32) >> 31) as i32);
        (t >> self.right).clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
    }
}

/// `(a * b + 2^31) >> 32`.
#[inline(always)]
fn mul_high_rounded(a: i32, b: i32) -> i32 {
    #[cfg(cbam_arm_dsp)]
    {
        super::arm_dsp::smmulr(a, b)
    }
    #[cfg(not(cbam_arm_dsp))]
    {
        ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::requantize_to_i8;
    use proptest::prelude::*;

    fn same(acc: i32, mult: i32, shift: i32, zp: i32, lo: i32, hi: i32) {
        let act = ActRange::from_words(lo, hi);
        let rq = Requant::new(mult, shift);
        assert_eq!(
            OutputRequant::new(rq, zp, act).apply(acc),
            requantize_to_i8(acc, rq, zp, act),
            "acc={acc} mult={mult} shift={shift} zp={zp}"
        );
    }

    #[test]
    fn edges_match_math() {
        let xs = [i32::MIN, i32::MIN + 1, -65_280, -1, 0, 1, 65_280, i32::MAX];
        let mults = [i32::MIN, -1, 0, 1, 1 << 30, i32::MAX];
        for shift in -40..=40 {
            for &x in &xs {
                for &m in &mults {
                    same(x, m, shift, 0, -128, 127);
                    same(x, m, shift, i32::MAX, -128, 127);
                    same(x, m, shift, i32::MIN, -5, 7);
                }
            }
        }
    }

    fn product_same(v: i8, zp_in: i8, k: i32, mult: i32, shift: i32, zp: i32) {
        let rq = Requant::new(mult, shift);
        let Some(fast) = ProductRequant::new(rq, zp) else {
            return;
        };
        let x = (i32::from(v) - i32::from(zp_in)) * k;
        assert_eq!(
            fast.apply_doubled(2 * x),
            requantize_to_i8(x, rq, zp, ActRange::FULL),
            "v={v} zp_in={zp_in} k={k} mult={mult} shift={shift} zp={zp}"
        );
    }

    #[test]
    fn product_form_at_the_extremes() {
        for &(v, zp_in) in &[(127i8, -128i8), (-128, 127), (0, 0), (-1, 0), (1, 0)] {
            for k in [0, 1, 255, 256] {
                for shift in -23..=1 {
                    for mult in [0, 1, 1 << 30, i32::MAX] {
                        for zp in [-128, 0, 127] {
                            product_same(v, zp_in, k, mult, shift, zp);
                        }
                    }
                }
            }
        }
        // The bounds the short form refuses.
        assert!(ProductRequant::new(Requant::new(1 << 30, 0), 0).is_none());
        assert!(ProductRequant::new(Requant::new(1 << 30, -23), 0).is_none());
        assert!(ProductRequant::new(Requant::new(-1, -5), 0).is_none());
        assert!(ProductRequant::new(Requant::new(1 << 30, -5), 128).is_none());
    }

    proptest! {
        #[test]
        fn product_form_matches_math(v in any::<i8>(), zp_in in any::<i8>(), k in 0i32..=256,
                                     mult in 0i32..=i32::MAX, shift in -22i32..=-1, zp in any::<i8>()) {
            product_same(v, zp_in, k, mult, shift, i32::from(zp));
        }

        #[test]
        fn matches_math(acc in any::<i32>(), mult in any::<i32>(), shift in -33i32..=33,
                        zp in -300i32..300, lo in -130i32..130, hi in -130i32..130) {
            same(acc, mult, shift, zp, lo, hi);
        }
    }
}
