//! MUL (op 9): elementwise product of two int8 tensors, the second possibly broadcast.

use super::{check_len, MulBroadcast, MulParams, Shape};
use crate::error::Error;
use crate::math::requantize_to_i8;

/// Runs MUL over `in1` of `shape`, writing `out` of the same shape.
pub fn mul(
    p: &MulParams,
    shape: Shape,
    in1: &[i8],
    in2: &[i8],
    broadcast: MulBroadcast,
    out: &mut [i8],
) -> Result<(), Error> {
    check_len(in1.len(), shape.len(), "mul input 1")?;
    check_len(out.len(), shape.len(), "mul output")?;
    let in2_len = match broadcast {
        MulBroadcast::None => shape.len(),
        MulBroadcast::PerChannel => Some(shape.c),
        MulBroadcast::PerPixel => shape.pixels(),
    };
    check_len(in2.len(), in2_len, "mul input 2")?;
    let c = shape.c;
    if c == 0 {
        return Ok(());
    }
    let one = |a: i8, b: i8| {
        let prod = i32::from(a)
            .wrapping_sub(p.in1_zp)
            .wrapping_mul(i32::from(b).wrapping_sub(p.in2_zp));
        requantize_to_i8(prod, p.out, p.out_zp, p.act)
    };
    match broadcast {
        MulBroadcast::None => {
            for ((o, &a), &b) in out.iter_mut().zip(in1).zip(in2) {
                *o = one(a, b);
            }
        }
        MulBroadcast::PerChannel => {
            for (out_px, in_px) in out.chunks_exact_mut(c).zip(in1.chunks_exact(c)) {
                for ((o, &a), &b) in out_px.iter_mut().zip(in_px).zip(in2) {
                    *o = one(a, b);
                }
            }
        }
        MulBroadcast::PerPixel => {
            for ((out_px, in_px), &b) in out.chunks_exact_mut(c).zip(in1.chunks_exact(c)).zip(in2) {
                for (o, &a) in out_px.iter_mut().zip(in_px) {
                    *o = one(a, b);
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
    use crate::math::{ActRange, Requant};

    #[test]
    fn matches_reference_for_every_broadcast() {
        let mut rng = Rng::new(0x4D11);
        for case in 0..300 {
            // c >= 2 and h*w >= 2: with a single channel or pixel the broadcasts coincide with
            // the plain case and `classify` rightly picks the plain one.
            let s = Shape::new(rng.range(2, 7), rng.range(1, 7), rng.range(2, 10));
            let (bc, s2) = match case % 3 {
                0 => (MulBroadcast::None, s),
                1 => (MulBroadcast::PerChannel, Shape::new(1, 1, s.c)),
                _ => (MulBroadcast::PerPixel, Shape::new(s.h, s.w, 1)),
            };
            assert_eq!(MulBroadcast::classify(s, s2), Some(bc));
            let p = MulParams {
                in1_zp: rng.int(-128, 127),
                in2_zp: rng.int(-128, 127),
                out: Requant::new(rng.mult(), rng.int(-14, -4)),
                out_zp: rng.int(-128, 127),
                act: ActRange::from_words(rng.int(-128, -100), 127),
            };
            let a = rng.i8s(s.len().unwrap());
            let b = rng.i8s(s2.len().unwrap());
            let mut out = vec![0i8; a.len()];
            mul(&p, s, &a, &b, bc, &mut out).unwrap();
            for y in 0..s.h {
                for x in 0..s.w {
                    for ch in 0..s.c {
                        let i = (y * s.w + x) * s.c + ch;
                        let j = match bc {
                            MulBroadcast::None => i,
                            MulBroadcast::PerChannel => ch,
                            MulBroadcast::PerPixel => y * s.w + x,
                        };
                        let prod = (i64::from(a[i]) - i64::from(p.in1_zp))
                            * (i64::from(b[j]) - i64::from(p.in2_zp));
                        let e = finish_reference(
                            prod,
                            p.out.mult,
                            p.out.shift,
                            p.out_zp,
                            p.act.min.into(),
                            p.act.max.into(),
                        );
                        assert_eq!(out[i], e, "{bc:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn classify_rejects_other_shapes() {
        assert_eq!(
            MulBroadcast::classify(Shape::new(2, 2, 3), Shape::new(2, 1, 3)),
            None
        );
    }
}
