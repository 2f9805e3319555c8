//! MAX_POOL2D with the channels innermost: every window tap is a whole input pixel, and
//! sixteen channels at a time are reduced over the whole window in a register by a
//! lane-wise maximum that LLVM vectorises (SSE4.1/AVX2 `pmaxsb` inside the x86 backend's
//! target features, NEON `smax` on aarch64), instead of one strided walk over the window
//! per channel. Plain Rust: no intrinsics are needed, but each instruction set compiles it
//! with its own features ([`super::Isa::max_pool`]), inlined.

use crate::kernels::pool::window;
use crate::kernels::{PoolParams, Shape};

/// Channels whose maximum one pass over a window keeps in a vector register.
const LANES: usize = 16;

/// MAX_POOL2D over slices already checked against the shapes (dilation 1).
#[inline(always)]
pub(crate) fn max_pool(
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
