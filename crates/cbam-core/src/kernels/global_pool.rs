//! GLOBAL_AVG_POOL (op 6) and GLOBAL_MAX_POOL (op 7): one value per channel.

use super::backend::{Active, Backend};
use super::{check_len, GlobalAvgPoolParams, Shape};
use crate::error::Error;
use crate::math::{requantize_to_i8, ActRange};

/// Iterates channel `ch`'s values of an NHWC map with `c` channels.
fn channel(input: &[i8], c: usize, ch: usize) -> impl Iterator<Item = i32> + '_ {
    input
        .iter()
        .skip(ch)
        .step_by(c.max(1))
        .map(|&v| i32::from(v))
}

/// `out[c] = clamp(requant(sum(in - in_zp)) + out_zp)`; `output.len()` is the channel count.
pub fn global_avg_pool(
    p: &GlobalAvgPoolParams,
    in_shape: Shape,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    check_len(input.len(), in_shape.len(), "global_avg_pool input")?;
    check_len(output.len(), Some(in_shape.c), "global_avg_pool output")?;
    // The sum of `v - in_zp` over `n` pixels wraps to `sum(v) - n * in_zp`.
    let zp_sum = p
        .in_zp
        .wrapping_mul(in_shape.h.wrapping_mul(in_shape.w) as i32);
    let fast = Active::channel_totals(input, in_shape.c, |ch, sum, _| {
        if let Some(out) = output.get_mut(ch) {
            let sum = sum.wrapping_sub(zp_sum);
            *out = requantize_to_i8(sum, p.requant, p.out_zp, ActRange::FULL);
        }
    });
    if fast {
        return Ok(());
    }
    for (ch, out) in output.iter_mut().enumerate() {
        let sum = channel(input, in_shape.c, ch)
            .fold(0i32, |s, v| s.wrapping_add(v.wrapping_sub(p.in_zp)));
        *out = requantize_to_i8(sum, p.requant, p.out_zp, ActRange::FULL);
    }
    Ok(())
}

/// `out[c] = max over pixels of in[.., c]`; `output.len()` is the channel count.
pub fn global_max_pool(in_shape: Shape, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    check_len(input.len(), in_shape.len(), "global_max_pool input")?;
    check_len(output.len(), Some(in_shape.c), "global_max_pool output")?;
    let fast = Active::channel_totals(input, in_shape.c, |ch, _, max| {
        if let Some(out) = output.get_mut(ch) {
            *out = max;
        }
    });
    if fast {
        return Ok(());
    }
    for (ch, out) in output.iter_mut().enumerate() {
        *out = channel(input, in_shape.c, ch)
            .max()
            .unwrap_or(i32::from(i8::MIN)) as i8;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;
    use crate::math::Requant;

    #[test]
    fn match_reference_on_random_shapes() {
        let mut rng = Rng::new(0x6A9);
        for _ in 0..200 {
            let s = Shape::new(rng.range(1, 16), rng.range(1, 16), rng.range(1, 20));
            let input = rng.i8s(s.len().unwrap());
            let p = GlobalAvgPoolParams {
                requant: Requant::new(rng.mult(), rng.int(-12, 0)),
                in_zp: rng.int(-128, 127),
                out_zp: rng.int(-128, 127),
            };
            let mut avg = vec![0i8; s.c];
            let mut max = vec![0i8; s.c];
            global_avg_pool(&p, s, &input, &mut avg).unwrap();
            global_max_pool(s, &input, &mut max).unwrap();
            for ch in 0..s.c {
                let vals: Vec<i64> = (0..s.h * s.w)
                    .map(|px| i64::from(input[px * s.c + ch]))
                    .collect();
                let sum: i64 = vals.iter().map(|v| v - i64::from(p.in_zp)).sum();
                assert_eq!(
                    avg[ch],
                    finish_reference(sum, p.requant.mult, p.requant.shift, p.out_zp, -128, 127)
                );
                assert_eq!(i64::from(max[ch]), *vals.iter().max().unwrap());
            }
        }
    }
}
