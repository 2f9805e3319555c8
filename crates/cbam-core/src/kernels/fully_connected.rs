//! FULLY_CONNECTED (op 3): the input read as a flat NHWC vector, weights `[n_out][n_in]`.

use super::dot::{dot1, dot4};
use super::requant::{BoundedStage, OutputStage};
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
        // Only the bias remains; chunks_exact(0) would panic.
        for (out, (bias, rq)) in output.iter_mut().zip(p.quant.channels()) {
            *out = requantize_to_i8(bias, rq, p.quant.out_zp, p.quant.act);
        }
        return Ok(());
    }
    rows_times_vector(&p.quant, p.weights, input, output);
    Ok(())
}

/// `output[o] = finish_o(dot(input, row o))` over the rows of `weights`, four at a time.
///
/// With a single "pixel" there is no loop to hoist the output stages out of, so each
/// channel builds its own as it is needed: the short [`BoundedStage`] where it qualifies,
/// else the general requantizer (both give the same bits).
fn rows_times_vector(q: &ChannelQuant, weights: &[i8], input: &[i8], output: &mut [i8]) {
    let n_in = input.len();
    let off = q.in_zp.wrapping_neg();
    let max_dot = q.max_abs_dot(n_in);
    // Indexed words rather than the zipped iterators: cheaper per channel here.
    let finish = |o: usize, dot: i32| {
        let (Some(bias), Some(mult), Some(shift)) = (q.bias.get(o), q.mult.get(o), q.shift.get(o))
        else {
            return 0;
        };
        let rq = Requant::new(mult, shift);
        match BoundedStage::new(bias, rq, q.out_zp, q.act, max_dot) {
            Some(stage) => stage.finish(dot),
            None => requantize_to_i8(bias.wrapping_add(dot), rq, q.out_zp, q.act),
        }
    };
    let mut groups = weights.chunks_exact(4 * n_in);
    let mut out_groups = output.chunks_exact_mut(4);
    let mut o = 0;
    for (group, outs) in (&mut groups).zip(&mut out_groups) {
        let mut rows = group.chunks_exact(n_in);
        let (Some(r0), Some(r1), Some(r2), Some(r3)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        else {
            return;
        };
        for (out, dot) in outs.iter_mut().zip(dot4(input, [r0, r1, r2, r3], off)) {
            *out = finish(o, dot);
            o += 1;
        }
    }
    let rest = groups.remainder().chunks_exact(n_in);
    for (row, out) in rest.zip(out_groups.into_remainder()) {
        *out = finish(o, dot1(input, row, off));
        o += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;

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
