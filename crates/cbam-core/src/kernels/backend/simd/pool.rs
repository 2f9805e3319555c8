//! MAX_POOL2D with the channels innermost: every window tap is a whole input pixel, taken
//! into the output pixel by a lane-wise maximum that LLVM vectorises (SSE2 compare and
//! select on baseline x86_64, NEON `smax` on aarch64), instead of one strided walk over
//! the window per channel. Plain Rust: no intrinsics are needed, but each instruction set
//! compiles it with its own features ([`super::Isa::max_pool`]), inlined.

use crate::kernels::pool::window;
use crate::kernels::{PoolParams, Shape};

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
    let mut out_pixels = output.chunks_exact_mut(c);
    for oy in 0..out_shape.h {
        let (y0, y1) = window(oy * g.stride_h, g.kh, g.pad_top, in_shape.h);
        for ox in 0..out_shape.w {
            let (x0, x1) = window(ox * g.stride_w, g.kw, g.pad_left, in_shape.w);
            let Some(out) = out_pixels.next() else {
                return true;
            };
            // An empty window reduces to i8::MIN, as the portable kernel's does.
            out.fill(i8::MIN);
            for y in y0..y1 {
                let row = input.get((y * in_shape.w + x0) * c..(y * in_shape.w + x1) * c);
                for px in row.unwrap_or_default().chunks_exact(c) {
                    for (o, &v) in out.iter_mut().zip(px) {
                        *o = (*o).max(v);
                    }
                }
            }
            // max-then-min like `ActRange::apply`, which never panics on an inverted range.
            for o in out.iter_mut() {
                *o = (*o).max(lo).min(hi);
            }
        }
    }
    true
}
