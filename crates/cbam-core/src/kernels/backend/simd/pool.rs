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
/// 1); `false`, writing nothing, for a case the portable kernel must take.
#[inline(always)]
pub(crate) fn pool2d(
    kind: PoolKind,
    p: &PoolParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    match kind {
        PoolKind::Max => max_pool(p, in_shape, input, out_shape, output),
        PoolKind::Average => avg_pool(p, in_shape, input, out_shape, output),
    }
}

/// MAX_POOL2D over slices already checked against the shapes (dilation 1).
#[inline(always)]
fn max_pool(
    p: &PoolParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    let (g, c) = (&p.geometry, in_shape.c);
    if c == 0 || in_shape.c != out_shape.c {
        return false;
    }
    let (lo, hi) = (p.act.min, p.act.max);
    let w = in_shape.w;
    let mut out_pixels = output.chunks_exact_mut(c);
    for oy in 0..out_shape.h {
        let (y0, y1) = window(oy * g.stride_h, g.kh, g.pad_top, in_shape.h);
        for ox in 0..out_shape.w {
            let (x0, x1) = window(ox * g.stride_w, g.kw, g.pad_left, in_shape.w);
            let Some(out) = out_pixels.next() else {
                return true;
            };
            // Where the window's last pixel has LANES bytes from each group of channels,
            // sixteen channels at a time over the whole window with the maximum in a
            // register (a maximum stored after every tap would make each tap wait for the
            // previous one's store); a last group of fewer channels reads on into the
            // next pixel and keeps only its own lanes.
            let last = (y1.max(1) - 1) * w + x1.max(1) - 1;
            let whole = y1 > y0 && x1 > x0;
            for (k, out) in out.chunks_mut(LANES).enumerate() {
                let first = k * LANES;
                if whole && last * c + first + LANES <= input.len() {
                    let mut acc = [i8::MIN; LANES];
                    for y in y0..y1 {
                        let mut at = (y * w + x0) * c + first;
                        for _ in x0..x1 {
                            let px = input.get(at..).and_then(<[i8]>::first_chunk::<LANES>);
                            if let Some(v) = px {
                                for (a, &v) in acc.iter_mut().zip(v) {
                                    *a = (*a).max(v);
                                }
                            }
                            at += c;
                        }
                    }
                    // max-then-min like `ActRange::apply`, which never panics on an
                    // inverted range.
                    for a in &mut acc {
                        *a = (*a).max(lo).min(hi);
                    }
                    match out.first_chunk_mut::<LANES>() {
                        Some(out) => *out = acc,
                        None => {
                            for (o, &v) in out.iter_mut().zip(&acc) {
                                *o = v;
                            }
                        }
                    }
                } else {
                    // An empty window reduces to i8::MIN, as the portable kernel's does.
                    out.fill(i8::MIN);
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let px = input.get((y * w + x) * c + first..).unwrap_or_default();
                            for (o, &v) in out.iter_mut().zip(px) {
                                *o = (*o).max(v);
                            }
                        }
                    }
                    for o in out.iter_mut() {
                        *o = (*o).max(lo).min(hi);
                    }
                }
            }
        }
    }
    true
}

/// AVG_POOL2D over slices already checked against the shapes (dilation 1): the portable
/// kernel's sums over the window inside the input, sixteen channels at a time in
/// registers, and its rounded quotients by [`round_mean`] lane by lane, where the portable
/// kernel divides channel by channel. `false` for windows past [`MAX_AVG_TAPS`].
#[inline(always)]
fn avg_pool(
    p: &PoolParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    let (g, c, w) = (&p.geometry, in_shape.c, in_shape.w);
    if c == 0 || in_shape.c != out_shape.c || g.kh.saturating_mul(g.kw) > MAX_AVG_TAPS {
        return false;
    }
    let (lo, hi) = (i32::from(p.act.min), i32::from(p.act.max));
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
            let count_f = count as f32;
            for (k, out) in out.chunks_mut(LANES).enumerate() {
                let first = k * LANES;
                // As in the max pool: a last group of fewer channels reads on into the
                // next pixel and keeps its own lanes.
                if count > 0 && last * c + first + LANES <= input.len() {
                    let mut acc = [0i32; LANES];
                    for y in y0..y1 {
                        let mut at = (y * w + x0) * c + first;
                        for _ in x0..x1 {
                            let px = input.get(at..).and_then(<[i8]>::first_chunk::<LANES>);
                            if let Some(v) = px {
                                for (a, &v) in acc.iter_mut().zip(v) {
                                    *a += i32::from(v);
                                }
                            }
                            at += c;
                        }
                    }
                    let mut bytes = [0i8; LANES];
                    for (b, &sum) in bytes.iter_mut().zip(&acc) {
                        *b = round_mean(sum, count_f).max(lo).min(hi) as i8;
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
                    let count = i32::try_from(count).unwrap_or(i32::MAX);
                    for (ch, o) in out.iter_mut().enumerate() {
                        let mut sum = 0i32;
                        for y in y0..y1 {
                            for x in x0..x1 {
                                let at = (y * w + x) * c + first + ch;
                                sum += input.get(at).copied().map_or(0, i32::from);
                            }
                        }
                        *o = div_round_half_away(sum, count).max(lo).min(hi) as i8;
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
