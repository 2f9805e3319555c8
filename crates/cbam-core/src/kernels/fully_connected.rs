//! FULLY_CONNECTED (op 3): the input read as a flat NHWC vector, weights `[n_out][n_in]`.

use super::channel_groups::{for_each_channel, RowLayer};
use super::dot::{dot1, dot4};
use super::{check_len, ChannelQuant};
use crate::error::Error;
use crate::math::requantize_to_i8;

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
    let off = p.quant.in_zp.wrapping_neg();
    // One "pixel" whose n_out outputs are the whole output vector.
    for_each_channel(
        RowLayer {
            quant: &p.quant,
            weights: p.weights,
            per_out: n_in,
            output,
            out_c: n_out,
        },
        || core::iter::once(input),
        |x, rows| dot4(x, rows, off),
        |x, row| dot1(x, row, off),
    );
    Ok(())
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
