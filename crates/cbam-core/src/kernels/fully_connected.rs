//! FULLY_CONNECTED (op 3): the input read as a flat NHWC vector, weights `[n_out][n_in]`.

use super::dot::{dot1, dot2, dot4_rows};
use super::{check_len, ChannelQuant};
use crate::error::Error;
use crate::math::{requantize_to_i8, Requant};

/// Parameters of a FULLY_CONNECTED op.
#[derive(Clone, Copy, Debug)]
pub struct FullyConnectedParams<'a> {
    /// `[n_out][n_in]`.
    pub weights: &'a [i8],
    pub quant: ChannelQuant<'a>,
}

/// Runs FULLY_CONNECTED: `output.len()` outputs from `input.len()` inputs (no scratch).
pub fn fully_connected(
    p: &FullyConnectedParams,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let (n_in, n_out) = (input.len(), output.len());
    check_len(
        p.weights.len(),
        n_in.checked_mul(n_out),
        "fully_connected weights",
    )?;
    p.quant.check(n_out)?;
    if n_in == 0 {
        // Only the bias remains.
        for (out, (bias, rq)) in output.iter_mut().zip(p.quant.channels()) {
            *out = requantize_to_i8(bias, rq, p.quant.out_zp, p.quant.act);
        }
        return Ok(());
    }
    rows_times_vector(&p.quant, p.weights, input, output);
    Ok(())
}

/// `output[o] = finish_o(dot(input, row o))` over the rows of `weights`: four rows per
/// pass sharing each input load, then two, then one.
///
/// With a single "pixel" there is no loop to hoist the output stages out of, so each
/// pass's channels are finished as their dot products are ready, through
/// [`ShortStages`] where their constants qualify (the common case) and the general
/// requantizer otherwise.
fn rows_times_vector(q: &ChannelQuant, weights: &[i8], input: &[i8], output: &mut [i8]) {
    let n_in = input.len();
    let n_out = output.len();
    let off = q.in_zp.wrapping_neg();
    let short = ShortStages::new(q, q.max_abs_dot(n_in));
    let finish = |first: usize, dots: &[i32], outs: Option<&mut [i8]>| {
        let outs = outs.unwrap_or_default();
        match &short {
            Some(short) => finish_short(q, short, first, dots, outs),
            None => finish_all_general(q, first, dots, outs),
        }
    };
    // Indices rather than `chunks_exact`: the caller checked `weights.len() == n_in * n_out`,
    // and counting groups of a constant 4 spares the divisions by a run-time length.
    let rows_from = |o: usize| weights.get(o * n_in..).unwrap_or(&[]);
    let mut o = 0;
    while o + 4 <= n_out {
        let dots = dot4_rows(input, rows_from(o), off);
        finish(o, &dots, output.get_mut(o..o + 4));
        o += 4;
    }
    if n_out - o >= 2 {
        let [r0, r1] = [o, o + 1].map(|r| rows_from(r).get(..n_in).unwrap_or(&[]));
        finish(o, &dot2(input, [r0, r1], off), output.get_mut(o..o + 2));
        o += 2;
    }
    if o < n_out {
        let dot = dot1(input, rows_from(o), off);
        finish(o, &[dot], output.get_mut(o..o + 1));
    }
}

/// `outs[i] = finish(channel first + i, dots[i])` through `short` where the channel's
/// constants qualify.
// Out of line: fresh registers for the constants instead of the dot loop's leftovers.
#[inline(never)]
fn finish_short(
    q: &ChannelQuant,
    short: &ShortStages,
    first: usize,
    dots: &[i32],
    outs: &mut [i8],
) {
    for (o, (out, &dot)) in (first..).zip(outs.iter_mut().zip(dots)) {
        let Some((bias, rq)) = channel(q, o) else {
            return;
        };
        *out = match short.finish(bias, rq, dot) {
            Some(v) => v,
            None => finish_general(q, bias, rq, dot),
        };
    }
}

/// [`finish_short`] for a layer whose constants rule the short stage out altogether.
#[inline(never)]
fn finish_all_general(q: &ChannelQuant, first: usize, dots: &[i32], outs: &mut [i8]) {
    for (o, (out, &dot)) in (first..).zip(outs.iter_mut().zip(dots)) {
        if let Some((bias, rq)) = channel(q, o) {
            *out = finish_general(q, bias, rq, dot);
        }
    }
}

/// Channel `o`'s bias and requantizer.
// Indexed words, one after the other: cheaper than walking the three arrays' iterators
// in step, whose chunk length the compiler loses across calls.
#[inline(always)]
fn channel(q: &ChannelQuant, o: usize) -> Option<(i32, Requant)> {
    let bias = q.bias.get(o)?;
    let mult = q.mult.get(o)?;
    Some((bias, Requant::new(mult, q.shift.get(o)?)))
}

/// The short exact output stage of `requant::BoundedStage` with its qualification split
/// in two: what depends only on the layer (the accumulator bound, the output zero point)
/// is checked once per call here, leaving each channel two compares before its
/// arithmetic. A fully connected layer has one accumulator per channel, so building a
/// `BoundedStage` per channel would cost more than the channel's requantization itself.
///
/// The conditions are a subset of `BoundedStage`'s (`|bias| + max_dot < 2^30`, a right
/// shift `r` in `1..=30`, `|round| + |acc| + 2 <= i32::MAX` with
/// `round = (2 zp + 1) 2^(r-1)`), taken with `|round| < 2^29` so that the last one holds
/// for every bias that passes the first; a channel outside them gets the general
/// requantizer, with the same bits.
#[derive(Clone, Copy, Debug)]
struct ShortStages {
    /// `|bias|` must stay below this: `2^30 - max_dot`.
    bias_limit: u32,
    /// `2 * zp + 1`.
    zp2p1: i32,
    /// `r - 1` must stay below this (at most 30), so that `|round| < 2^29`.
    right_limit: u32,
    min: i32,
    max: i32,
}

impl ShortStages {
    /// `None` when no channel can qualify (accumulators of `2^30` or more, or a zero
    /// point too far out for any right shift).
    fn new(q: &ChannelQuant, max_dot: u64) -> Option<Self> {
        let bias_limit = u32::try_from(max_dot)
            .ok()
            .and_then(|d| (1u32 << 30).checked_sub(d))
            .filter(|&limit| limit > 0)?;
        let zp2p1 = q.out_zp.checked_mul(2)?.checked_add(1)?;
        // `|2 zp + 1| < 2^(32 - lz)`, so `e = r - 1 <= lz - 3` keeps `|round|` below
        // `2^29` (a bit short of the exact bound, but without a division, which Armv6-M
        // does not have).
        let max_e = zp2p1.unsigned_abs().leading_zeros().checked_sub(3)?;
        Some(Self {
            bias_limit,
            zp2p1,
            right_limit: (max_e + 1).min(30),
            min: i32::from(q.act.min),
            max: i32::from(q.act.max),
        })
    }

    /// `clamp(requant(bias + dot) + zp)`, or `None` when this channel's constants are
    /// outside the short form (then the caller takes the general requantizer).
    #[inline(always)]
    fn finish(&self, bias: i32, rq: Requant, dot: i32) -> Option<i8> {
        let right = rq.shift.wrapping_neg() as u32;
        if right.wrapping_sub(1) >= self.right_limit || bias.unsigned_abs() >= self.bias_limit {
            return None;
        }
        // |bias + dot| < 2^30: doubling cannot overflow, the high multiply cannot saturate.
        let acc2 = bias.wrapping_add(dot).wrapping_shl(1);
        let h = mul_high_rounded(acc2, rq.mult);
        let round = self.zp2p1.wrapping_shl(right - 1);
        // Rounding half away from zero: one less for negative `h`.
        let t = h
            .wrapping_add(round)
            .wrapping_sub(((h as u32) >> 31) as i32);
        Some((t >> right).max(self.min).min(self.max) as i8)
    }
}

/// `(a * b + 2^31) >> 32`, one `SMMULR` on Armv7E-M.
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

/// The general output stage, out of line: layers with ordinary constants never take it.
#[cold]
#[inline(never)]
fn finish_general(q: &ChannelQuant, bias: i32, rq: Requant, dot: i32) -> i8 {
    requantize_to_i8(bias.wrapping_add(dot), rq, q.out_zp, q.act)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;
    use crate::le::I32Le;
    use crate::math::ActRange;

    #[test]
    fn matches_reference_on_random_shapes() {
        let mut rng = Rng::new(0xFC);
        for _ in 0..300 {
            let (n_in, n_out) = (rng.range(1, 200), rng.range(1, 20));
            let input = rng.i8s(n_in);
            let weights = rng.i8s(n_in * n_out);
            let qt = QuantData::random(&mut rng, n_out);
            let bytes = qt.bytes();
            let p = FullyConnectedParams {
                weights: &weights,
                quant: qt.channel_quant(&bytes),
            };
            let mut output = vec![0i8; n_out];
            fully_connected(&p, &input, &mut output).unwrap();
            let expected: Vec<i8> = (0..n_out)
                .map(|o| {
                    let dot: i64 = (0..n_in)
                        .map(|i| {
                            i64::from(weights[o * n_in + i])
                                * (i64::from(input[i]) - i64::from(qt.in_zp))
                        })
                        .sum();
                    qt.finish(o, i64::from(qt.bias[o]) + dot)
                })
                .collect();
            assert_eq!(output, expected);
        }
    }

    /// The short stage against the reference wherever it accepts the constants, and
    /// proof that it does accept the ordinary ones.
    #[test]
    fn short_stage_matches_reference_at_the_edges() {
        let mut rng = Rng::new(0x5407);
        let mut taken = 0;
        for _ in 0..20_000 {
            let max_dot = match rng.range(0, 3) {
                0 => rng.next_u64() % (1 << 30),
                1 => (1 << 30) - 1 - rng.next_u64() % 1000,
                _ => rng.next_u64() % (1 << 20),
            };
            let out_zp = match rng.range(0, 3) {
                0 => rng.int(-128, 127),
                1 => rng.int(-(1 << 28), 1 << 28),
                _ => *[i32::MIN, i32::MAX, -1, 0]
                    .get(rng.range(0, 4))
                    .unwrap_or(&0),
            };
            let (lo, hi) = (rng.int(-130, 130), rng.int(-130, 130));
            let act = ActRange::from_words(lo, hi);
            let q = ChannelQuant {
                in_zp: 0,
                out_zp,
                act,
                bias: I32Le::new(&[]),
                mult: I32Le::new(&[]),
                shift: I32Le::new(&[]),
            };
            let Some(short) = ShortStages::new(&q, max_dot) else {
                continue;
            };
            let limit = short.bias_limit as i32;
            let bias = match rng.range(0, 3) {
                0 => rng.int(-limit, limit),
                1 => *[limit - 1, 1 - limit, limit, -limit]
                    .get(rng.range(0, 4))
                    .unwrap_or(&0),
                _ => rng.next_u64() as i32,
            };
            let dot_mag = (max_dot as i64).min(i64::from(i32::MAX)) as i32;
            let dot = match rng.range(0, 3) {
                0 => dot_mag,
                1 => -dot_mag,
                _ => rng.int(-dot_mag, dot_mag),
            };
            let mult = match rng.range(0, 3) {
                0 => rng.mult(),
                1 => rng.next_u64() as i32,
                _ => *[i32::MIN, i32::MAX, 1 << 30, -1, 0]
                    .get(rng.range(0, 5))
                    .unwrap_or(&0),
            };
            let shift = rng.int(-33, 2);
            let rq = Requant::new(mult, shift);
            if let Some(v) = short.finish(bias, rq, dot) {
                taken += 1;
                let expected = requantize_to_i8(bias.wrapping_add(dot), rq, out_zp, act);
                assert_eq!(
                    v, expected,
                    "bias={bias} dot={dot} rq={rq:?} zp={out_zp} act={act:?}"
                );
            }
        }
        assert!(taken > 2_000, "the short stage took only {taken} cases");
    }

    #[test]
    fn short_stage_takes_ordinary_layers_only() {
        let q = |out_zp| ChannelQuant {
            in_zp: -3,
            out_zp,
            act: ActRange::FULL,
            bias: I32Le::new(&[]),
            mult: I32Le::new(&[]),
            shift: I32Le::new(&[]),
        };
        let short = ShortStages::new(&q(-128), q(-128).max_abs_dot(64));
        let Some(short) = short else {
            panic!("an ordinary 64-input layer must take the short stage");
        };
        let rq = |shift| Requant::new(1 << 30, shift);
        assert!(short.finish(20_000, rq(-8), 5).is_some());
        assert!(short.finish(20_000, rq(0), 5).is_none(), "no right shift");
        assert!(short.finish(20_000, rq(1), 5).is_none(), "a left shift");
        assert!(short.finish(i32::MAX, rq(-8), 5).is_none(), "a huge bias");
        assert!(
            ShortStages::new(&q(0), 1 << 30).is_none(),
            "accumulators too large"
        );
        assert!(
            ShortStages::new(&q(i32::MAX), 10).is_none(),
            "zero point out of range"
        );
    }

    #[test]
    fn every_row_grouping_matches_the_single_row_path() {
        // 4k, 4k + 1, 4k + 2 and 4k + 3 outputs: every mix of the four-, two- and
        // one-row passes, each output compared with the one-output layer of its row.
        let mut rng = Rng::new(0x6F0);
        for n_out in 1..=11 {
            let n_in = rng.range(1, 80);
            let input = rng.i8s(n_in);
            let weights = rng.i8s(n_in * n_out);
            let qt = QuantData::random(&mut rng, n_out);
            let bytes = qt.bytes();
            let p = FullyConnectedParams {
                weights: &weights,
                quant: qt.channel_quant(&bytes),
            };
            let mut output = vec![0i8; n_out];
            fully_connected(&p, &input, &mut output).unwrap();
            for (o, &got) in output.iter().enumerate() {
                let one = QuantData {
                    bias: vec![qt.bias[o]],
                    mult: vec![qt.mult[o]],
                    shift: vec![qt.shift[o]],
                    ..qt.clone()
                };
                let one_bytes = one.bytes();
                let p1 = FullyConnectedParams {
                    weights: &weights[o * n_in..(o + 1) * n_in],
                    quant: one.channel_quant(&one_bytes),
                };
                let mut single = [0i8; 1];
                fully_connected(&p1, &input, &mut single).unwrap();
                assert_eq!(got, single[0], "n_out={n_out} n_in={n_in} o={o}");
            }
        }
    }

    #[test]
    fn rejects_wrong_weight_count() {
        let qt = QuantData::random(&mut Rng::new(3), 2);
        let bytes = qt.bytes();
        let p = FullyConnectedParams {
            weights: &[0; 5],
            quant: qt.channel_quant(&bytes),
        };
        assert_eq!(
            fully_connected(&p, &[0; 3], &mut [0; 2]),
            Err(Error::SliceLength {
                what: "fully_connected weights"
            })
        );
    }
}
