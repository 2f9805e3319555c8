//! FULLY_CONNECTED (op 3): the input read as a flat NHWC vector, weights `[n_out][n_in]`.
//!
//! With a single "pixel" there is no pixel loop to hoist per-channel work out of: each
//! channel's three constants are decoded and applied once, right after its dot product.
//! With few outputs (a classifier head, a CBAM MLP) that finishing costs as much as the
//! dot products, so it is kept short: the constant arrays are length-checked once per
//! layer and then walked in step, and each channel takes the short output stage of
//! `requant::bounded_unclamped` after two compares.

use super::backend::{ActBounds, Active, Backend};
use super::requant;
use super::{check_len, ChannelQuant, FullyConnectedParams};
use crate::error::Error;
use crate::le::I32Le;
use crate::math::{requantize_to_i8, ActRange, Requant};

/// Runs FULLY_CONNECTED: `output.len()` outputs from `input.len()` inputs (no scratch).
pub fn fully_connected(
    p: &FullyConnectedParams,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    check_len(
        p.weights.len(),
        input.len().checked_mul(output.len()),
        "fully_connected weights",
    )?;
    let channels = ChannelWords::new(&p.quant, output.len())?;
    let stage = Stage::new(&p.quant);
    rows_times_vector(&stage, channels, p.weights, input, output);
    Ok(())
}

/// `output[o] = finish_o(dot(input, row o))` over the rows of `weights`: four rows per
/// pass sharing each input load, then two, then one. `weights` holds
/// `input.len() * output.len()` values and `channels` `output.len()` channels.
fn rows_times_vector(
    stage: &Stage,
    channels: ChannelWords,
    weights: &[i8],
    input: &[i8],
    output: &mut [i8],
) {
    let n_in = input.len();
    let off = stage.in_offset;
    let mut rows = weights;
    // A block of four rows exists only when there are four outputs, so this cannot
    // saturate where it is used.
    let block = n_in.saturating_mul(4);
    let (fours, rest) = channels.groups::<4>();
    let (out4, out_rest) = output.as_chunks_mut::<4>();
    for (outs, group) in out4.iter_mut().zip(fours) {
        let Some((four_rows, next)) = rows.split_at_checked(block) else {
            return;
        };
        rows = next;
        *outs = stage.finish(group, Active::dot4_rows(input, four_rows, off));
    }
    let (twos, rest) = rest.groups::<2>();
    let (out2, out1) = out_rest.as_chunks_mut::<2>();
    for (outs, group) in out2.iter_mut().zip(twos) {
        let Some((r0, next)) = rows.split_at_checked(n_in) else {
            return;
        };
        let Some((r1, next)) = next.split_at_checked(n_in) else {
            return;
        };
        rows = next;
        *outs = stage.finish(group, Active::dot2(input, [r0, r1], off));
    }
    let (ones, _) = rest.groups::<1>();
    for (out, group) in out1.iter_mut().zip(ones) {
        let [v] = stage.finish(group, [Active::dot1(input, rows, off)]);
        *out = v;
    }
}

/// One output channel's constants.
#[derive(Clone, Copy, Debug, Default)]
struct Channel {
    bias: i32,
    mult: i32,
    shift: i32,
}

/// The per-channel bias, multiplier and shift words of a layer, to be walked in step.
#[derive(Clone, Copy, Debug)]
struct ChannelWords<'a> {
    bias: &'a [[u8; 4]],
    mult: &'a [[u8; 4]],
    shift: &'a [[u8; 4]],
}

impl<'a> ChannelWords<'a> {
    /// The words of `q`, which must hold exactly `channels` of each.
    fn new(q: &ChannelQuant<'a>, channels: usize) -> Result<Self, Error> {
        // Taken as the first `channels` words so that all three lengths are visibly the
        // same number (the output's length): the loops that walk them in step with the
        // output then need no length but that one.
        let exact = |w: I32Le<'a>| {
            let words = w.words().get(..channels).filter(|_| w.len() == channels);
            words.ok_or(Error::SliceLength {
                what: "per-channel bias/mult/shift",
            })
        };
        Ok(Self {
            bias: exact(q.bias)?,
            mult: exact(q.mult)?,
            shift: exact(q.shift)?,
        })
    }

    /// The channels in groups of `N` (as many groups as all three arrays hold), and the
    /// channels left after them.
    fn groups<const N: usize>(self) -> (impl Iterator<Item = GroupWords<'a, N>>, Self) {
        let (bias, bias_rest) = self.bias.as_chunks::<N>();
        let (mult, mult_rest) = self.mult.as_chunks::<N>();
        let (shift, shift_rest) = self.shift.as_chunks::<N>();
        let groups = bias
            .iter()
            .zip(mult)
            .zip(shift)
            .map(|((bias, mult), shift)| GroupWords { bias, mult, shift });
        let rest = Self {
            bias: bias_rest,
            mult: mult_rest,
            shift: shift_rest,
        };
        (groups, rest)
    }
}

/// The words of `N` adjacent channels, decoded only where they are used: after the dot
/// products, whose call would otherwise keep the decoded values on the stack.
#[derive(Clone, Copy, Debug)]
struct GroupWords<'a, const N: usize> {
    bias: &'a [[u8; 4]; N],
    mult: &'a [[u8; 4]; N],
    shift: &'a [[u8; 4]; N],
}

impl<'a, const N: usize> GroupWords<'a, N> {
    #[inline(always)]
    fn channels(self) -> impl Iterator<Item = Channel> + 'a {
        let words = self.bias.iter().zip(self.mult).zip(self.shift);
        words.map(|((bias, mult), shift)| Channel {
            bias: i32::from_le_bytes(*bias),
            mult: i32::from_le_bytes(*mult),
            shift: i32::from_le_bytes(*shift),
        })
    }
}

/// The largest right shift `r` the short stage takes. With an int8 output zero point,
/// `|2 zp + 1| < 2^8`, so the rounding constant `(2 zp + 1) 2^(r-1)` stays below `2^29`;
/// multipliers needing more (real scales under `2^-22`) take the general requantizer.
const SHORT_MAX_RIGHT: u32 = 22;

/// A layer's output stage: the short form of [`requant::bounded_unclamped`] for every
/// channel whose accumulator and shift qualify, the general requantizer for the rest,
/// with the same bits.
///
/// What [`requant::BoundedStage::new`] checks per channel is split here: the zero point
/// once per layer, and per channel only the shift and the accumulator itself (rather
/// than a bound on it), two compares. Building a `BoundedStage` per channel would cost
/// more than the channel's requantization.
#[derive(Clone, Copy, Debug)]
struct Stage {
    /// `-in_zp`, added to every input.
    in_offset: i32,
    /// `2 * zp + 1`, or `None` when the zero point is outside int8 (no channel qualifies).
    zp2p1: Option<i32>,
    zp: i32,
    act: ActRange,
    /// `act` as the backend's clamp reads it.
    bounds: ActBounds,
}

impl Stage {
    fn new(q: &ChannelQuant) -> Self {
        let zp2p1 = i8::try_from(q.out_zp).ok().map(|zp| 2 * i32::from(zp) + 1);
        Self {
            in_offset: q.in_zp.wrapping_neg(),
            zp2p1,
            zp: q.out_zp,
            act: q.act,
            bounds: Active::act_bounds(q.act),
        }
    }

    /// `clamp(requant(bias + dot) + zp)` for `N` adjacent channels.
    #[inline(always)]
    fn finish<const N: usize>(&self, group: GroupWords<N>, dots: [i32; N]) -> [i8; N] {
        let mut v = [0i32; N];
        for ((v, c), dot) in v.iter_mut().zip(group.channels()).zip(dots) {
            *v = self.unclamped(c, c.bias.wrapping_add(dot));
        }
        Active::clamp(v, self.act, self.bounds)
    }

    /// `requant(acc) + zp` of one channel, before the activation clamp (clamped already
    /// where the general requantizer produced it, which the clamp leaves unchanged).
    #[inline(always)]
    fn unclamped(&self, c: Channel, acc: i32) -> i32 {
        // `e = r - 1` for a right shift `r = -shift`: in `0..SHORT_MAX_RIGHT` exactly
        // when the shift is in `-SHORT_MAX_RIGHT..=-1`.
        let e = !c.shift as u32;
        // `-2^30 <= acc < 2^30`, so `2 acc` fits and the high multiply cannot saturate.
        let acc_fits = acc.wrapping_add(1 << 30) >= 0;
        match self.zp2p1 {
            Some(zp2p1) if e < SHORT_MAX_RIGHT && acc_fits => {
                requant::bounded_unclamped::<Active>(acc.wrapping_shl(1), c.mult, zp2p1 << e, e + 1)
            }
            _ => self.general(c, acc),
        }
    }

    /// The general requantizer, out of line: layers with ordinary constants never take it.
    #[cold]
    #[inline(never)]
    fn general(&self, c: Channel, acc: i32) -> i32 {
        let rq = Requant::new(c.mult, c.shift);
        i32::from(requantize_to_i8(acc, rq, self.zp, self.act))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;
    use crate::le::i32_bytes;

    #[test]
    fn matches_reference_on_random_shapes() {
        let mut rng = Rng::new(0xFC);
        for _ in 0..300 {
            let (n_in, n_out) = (rng.range(0, 200), rng.range(1, 20));
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
            let mut expected = vec![0i8; n_out];
            fully_connected_reference(&qt, &input, &weights, &mut expected);
            assert_eq!(output, expected, "n_in={n_in} n_out={n_out}");
        }
    }

    /// A one-channel layer with these constants, as the kernel sees it.
    fn stage_of(out_zp: i32, act: ActRange) -> Stage {
        Stage::new(&ChannelQuant {
            in_zp: 0,
            out_zp,
            act,
            bias: I32Le::new(&[]),
            mult: I32Le::new(&[]),
            shift: I32Le::new(&[]),
        })
    }

    /// `stage.finish` of `N` channels given as values rather than blob words.
    fn finish_values<const N: usize>(
        stage: &Stage,
        group: [Channel; N],
        dots: [i32; N],
    ) -> [i8; N] {
        let bias = group.map(|c| c.bias.to_le_bytes());
        let mult = group.map(|c| c.mult.to_le_bytes());
        let shift = group.map(|c| c.shift.to_le_bytes());
        let words = GroupWords {
            bias: &bias,
            mult: &mult,
            shift: &shift,
        };
        stage.finish(words, dots)
    }

    /// Every combination of the short stage's edges (accumulator bounds, shift range,
    /// zero points in and out of int8, extreme multipliers, inverted activation ranges)
    /// against the reference, through both finishing widths.
    #[test]
    fn output_stage_matches_reference_at_the_edges() {
        let accs = [
            i32::MIN,
            -(1 << 30) - 1,
            -(1 << 30),
            -(1 << 30) + 1,
            -65_281,
            -1,
            0,
            1,
            65_281,
            (1 << 30) - 1,
            1 << 30,
            i32::MAX,
        ];
        let mults = [i32::MIN, -1, 0, 1, 1 << 30, (1 << 30) + 1, i32::MAX];
        let acts = [
            ActRange::FULL,
            ActRange::from_words(-5, 7),
            ActRange::from_words(9, -9),
        ];
        for shift in -33..=2 {
            for &mult in &mults {
                for zp in [-129, -128, -1, 0, 127, 128, i32::MIN, i32::MAX] {
                    for act in acts {
                        let stage = stage_of(zp, act);
                        let rq = Requant::new(mult, shift);
                        let group = accs.map(|bias| Channel { bias, mult, shift });
                        let expected = accs.map(|acc| requantize_to_i8(acc, rq, zp, act));
                        for (chunk, want) in group.chunks(4).zip(expected.chunks(4)) {
                            let Ok(four) = <[Channel; 4]>::try_from(chunk) else {
                                continue;
                            };
                            let got = finish_values(&stage, four, [0; 4]);
                            assert_eq!(got.as_slice(), want, "rq={rq:?} zp={zp} act={act:?}");
                        }
                        for (c, &want) in group.iter().zip(&expected) {
                            let [got] = finish_values(&stage, [*c], [0]);
                            assert_eq!(got, want, "acc={} rq={rq:?} zp={zp}", c.bias);
                        }
                    }
                }
            }
        }
    }

    /// Random constants and accumulators, mostly inside the short stage's range.
    #[test]
    fn output_stage_matches_reference_on_random_constants() {
        let mut rng = Rng::new(0x5407);
        for _ in 0..50_000 {
            let zp = if rng.range(0, 10) == 0 {
                rng.int(-1000, 1000)
            } else {
                rng.int(-128, 127)
            };
            let act = ActRange::from_words(rng.int(-130, 130), rng.int(-130, 130));
            let stage = stage_of(zp, act);
            let bias = rng.int(-(1 << 29), 1 << 29);
            let dot = match rng.range(0, 3) {
                0 => rng.int(-(1 << 16), 1 << 16),
                1 => rng.int(-(1 << 29), 1 << 29),
                _ => rng.next_u64() as i32,
            };
            let mult = if rng.bool() {
                rng.mult()
            } else {
                rng.next_u64() as i32
            };
            let shift = rng.int(-25, 1);
            let expected =
                requantize_to_i8(bias.wrapping_add(dot), Requant::new(mult, shift), zp, act);
            let [got] = finish_values(&stage, [Channel { bias, mult, shift }], [dot]);
            assert_eq!(
                got, expected,
                "bias={bias} dot={dot} mult={mult} shift={shift} zp={zp}"
            );
        }
    }

    #[test]
    fn groups_decode_the_words_in_step_and_leave_the_rest() {
        let [bias, mult, shift] = [
            [1, -2, 3, -4, 5],
            [10, 20, 30, 40, 50],
            [-1, -2, -3, -4, -5],
        ]
        .map(|v: [i32; 5]| i32_bytes(&v));
        let q = ChannelQuant {
            in_zp: 0,
            out_zp: 0,
            act: ActRange::FULL,
            bias: I32Le::new(&bias),
            mult: I32Le::new(&mult),
            shift: I32Le::new(&shift),
        };
        let decoded = |g: GroupWords<'_, 4>| -> Vec<(i32, i32, i32)> {
            g.channels().map(|c| (c.bias, c.mult, c.shift)).collect()
        };
        let Ok(words) = ChannelWords::new(&q, 5) else {
            panic!("five channels of each word");
        };
        assert!(
            ChannelWords::new(&q, 4).is_err(),
            "a count that is not the arrays' length"
        );
        let (fours, rest) = words.groups::<4>();
        let fours: Vec<_> = fours.map(decoded).collect();
        let first = [(1, 10, -1), (-2, 20, -2), (3, 30, -3), (-4, 40, -4)];
        assert_eq!(fours, [first.to_vec()]);
        let (twos, rest) = rest.groups::<2>();
        assert_eq!(twos.count(), 0);
        let ones: Vec<Vec<(i32, i32, i32)>> = rest
            .groups::<1>()
            .0
            .map(|g| g.channels().map(|c| (c.bias, c.mult, c.shift)).collect())
            .collect();
        assert_eq!(ones, [vec![(5, 50, -5)]]);
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
                let mut one = qt.clone();
                one.n = 1;
                one.bias[0] = qt.bias[o];
                one.mult[0] = qt.mult[o];
                one.shift[0] = qt.shift[o];
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

    #[test]
    fn rejects_wrong_channel_count() {
        let qt = QuantData::random(&mut Rng::new(4), 3);
        let bytes = qt.bytes();
        let p = FullyConnectedParams {
            weights: &[0; 6],
            quant: qt.channel_quant(&bytes),
        };
        assert_eq!(
            fully_connected(&p, &[0; 3], &mut [0; 2]),
            Err(Error::SliceLength {
                what: "per-channel bias/mult/shift"
            })
        );
    }
}
