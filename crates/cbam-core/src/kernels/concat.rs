//! CONCAT (op 10): up to four NHWC tensors joined along the channel axis.

use super::{check_len, ConcatInput};
use crate::error::Error;
use crate::math::{requantize_to_i8, ActRange};

/// Concatenates `inputs` (each `pixels * c_i` values) into `output` (`pixels * sum c_i`).
pub fn concat(
    inputs: &[ConcatInput],
    pixels: usize,
    out_zp: i32,
    output: &mut [i8],
) -> Result<(), Error> {
    let mut out_c = 0usize;
    for inp in inputs {
        check_len(inp.data.len(), pixels.checked_mul(inp.c), "concat input")?;
        out_c = out_c.checked_add(inp.c).ok_or(Error::SliceLength {
            what: "concat channels",
        })?;
    }
    check_len(output.len(), pixels.checked_mul(out_c), "concat output")?;
    if out_c == 0 {
        return Ok(());
    }
    for (px, out_px) in output.chunks_exact_mut(out_c).enumerate() {
        let mut rest = out_px;
        for inp in inputs {
            let (dst, tail) = rest.split_at_mut(inp.c);
            rest = tail;
            let src = &inp.data[px * inp.c..][..inp.c];
            match inp.requant {
                None => dst.copy_from_slice(src),
                Some(rq) => {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = requantize_to_i8(
                            i32::from(s).wrapping_sub(inp.zp),
                            rq,
                            out_zp,
                            ActRange::FULL,
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;
    use crate::math::Requant;

    #[test]
    fn matches_reference_on_random_inputs() {
        let mut rng = Rng::new(0xCA7);
        for _ in 0..200 {
            let pixels = rng.range(1, 30);
            let n = rng.range(1, 5);
            let out_zp = rng.int(-128, 127);
            let owned: Vec<(Vec<i8>, usize, i32, Option<Requant>)> = (0..n)
                .map(|_| {
                    let c = rng.range(1, 6);
                    let rq = if rng.bool() {
                        None
                    } else {
                        Some(Requant::new(rng.mult(), rng.int(-3, 1)))
                    };
                    (rng.i8s(pixels * c), c, rng.int(-128, 127), rq)
                })
                .collect();
            let inputs: Vec<ConcatInput> = owned
                .iter()
                .map(|(d, c, zp, rq)| ConcatInput {
                    data: d,
                    c: *c,
                    zp: *zp,
                    requant: *rq,
                })
                .collect();
            let out_c: usize = owned.iter().map(|o| o.1).sum();
            let mut out = vec![0i8; pixels * out_c];
            concat(&inputs, pixels, out_zp, &mut out).unwrap();
            let mut expected = Vec::new();
            for px in 0..pixels {
                for (d, c, zp, rq) in &owned {
                    for ch in 0..*c {
                        let v = d[px * c + ch];
                        expected.push(match rq {
                            None => v,
                            Some(rq) => finish_reference(
                                i64::from(v) - i64::from(*zp),
                                rq.mult,
                                rq.shift,
                                out_zp,
                                -128,
                                127,
                            ),
                        });
                    }
                }
            }
            assert_eq!(out, expected);
        }
    }
}
