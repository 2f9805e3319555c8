//! CHANNEL_POOL (op 14): per pixel, the mean and/or the maximum over the channels, in the
//! input's quantization: step 5 of the fused CBAM op on its own, for spatial attention
//! that is not a recognised CBAM block. One pass over the map gives both statistics, so
//! a `[mean; max]` (or `[max; mean]`) map costs one read of the tensor, not two.

use super::backend::{Active, Backend};
use super::{check_len, ChannelPoolParams, Shape};
use crate::error::Error;
use crate::math::mean_level;

/// Runs CHANNEL_POOL over NHWC int8 (no scratch): `output` is `(h, w, out_channels)`.
pub fn channel_pool(
    p: &ChannelPoolParams,
    in_shape: Shape,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let (c, out_c) = (in_shape.c, p.out_channels());
    if c == 0 || !p.is_consistent() {
        return Err(Error::SliceLength {
            what: "channel pool channels",
        });
    }
    check_len(input.len(), in_shape.len(), "channel pool input")?;
    let out_len = in_shape.pixels().and_then(|n| n.checked_mul(out_c));
    check_len(output.len(), out_len, "channel pool output")?;
    if Active::channel_pool(p, in_shape, input, output) {
        return Ok(());
    }
    let count = i32::try_from(c).unwrap_or(i32::MAX);
    for (px, out) in input.chunks_exact(c).zip(output.chunks_exact_mut(out_c)) {
        let (sum, top) = px.iter().fold((0i32, i8::MIN), |(sum, top), &v| {
            (sum.wrapping_add(i32::from(v)), top.max(v))
        });
        if let Some(slot) = p.mean.and_then(|i| out.get_mut(i)) {
            *slot = mean_level(sum, count, p.zp);
        }
        if let Some(slot) = p.max.and_then(|i| out.get_mut(i)) {
            *slot = top;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{channel_pool_reference, Rng};

    /// Every layout the words allow: one statistic, or both in either order.
    const LAYOUTS: [(Option<usize>, Option<usize>); 4] = [
        (Some(0), Some(1)),
        (Some(1), Some(0)),
        (Some(0), None),
        (None, Some(0)),
    ];

    #[test]
    fn matches_the_reference_on_random_maps() {
        let mut rng = Rng::new(0xC4A9);
        for case in 0..400 {
            let (mean, max) = LAYOUTS[case % LAYOUTS.len()];
            let p = ChannelPoolParams {
                mean,
                max,
                zp: if case % 3 == 0 {
                    -128
                } else {
                    rng.int(-128, 127)
                },
            };
            let s = Shape::new(rng.range(1, 9), rng.range(1, 9), rng.range(1, 300));
            let input = rng.i8s(s.len().unwrap());
            let n = s.pixels().unwrap() * p.out_channels();
            let (mut got, mut want) = (vec![0i8; n], vec![0i8; n]);
            channel_pool(&p, s, &input, &mut got).unwrap();
            channel_pool_reference(&p, (s, &input), &mut want);
            assert_eq!(got, want, "{p:?} {s:?}");
        }
    }

    #[test]
    fn means_round_half_away_from_the_zero_point() {
        let both = ChannelPoolParams {
            mean: Some(0),
            max: Some(1),
            zp: 0,
        };
        // Two pixels of two channels: means 1.5 and -1.5, maxima 2 and -1.
        let mut out = [0i8; 4];
        channel_pool(&both, Shape::new(1, 2, 2), &[1, 2, -1, -2], &mut out).unwrap();
        assert_eq!(out, [2, 2, -2, -1]);
        // Levels 0 and 1 average to 0.5 levels: away from zero point 0 that is 1, away
        // from zero point 1 (real values -1 and 0 steps) it is 0.
        channel_pool(&both, Shape::new(1, 1, 2), &[0, 1], &mut out[..2]).unwrap();
        assert_eq!(out[..2], [1, 1]);
        let zp_one = ChannelPoolParams { zp: 1, ..both };
        channel_pool(&zp_one, Shape::new(1, 1, 2), &[0, 1], &mut out[..2]).unwrap();
        assert_eq!(out[..2], [0, 1]);
    }

    #[test]
    fn one_statistic_fills_the_only_output_channel() {
        let input = [5i8, -7, 9, 0, 0, 1];
        let mut out = [0i8; 2];
        let mean = ChannelPoolParams {
            mean: Some(0),
            max: None,
            zp: -1,
        };
        channel_pool(&mean, Shape::new(1, 2, 3), &input, &mut out).unwrap();
        // Centred on -1: 10 / 3 rounds to 3, back to level 2; 4 / 3 to 1, level 0.
        assert_eq!(out, [2, 0]);
        let max = ChannelPoolParams {
            mean: None,
            max: Some(0),
            zp: -1,
        };
        channel_pool(&max, Shape::new(1, 2, 3), &input, &mut out).unwrap();
        assert_eq!(out, [9, 1]);
    }

    #[test]
    fn inconsistent_parameters_and_slices_are_errors() {
        let s = Shape::new(2, 2, 3);
        let input = [0i8; 12];
        let mut out = [0i8; 8];
        let bad = |mean, max| ChannelPoolParams { mean, max, zp: 0 };
        for p in [
            bad(None, None),
            bad(Some(0), Some(0)),
            bad(Some(1), None),
            bad(Some(2), Some(0)),
        ] {
            assert!(channel_pool(&p, s, &input, &mut out).is_err(), "{p:?}");
        }
        let good = bad(Some(0), Some(1));
        assert!(channel_pool(&good, s, &input[1..], &mut out).is_err());
        assert!(channel_pool(&good, s, &input, &mut out[1..]).is_err());
        assert!(channel_pool(&good, Shape::new(2, 2, 0), &[], &mut out).is_err());
        assert!(channel_pool(&good, s, &input, &mut out).is_ok());
    }
}
