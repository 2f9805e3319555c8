//! ADD (op 8): TFLite's int8 residual add, with the pruned-branch scatter.
//!
//! When the second input is a pruned tensor it stores only its kept channels; channel `n`
//! of the output adds the stored channel `k` with `kept[k] == n`, and real zero elsewhere.

use super::backend::{Active, Backend};
use super::{check_len, AddParams, In2Channels, Shape};
use crate::error::Error;
use crate::le::U16Le;
use crate::math::{requantize_to_i8, Requant};

impl AddParams {
    #[inline]
    fn scaled(x: i8, zp: i32, left_shift: u32, rq: Requant) -> i32 {
        let shifted = i32::from(x)
            .wrapping_sub(zp)
            .saturating_mul(1i32 << left_shift.min(30));
        rq.apply(shifted)
    }

    /// The sum of one dense pair.
    #[inline]
    fn pair(&self, a: i8, b: i8) -> i8 {
        let sa = Self::scaled(a, self.in1_zp, self.left_shift, self.in1);
        let sb = Self::scaled(b, self.in2_zp, self.left_shift, self.in2);
        self.combine(sa, sb)
    }

    #[inline]
    fn combine(&self, scaled1: i32, scaled2: i32) -> i8 {
        requantize_to_i8(
            scaled1.saturating_add(scaled2),
            self.out,
            self.out_zp,
            self.act,
        )
    }
}

/// Runs ADD. `in1` and `out` have `shape`; `in2` has `shape` (dense) or `shape.h*shape.w*kept.len()`
/// values (scatter).
pub fn add(
    p: &AddParams,
    shape: Shape,
    in1: &[i8],
    in2: &[i8],
    in2_channels: In2Channels,
    out: &mut [i8],
) -> Result<(), Error> {
    check_len(in1.len(), shape.len(), "add input 1")?;
    check_len(out.len(), shape.len(), "add output")?;
    let c = shape.c;
    if c == 0 {
        return Ok(());
    }
    match in2_channels {
        In2Channels::Dense => {
            check_len(in2.len(), shape.len(), "add input 2")?;
            if Active::add_dense(p, in1, in2, out) {
                return Ok(());
            }
            for ((o, &a), &b) in out.iter_mut().zip(in1).zip(in2) {
                *o = p.pair(a, b);
            }
        }
        In2Channels::Scatter(kept) => {
            let k = kept.len();
            check_len(
                in2.len(),
                shape.pixels().and_then(|n| n.checked_mul(k)),
                "add scattered input 2",
            )?;
            if k == 0 {
                for (o, &a) in out.iter_mut().zip(in1) {
                    *o = p.combine(AddParams::scaled(a, p.in1_zp, p.left_shift, p.in1), 0);
                }
                return Ok(());
            }
            let pixels = out
                .chunks_exact_mut(c)
                .zip(in1.chunks_exact(c))
                .zip(in2.chunks_exact(k));
            for ((out_px, in1_px), in2_px) in pixels {
                scatter_pixel(p, out_px, in1_px, in2_px, kept);
            }
        }
    }
    Ok(())
}

/// Which input of a dense ADD its output overwrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddInPlace {
    First,
    Second,
}

/// A dense ADD whose output is one of its inputs: `data` holds that input and receives the
/// sums, `other` is the other input; the bytes are [`add`]'s. A SIMD backend reads its
/// inputs apart from its output, so it gets each chunk through a copy on the stack; the
/// portable loop reads each value before it writes the same place, so it runs in place.
pub fn add_in_place(
    p: &AddParams,
    data: &mut [i8],
    other: &[i8],
    which: AddInPlace,
) -> Result<(), Error> {
    const CHUNK: usize = 256;
    check_len(other.len(), Some(data.len()), "add input 2")?;
    let mut copy = [0i8; CHUNK];
    let mut simd = true;
    for (out, other) in data.chunks_mut(CHUNK).zip(other.chunks(CHUNK)) {
        if simd {
            let own = copy.get_mut(..out.len()).unwrap_or_default();
            own.copy_from_slice(out);
            let (a, b): (&[i8], &[i8]) = match which {
                AddInPlace::First => (own, other),
                AddInPlace::Second => (other, own),
            };
            simd = Active::add_dense(p, a, b, out);
            if simd {
                continue;
            }
        }
        for (o, &x) in out.iter_mut().zip(other) {
            *o = match which {
                AddInPlace::First => p.pair(*o, x),
                AddInPlace::Second => p.pair(x, *o),
            };
        }
    }
    Ok(())
}

fn scatter_pixel(p: &AddParams, out_px: &mut [i8], in1_px: &[i8], in2_px: &[i8], kept: U16Le) {
    let mut stored = kept.iter().zip(in2_px).peekable();
    for (n, (o, &a)) in out_px.iter_mut().zip(in1_px).enumerate() {
        let sa = AddParams::scaled(a, p.in1_zp, p.left_shift, p.in1);
        let sb = match stored.peek() {
            Some(&(idx, &b)) if usize::from(idx) == n => {
                stored.next();
                AddParams::scaled(b, p.in2_zp, p.left_shift, p.in2)
            }
            // A pruned channel contributes real zero, i.e. exactly 0 after scaling.
            _ => 0,
        };
        *o = p.combine(sa, sb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;
    use crate::le::u16_bytes;
    use crate::math::ActRange;

    fn random_params(rng: &mut Rng) -> AddParams {
        AddParams {
            left_shift: 20,
            in1_zp: rng.int(-128, 127),
            in1: Requant::new(rng.int(1 << 30, i32::MAX), rng.int(-3, 0)),
            in2_zp: rng.int(-128, 127),
            in2: Requant::new(rng.int(1 << 30, i32::MAX), rng.int(-3, 0)),
            out: Requant::new(rng.int(1 << 30, i32::MAX), rng.int(-21, -18)),
            out_zp: rng.int(-128, 127),
            act: if rng.bool() {
                ActRange::FULL
            } else {
                ActRange::from_words(rng.int(-128, 0), 127)
            },
        }
    }

    #[test]
    fn in_place_over_either_input_matches_dense() {
        let mut rng = Rng::new(0xADD2);
        for len in [1, 255, 256, 257, 1000] {
            let p = random_params(&mut rng);
            let (a, b) = (rng.i8s(len), rng.i8s(len));
            let mut want = vec![0i8; len];
            add(
                &p,
                Shape::new(1, 1, len),
                &a,
                &b,
                In2Channels::Dense,
                &mut want,
            )
            .unwrap();
            let mut first = a.clone();
            add_in_place(&p, &mut first, &b, AddInPlace::First).unwrap();
            let mut second = b.clone();
            add_in_place(&p, &mut second, &a, AddInPlace::Second).unwrap();
            assert_eq!((first, second), (want.clone(), want));
        }
        let mut short = vec![0i8; 3];
        assert!(add_in_place(
            &random_params(&mut rng),
            &mut short,
            &[0; 2],
            AddInPlace::First
        )
        .is_err());
    }

    #[test]
    fn dense_matches_reference() {
        let mut rng = Rng::new(0xADD);
        for _ in 0..100 {
            let s = Shape::new(rng.range(1, 8), rng.range(1, 8), rng.range(1, 12));
            let p = random_params(&mut rng);
            let (a, b) = (rng.i8s(s.len().unwrap()), rng.i8s(s.len().unwrap()));
            let mut out = vec![0i8; a.len()];
            add(&p, s, &a, &b, In2Channels::Dense, &mut out).unwrap();
            let expected: Vec<i8> = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| add_reference(&p, x, Some(y)))
                .collect();
            assert_eq!(out, expected);
        }
    }

    /// K = N, K = 1 and random subsets (including K = 0).
    #[test]
    fn scatter_matches_reference_for_all_kept_patterns() {
        let mut rng = Rng::new(0x5CA7);
        for case in 0..200 {
            let s = Shape::new(rng.range(1, 6), rng.range(1, 6), rng.range(1, 16));
            let kept: Vec<u16> = match case % 4 {
                0 => (0..s.c as u16).collect(),
                1 => vec![rng.range(0, s.c) as u16],
                2 => (0..s.c as u16).filter(|_| rng.bool()).collect(),
                _ => Vec::new(),
            };
            let p = random_params(&mut rng);
            let a = rng.i8s(s.len().unwrap());
            let b = rng.i8s(s.h * s.w * kept.len());
            let kept_bytes = u16_bytes(&kept);
            let mut out = vec![0i8; a.len()];
            add(
                &p,
                s,
                &a,
                &b,
                In2Channels::Scatter(U16Le::new(&kept_bytes)),
                &mut out,
            )
            .unwrap();
            for px in 0..s.h * s.w {
                for n in 0..s.c {
                    let bv = kept
                        .iter()
                        .position(|&k| usize::from(k) == n)
                        .map(|k| b[px * kept.len() + k]);
                    assert_eq!(
                        out[px * s.c + n],
                        add_reference(&p, a[px * s.c + n], bv),
                        "kept={kept:?}"
                    );
                }
            }
        }
    }
}
