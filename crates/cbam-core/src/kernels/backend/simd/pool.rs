//! MAX_POOL2D with the channels innermost: every window tap is a whole input pixel, and
//! sixteen channels at a time are reduced over the whole window in a register by a
//! lane-wise maximum that LLVM vectorises (SSE4.1/AVX2 `pmaxsb` inside the x86 backend's
//! target features, NEON `smax` on aarch64), instead of one strided walk over the window
//! per channel. Plain Rust: no intrinsics are needed, but each instruction set compiles it
//! with its own features ([`super::Isa::max_pool`]), inlined.

use crate::kernels::pool::window;
use crate::kernels::{PoolKind, PoolParams, Shape};
use crate::math::div_round_half_away;

/// Channels whose maximum one pass over a window keeps in a vector register.
const LANES: usize = 16;

/// Windows of more taps take the portable AVG_POOL2D: up to this many the float quotient
/// of [`round_mean`] rounds exactly.
const MAX_AVG_TAPS: usize = 4096;

/// MAX_POOL2D or AVG_POOL2D over slices already checked against the shapes (dilation
/// 1); `false`, writing nothing, for a case the portable kernel must take (an average
/// over windows past [`MAX_AVG_TAPS`]).
#[inline(always)]
pub(crate) fn pool2d(
    kind: PoolKind,
    p: &PoolParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    let (lo, hi) = (p.act.min, p.act.max);
    let io = (in_shape, input, out_shape, output);
    match kind {
        PoolKind::Max => windows(Max { lo, hi }, p, io),
        PoolKind::Average if p.geometry.kh.saturating_mul(p.geometry.kw) <= MAX_AVG_TAPS => {
            windows(Mean { lo, hi }, p, io)
        }
        PoolKind::Average => false,
    }
}

/// What a pool does with the values of a window, lane by lane.
trait Reduction: Copy {
    type Acc: Copy;
    /// The reduction of no values.
    const START: Self::Acc;
    fn add(acc: Self::Acc, v: i8) -> Self::Acc;
    /// The output byte of the reduction of `count` values, as the vector lanes compute it.
    fn lane(self, acc: Self::Acc, count: usize) -> i8;
    /// The output byte of the reduction of `count` values, as the portable kernel
    /// computes it.
    fn one(self, acc: Self::Acc, count: usize) -> i8;
}

/// MAX_POOL2D, clamped to the activation range.
#[derive(Clone, Copy)]
struct Max {
    lo: i8,
    hi: i8,
}

impl Reduction for Max {
    type Acc = i8;
    // An empty window reduces to i8::MIN, as the portable kernel's does.
    const START: i8 = i8::MIN;

    #[inline(always)]
    fn add(acc: i8, v: i8) -> i8 {
        acc.max(v)
    }

    /// max-then-min like `ActRange::apply`, which never panics on an inverted range.
    #[inline(always)]
    fn lane(self, acc: i8, _: usize) -> i8 {
        acc.max(self.lo).min(self.hi)
    }

    #[inline(always)]
    fn one(self, acc: i8, count: usize) -> i8 {
        self.lane(acc, count)
    }
}

/// AVG_POOL2D: the portable kernel's sum, its rounded quotient by [`round_mean`] in the
/// lanes (where the portable kernel divides channel by channel), clamped.
#[derive(Clone, Copy)]
struct Mean {
    lo: i8,
    hi: i8,
}

impl Reduction for Mean {
    type Acc = i32;
    const START: i32 = 0;

    #[inline(always)]
    fn add(acc: i32, v: i8) -> i32 {
        acc + i32::from(v)
    }

    #[inline(always)]
    fn lane(self, acc: i32, count: usize) -> i8 {
        let q = round_mean(acc, count as f32);
        q.max(self.lo.into()).min(self.hi.into()) as i8
    }

    #[inline(always)]
    fn one(self, acc: i32, count: usize) -> i8 {
        let q = div_round_half_away(acc, i32::try_from(count).unwrap_or(i32::MAX));
        q.max(self.lo.into()).min(self.hi.into()) as i8
    }
}

/// Every output pixel of a pool by `r`. Where the window's last pixel has LANES bytes
/// from a group of channels, the group goes through the whole window at once with its
/// reduction in a register (a reduction stored after every tap would make each tap wait
/// for the previous one's store); a last group of fewer channels reads on into the next
/// pixel and keeps its own lanes. Elsewhere channel by channel.
#[inline(always)]
fn windows<R: Reduction>(
    r: R,
    p: &PoolParams,
    (in_shape, input, out_shape, output): (Shape, &[i8], Shape, &mut [i8]),
) -> bool {
    let (g, c, w) = (&p.geometry, in_shape.c, in_shape.w);
    if c == 0 || in_shape.c != out_shape.c {
        return false;
    }
    let mut out_pixels = output.chunks_exact_mut(c);
    for oy in 0..out_shape.h {
        let (y0, y1) = window(oy * g.stride_h, g.kh, g.pad_top, in_shape.h);
        for ox in 0..out_shape.w {
            let (x0, x1) = window(ox * g.stride_w, g.kw, g.pad_left, in_shape.w);
            let Some(out) = out_pixels.next() else {
                return true;
            };
            let count = (y1 - y0) * (x1 - x0);
            let last = (y1.max(1) - 1) * w + x1.max(1) - 1;
            for (k, out) in out.chunks_mut(LANES).enumerate() {
                let first = k * LANES;
                if count > 0 && last * c + first + LANES <= input.len() {
                    let mut acc = [R::START; LANES];
                    for y in y0..y1 {
                        let mut at = (y * w + x0) * c + first;
                        for _ in x0..x1 {
                            let px = input.get(at..).and_then(<[i8]>::first_chunk::<LANES>);
                            if let Some(v) = px {
                                for (a, &v) in acc.iter_mut().zip(v) {
                                    *a = R::add(*a, v);
                                }
                            }
                            at += c;
                        }
                    }
                    let mut bytes = [0i8; LANES];
                    for (b, &a) in bytes.iter_mut().zip(&acc) {
                        *b = r.lane(a, count);
                    }
                    match out.first_chunk_mut::<LANES>() {
                        Some(out) => *out = bytes,
                        None => {
                            for (o, &b) in out.iter_mut().zip(&bytes) {
                                *o = b;
                            }
                        }
                    }
                } else {
                    for (ch, o) in out.iter_mut().enumerate() {
                        let mut acc = R::START;
                        for y in y0..y1 {
                            for x in x0..x1 {
                                if let Some(&v) = input.get((y * w + x) * c + first + ch) {
                                    acc = R::add(acc, v);
                                }
                            }
                        }
                        *o = r.one(acc, count);
                    }
                }
            }
        }
    }
    true
}

/// `sum / count` rounded half away from zero, as [`div_round_half_away`], for the sum of
/// `count <= MAX_AVG_TAPS` int8 values, in float so that sixteen lanes divide at once.
/// Exact: the quotient `q` is at most 128 in magnitude, so its float has an error below
/// `2^-17`, and adding one half another below `2^-17`; a quotient's fraction is a
/// multiple of `1 / count`, at least `2^-13` away from one half unless it is one half,
/// which the float holds exactly. So `|q| + 1/2` truncates to the right integer.
#[inline(always)]
fn round_mean(sum: i32, count: f32) -> i32 {
    let q = sum as f32 / count;
    let r = (q.abs() + 0.5) as i32;
    if sum < 0 {
        -r
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::{round_mean, MAX_AVG_TAPS};
    use crate::math::div_round_half_away;

    /// [`round_mean`] gives the portable quotient for every window length it takes, at
    /// every quotient an int8 mean can have and on both sides of each rounding edge.
    #[test]
    fn round_mean_matches_the_integer_quotient_at_every_edge() {
        for count in 1..=MAX_AVG_TAPS as i32 {
            let half = count / 2;
            let edges = [
                -half - 1,
                -half,
                1 - half,
                -1,
                0,
                1,
                half - 1,
                half,
                half + 1,
            ];
            for m in -128..=127 {
                for d in edges {
                    let sum = (m * count + d).clamp(-128 * count, 127 * count);
                    assert_eq!(
                        round_mean(sum, count as f32),
                        div_round_half_away(sum, count),
                        "sum={sum} count={count}"
                    );
                }
            }
        }
    }
}
