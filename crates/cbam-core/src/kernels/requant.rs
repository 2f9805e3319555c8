//! [`OutputRequant`]: `requantize_to_i8` with its per-channel constants decoded once and a
//! cheaper, bit-identical form of the doubling high multiply, for the kernels' hot loops.

use super::backend::{ActBounds, Active, Backend};
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

/// The output stage of one channel, bias included: what the accumulating kernels are
/// generic over, so that a layer whose accumulators are provably small gets
/// [`BoundedStage`] and any other layer the general [`ExactStage`], with the same bits.
pub(crate) trait OutputStage: Copy {
    /// `clamp(requant(bias + dot) + zp)` with int32 wrap-around in `bias + dot`.
    fn finish(&self, dot: i32) -> i8;

    /// [`OutputStage::finish`] of four channels at once (four adjacent output bytes);
    /// `act` is the activation range the stages were built with.
    #[inline(always)]
    fn finish4(stages: &[Self; 4], dots: [i32; 4], act: ActBounds) -> [i8; 4] {
        let _ = act;
        let [s0, s1, s2, s3] = stages;
        let [d0, d1, d2, d3] = dots;
        [s0.finish(d0), s1.finish(d1), s2.finish(d2), s3.finish(d3)]
    }
}

/// The general stage: any accumulator, any per-channel constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExactStage {
    pub(crate) bias: i32,
    pub(crate) rq: OutputRequant,
}

impl OutputStage for ExactStage {
    #[inline(always)]
    fn finish(&self, dot: i32) -> i8 {
        self.rq.apply(self.bias.wrapping_add(dot))
    }
}

/// [`ExactStage`]'s result in about a third of the instructions, for a channel whose
/// accumulators obey `|bias + dot| < 2^30` (with room for the rounding constant, checked
/// by [`BoundedStage::new`]). There no saturation and no wrap-around can happen, so:
/// the doubling high multiply of `acc` is `(2 * acc * mult + 2^31) >> 32` (one `SMMULR`
/// on Armv7E-M, any sign of `mult`); the rounding divide by `2^r`, half away from zero,
/// is `(h + 2^(r-1) - [h < 0]) >> r`; and the zero point joins the rounding constant as
/// `zp * 2^r`. A left shift (a multiplier of 1 or more) is not covered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BoundedStage {
    /// `2 * bias`.
    bias2: i32,
    mult: i32,
    /// `2^(r-1) + zp * 2^r`.
    round: i32,
    right: u32,
    min: i32,
    max: i32,
}

/// The accumulators [`BoundedStage`] takes: `|acc| < 2^30`, so `2 * acc` fits.
const BOUNDED_ACC: u32 = 1 << 30;

/// The arithmetic of [`BoundedStage`], for callers that qualify their constants some
/// other way (the fully connected kernel, per channel): `requant(acc) + zp` before the
/// activation clamp, for `acc2 = 2 * acc` with `-2^30 <= acc < 2^30`, `right` in
/// `1..=30` and `round = 2^(right-1) + zp * 2^right` small enough that
/// `|round| + 2^30 + 2` fits an `i32`.
#[inline(always)]
pub(crate) fn bounded_unclamped<B: Backend>(acc2: i32, mult: i32, round: i32, right: u32) -> i32 {
    let h = B::mul_high_rounded(acc2, mult);
    // Rounding half away from zero: one less for negative `h`.
    let t = h
        .wrapping_add(round)
        .wrapping_sub(((h as u32) >> 31) as i32);
    t >> right
}

impl BoundedStage {
    /// `None` unless `|bias| + max_abs_dot < 2^30`, the shift is a right shift of 1 to 30
    /// after TFLite's clamping and the rounding constant leaves room for every `h`.
    // 32-bit arithmetic only: the conv kernels build one per output channel and call.
    pub(crate) fn new(
        bias: i32,
        rq: Requant,
        zp: i32,
        act: ActRange,
        max_abs_dot: u64,
    ) -> Option<Self> {
        let dot = u32::try_from(max_abs_dot).ok()?;
        let acc_bound = bias.unsigned_abs().checked_add(dot)?;
        let right = u32::try_from(rq.shift.clamp(-31, 30).checked_neg()?).ok()?;
        if acc_bound >= BOUNDED_ACC || !(1..=30).contains(&right) {
            return None;
        }
        // |h| <= |acc| + 1, and the sum below must stay inside i32.
        let unit = 1i32 << right;
        let round = zp.checked_mul(unit)?.checked_add(unit >> 1)?;
        let worst = (acc_bound + 2).checked_add(round.unsigned_abs())?;
        if worst > i32::MAX as u32 {
            return None;
        }
        Some(Self {
            bias2: bias.wrapping_mul(2),
            mult: rq.mult,
            round,
            right,
            min: i32::from(act.min),
            max: i32::from(act.max),
        })
    }
}

impl BoundedStage {
    /// The output before the activation clamp, with the backend `B`'s high multiply.
    #[inline(always)]
    pub(crate) fn unclamped<B: Backend>(&self, dot: i32) -> i32 {
        // 2 * (bias + dot), one shifted-operand add on Arm.
        let acc2 = self.bias2.wrapping_add(dot.wrapping_shl(1));
        bounded_unclamped::<B>(acc2, self.mult, self.round, self.right)
    }

    /// [`OutputStage::finish`] with the backend `B`'s high multiply.
    #[inline(always)]
    pub(crate) fn finish_on<B: Backend>(&self, dot: i32) -> i8 {
        self.unclamped::<B>(dot).max(self.min).min(self.max) as i8
    }
}

impl OutputStage for BoundedStage {
    #[inline(always)]
    fn finish(&self, dot: i32) -> i8 {
        self.finish_on::<Active>(dot)
    }

    #[inline(always)]
    fn finish4(stages: &[Self; 4], dots: [i32; 4], act: ActBounds) -> [i8; 4] {
        Active::finish4_bounded(stages, dots, act)
    }
}

/// The constants of a product requantization: `x = (v - zp) * k` of an int8 `v`, an int8
/// zero point and a factor `k` in `0..=256` (the CBAM scalings), into int8 with the whole
/// int8 range, in fewer steps than [`OutputRequant`] and with the same bits (applied by
/// [`SignedProductRequant`]).
///
/// With `|x| < 2^17` nothing can saturate, so: the doubling high multiply of `x` is
/// `(2x * mult + 2^31) >> 32`; the rounding divide by `2^r`, half away from zero, is
/// `(h + 2^(r-1) - [h < 0]) >> r`; and the output zero point is added before the shift as
/// `zp * 2^r`.
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
}

/// [`ProductRequant`] for a multiplier of `2^30` or more (TFLite's normalised range), one
/// instruction shorter: the sign correction is taken from `x2` before the multiply, and
/// the rounding constant joins the multiply as the accumulator of one `SMMLAR`
/// (`(ra * 2^32 + a * b + 2^31) >> 32 = h + ra` for an integer `ra`).
///
/// The doubling high multiply `h = floor((x * mult + 2^30) / 2^31)` is negative exactly
/// when `x2 + sign_offset < 0`: above `2^30`, `x <= -1` already gives
/// `x * mult + 2^30 < 0` (offset 0); at exactly `2^30`, `h = floor((x + 1) / 2)`, negative
/// from `x = -2`, i.e. `x2 = -4` (offset 2, and `x2` is even).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignedProductRequant {
    pub(crate) mult: i32,
    /// `2^(r-1) + zp * 2^r`.
    pub(crate) bias: i32,
    pub(crate) right: u32,
    /// `x2 + sign_offset < 0` exactly when the doubling high multiply is negative.
    pub(crate) sign_offset: i32,
}

impl SignedProductRequant {
    /// `None` when `rq` does not suit [`ProductRequant`] or its multiplier is below `2^30`.
    pub(crate) fn new(rq: Requant, zp: i32) -> Option<Self> {
        let p = ProductRequant::new(rq, zp)?;
        let sign_offset = match p.mult {
            m if m > 1 << 30 => 0,
            m if m == 1 << 30 => 2,
            _ => return None,
        };
        Some(Self {
            mult: p.mult,
            bias: p.bias,
            right: p.right,
            sign_offset,
        })
    }

    /// `h + 2^(r-1) + zp * 2^r - [h < 0]`, before the shift, for `x2 = 2 * x`: the
    /// portable [`Backend::signed_product_unshifted`], which takes the sign from `h`
    /// itself (the same value as from `x2 + sign_offset`).
    #[inline(always)]
    pub(crate) fn unshifted<B: Backend>(&self, x2: i32) -> i32 {
        let h = B::mul_high_rounded(x2, self.mult);
        debug_assert_eq!(h < 0, x2.wrapping_add(self.sign_offset) < 0, "x2 = {x2}");
        h.wrapping_add(self.bias)
            .wrapping_sub(((h as u32) >> 31) as i32)
    }

    /// `clamp(requant(x) + zp, -128, 127)` for `x2 = 2 * x`, `|x| <= 2^16 + 2^8`.
    #[inline(always)]
    pub(crate) fn apply_doubled(&self, x2: i32) -> i8 {
        (Active::signed_product_unshifted(self, x2) >> self.right)
            .clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
    }
}

/// A CBAM scaling whose multiplier is exactly `2^(j-8)` (`mult = 2^30`, right shift
/// `r = 7 - j` in `1..=7`), what the compiler emits by default: the TFLite arithmetic of
/// [`OutputRequant`] on `x = v - zp_in`, `k = a + 128`, collapsed to one product and one
/// shift with the same bits.
///
/// The doubling high multiply by `2^30` is `h = floor((xk + 1) / 2)` for every sign, and
/// rounding `h` by `2^r` half away from zero is then `floor((xk + 2^r + 1) / 2^(r+1))` for
/// `h >= 0` and `floor((xk + 2^r - 1) / 2^(r+1))` for `h < 0`. Scaled by `2^j` to a shift
/// of 8: `t = x * (k << j) + 2^7 + 2^j + zp * 2^8 - [x < 0] * 2^(j+1)`, output
/// `clamp(t >> 8)`. Taking the sign from `x` instead of `h` only differs at `xk` in
/// `{0, -1}`, where both constants give the same quotient for `j <= 6`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pow2ProductRequant {
    /// `j`, the left shift of the factor.
    pub(crate) steps: u32,
    /// `2^7 + 2^j + zp * 2^8`.
    pub(crate) bias: i32,
}

impl Pow2ProductRequant {
    /// `None` unless `rq` is `2^30` with a right shift in `1..=7` and `zp` an int8.
    pub(crate) fn new(rq: Requant, zp: i32) -> Option<Self> {
        let right = u32::try_from(rq.shift.checked_neg()?).ok()?;
        if rq.mult != 1 << 30 || !(1..=7).contains(&right) || i8::try_from(zp).is_err() {
            return None;
        }
        let steps = 7 - right;
        Some(Self {
            steps,
            bias: (1 << 7) + (1 << steps) + (zp << 8),
        })
    }

    /// `clamp(requant(x * k) + zp)` for `x` in `-255..=255` and `k` in `0..=255`.
    #[inline(always)]
    pub(crate) fn apply(&self, x: i32, k: i32) -> i8 {
        let sign = (x >> 31) << (self.steps + 1);
        let t = x * (k << self.steps) + self.bias + sign;
        (t >> 8).clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
    }
}

/// `(a * b + 2^31) >> 32`: the portable [`Backend::mul_high_rounded`].
#[inline(always)]
pub(crate) fn mul_high_rounded(a: i32, b: i32) -> i32 {
    ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32
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
        let Some(fast) = SignedProductRequant::new(rq, zp) else {
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
                    for mult in [1 << 30, (1 << 30) + 1, i32::MAX] {
                        for zp in [-128, 0, 127] {
                            product_same(v, zp_in, k, mult, shift, zp);
                        }
                    }
                }
            }
        }
        // The bounds the short form refuses.
        assert!(SignedProductRequant::new(Requant::new(1 << 30, 0), 0).is_none());
        assert!(SignedProductRequant::new(Requant::new(1 << 30, -23), 0).is_none());
        assert!(SignedProductRequant::new(Requant::new(-1, -5), 0).is_none());
        assert!(SignedProductRequant::new(Requant::new(1 << 30, -5), 128).is_none());
    }

    /// Every int8 `v` and factor `k` in `0..=256` for one constant set: the whole domain
    /// of a CBAM scaling.
    fn signed_product_exhaustive(zp_in: i8, mult: i32, shift: i32, zp: i32) {
        let rq = Requant::new(mult, shift);
        let Some(fast) = SignedProductRequant::new(rq, zp) else {
            return;
        };
        for v in i8::MIN..=i8::MAX {
            for k in 0..=256 {
                let x = (i32::from(v) - i32::from(zp_in)) * k;
                assert_eq!(
                    fast.apply_doubled(2 * x),
                    requantize_to_i8(x, rq, zp, ActRange::FULL),
                    "v={v} zp_in={zp_in} k={k} mult={mult} shift={shift} zp={zp}"
                );
            }
        }
    }

    /// Every `x` an int8 pair can give (`v - zp_in` in `-255..=255`) and every factor, for
    /// every shift the form takes and zero points at the edges.
    #[test]
    fn pow2_product_form_over_the_whole_domain() {
        for right in 1..=7 {
            let rq = Requant::new(1 << 30, -right);
            for zp in [-128, -100, -1, 0, 5, 127] {
                let Some(fast) = Pow2ProductRequant::new(rq, zp) else {
                    panic!("right shift {right} zp {zp} refused");
                };
                for x in -255..=255 {
                    for k in 0..=255 {
                        assert_eq!(
                            fast.apply(x, k),
                            requantize_to_i8(x * k, rq, zp, ActRange::FULL),
                            "x={x} k={k} right={right} zp={zp}"
                        );
                    }
                }
            }
        }
        for rq in [
            Requant::new(1 << 30, 0),
            Requant::new(1 << 30, -8),
            Requant::new((1 << 30) + 1, -7),
        ] {
            assert!(Pow2ProductRequant::new(rq, 0).is_none());
        }
        assert!(Pow2ProductRequant::new(Requant::new(1 << 30, -7), 128).is_none());
    }

    #[test]
    fn signed_product_form_over_the_whole_domain() {
        let mut rng = crate::kernels::test_support::Rng::new(0x5165);
        let edges = [
            1 << 30,
            (1 << 30) + 1,
            (1 << 30) + 12_345,
            i32::MAX - 1,
            i32::MAX,
        ];
        for shift in -22..=-1 {
            for &mult in &edges {
                for (zp_in, zp) in [(-128i8, -128), (127, 127), (0, 0), (-100, 37)] {
                    signed_product_exhaustive(zp_in, mult, shift, zp);
                }
            }
        }
        for _ in 0..40 {
            let mult = rng.int(1 << 30, i32::MAX);
            let shift = rng.int(-22, -1);
            signed_product_exhaustive(rng.i8(), mult, shift, rng.int(-128, 127));
        }
        assert!(SignedProductRequant::new(Requant::new((1 << 30) - 1, -8), 0).is_none());
    }

    /// Compares [`BoundedStage`] with the reference wherever it accepts the constants.
    fn bounded_same(bias: i32, dot: i32, rq: Requant, zp: i32, act: ActRange, max_dot: u64) {
        let Some(fast) = BoundedStage::new(bias, rq, zp, act, max_dot) else {
            return;
        };
        assert_eq!(
            fast.finish(dot),
            requantize_to_i8(bias.wrapping_add(dot), rq, zp, act),
            "bias={bias} dot={dot} rq={rq:?} zp={zp} act={act:?}"
        );
    }

    #[test]
    fn bounded_stage_at_the_extremes() {
        let bound = (1u64 << 30) - 1;
        let mults = [i32::MIN, -1, 0, 1, 1 << 30, i32::MAX];
        let acts = [
            ActRange::FULL,
            ActRange::from_words(-5, 7),
            ActRange::from_words(9, -9),
        ];
        for shift in -40..=2 {
            for &m in &mults {
                for zp in [-128, 0, 127] {
                    for act in acts {
                        for bias in [0i32, -(1 << 20), 1 << 20] {
                            let max_dot = bound - u64::from(bias.unsigned_abs());
                            for dot in [-(max_dot as i32), -1, 0, 1, max_dot as i32] {
                                bounded_same(bias, dot, Requant::new(m, shift), zp, act, max_dot);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bounded_stage_takes_ordinary_layers_only() {
        let rq = Requant::new(1 << 30, -8);
        let act = ActRange::FULL;
        assert!(BoundedStage::new(20_000, rq, 5, act, 1 << 24).is_some());
        assert!(BoundedStage::new(i32::MIN, rq, 5, act, 0).is_none());
        assert!(BoundedStage::new(0, rq, 5, act, 1 << 30).is_none());
        assert!(BoundedStage::new(0, Requant::new(1 << 30, 0), 5, act, 1).is_none());
        assert!(BoundedStage::new(0, Requant::new(1 << 30, 3), 5, act, 1).is_none());
        assert!(BoundedStage::new(0, rq, i32::MAX, act, 1).is_none());
    }

    proptest! {
        #[test]
        fn product_form_matches_math(v in any::<i8>(), zp_in in any::<i8>(), k in 0i32..=256,
                                     mult in 0i32..=i32::MAX, shift in -22i32..=-1, zp in any::<i8>()) {
            product_same(v, zp_in, k, mult, shift, i32::from(zp));
        }

        #[test]
        fn bounded_stage_matches_math(bias in -(1i32 << 29)..(1 << 29), bound_bits in 0u32..30,
                                      frac in 0u64..=1000, mult in any::<i32>(),
                                      shift in -40i32..=1, zp in -300i32..300,
                                      lo in -130i32..130, hi in -130i32..130) {
            let max_dot = (1u64 << bound_bits) - 1;
            // Spread over the whole allowed range, both signs, endpoints included.
            let mag = (max_dot * frac / 1000) as i32;
            let act = ActRange::from_words(lo, hi);
            for dot in [mag, -mag] {
                bounded_same(bias, dot, Requant::new(mult, shift), zp, act, max_dot);
            }
        }

        #[test]
        fn matches_math(acc in any::<i32>(), mult in any::<i32>(), shift in -33i32..=33,
                        zp in -300i32..300, lo in -130i32..130, hi in -130i32..130) {
            same(acc, mult, shift, zp, lo, hi);
        }
    }
}
