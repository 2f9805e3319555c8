//! CONV2D (op 1): any kernel size, stride, dilation and explicit padding, NHWC, OHWI weights.
//!
//! [`conv2d`] is the wrapper callers use: it offers the whole op to the backend
//! (`Backend::conv2d`), then picks the pointwise path for 1x1 stride-1 unpadded
//! convolutions and the general path otherwise. Both compute four output channels per pass
//! over the input, with the backend's inner products.

use super::backend::{ActBounds, Active, Backend};
use super::channel_groups::{for_each_channel, RowLayer};
use super::requant::OutputStage;
use super::{check_len, Conv2dParams, ConvGeometry, Shape};
use crate::error::Error;

/// Checks every slice against the shapes; afterwards all indexing is in bounds.
fn check(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &[i8],
) -> Result<(), Error> {
    let g = &p.geometry;
    if g.output_size(in_shape.h, in_shape.w) != Some((out_shape.h, out_shape.w)) {
        return Err(Error::SliceLength {
            what: "conv2d output shape vs geometry",
        });
    }
    check_len(input.len(), in_shape.len(), "conv2d input")?;
    check_len(output.len(), out_shape.len(), "conv2d output")?;
    check_len(
        p.weights.len(),
        weights_len(g, in_shape, out_shape),
        "conv2d weights",
    )?;
    p.quant.check(out_shape.c)
}

/// `[out.c][kh][kw][in.c]`.
fn weights_len(g: &ConvGeometry, in_shape: Shape, out_shape: Shape) -> Option<usize> {
    g.kh.checked_mul(g.kw)?
        .checked_mul(in_shape.c)?
        .checked_mul(out_shape.c)
}

/// Runs CONV2D, choosing the fastest bit-exact path for the geometry.
pub fn conv2d(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> Result<(), Error> {
    check(p, in_shape, input, out_shape, output)?;
    if in_shape.c == 0 || out_shape.c == 0 {
        return Ok(());
    }
    if Active::conv2d(p, in_shape, input, out_shape, output) {
        return Ok(());
    }
    if p.geometry.is_pointwise() {
        pointwise(p, in_shape.c, input, out_shape.c, output);
    } else {
        general(p, in_shape, input, out_shape, output);
    }
    Ok(())
}

/// Packs CONV2D's weights once, ahead of its calls, the way this CPU's kernel would pack
/// them on every call. Returns the words that takes, 0 for a layer whose kernel packs
/// nothing (it then needs no buffer), and writes them into `out` only when it holds them
/// all. Calls with the same parameters and shapes read them from
/// [`Conv2dParams::packed`]; a call whose path differs (fewer output rows, another CPU)
/// finds no layout of its own there and packs as before.
pub fn conv2d_packing(
    p: &Conv2dParams,
    in_shape: Shape,
    out_shape: Shape,
    out: &mut [i32],
) -> usize {
    if weights_len(&p.geometry, in_shape, out_shape) != Some(p.weights.len())
        || p.quant.check(out_shape.c).is_err()
    {
        return 0;
    }
    Active::conv2d_packing(p, (in_shape, out_shape), out)
}

/// 1x1, stride 1, unpadded: every output pixel is a matrix-vector product of one input pixel.
// Out of line for the same reason as `windowed`.
#[inline(never)]
pub(crate) fn pointwise(
    p: &Conv2dParams,
    in_c: usize,
    input: &[i8],
    out_c: usize,
    output: &mut [i8],
) {
    let q = &p.quant;
    let off = q.in_zp.wrapping_neg();
    let Some(stages) = q.bounded_stages(q.max_abs_dot(in_c)) else {
        // Constants outside the short requantizer's range (rare): the general path, which
        // has a loop for them, rather than a second copy of this one.
        let pixels = input.len() / in_c.max(1);
        let (in_shape, out_shape) = (Shape::new(1, pixels, in_c), Shape::new(1, pixels, out_c));
        return windowed(p, in_shape, input, out_shape, output, in_c);
    };
    for_each_channel(
        RowLayer {
            act: Active::act_bounds(q.act),
            weights: p.weights,
            per_out: in_c,
            output,
            out_c,
        },
        stages,
        || input.chunks_exact(in_c),
        |px, rows| Active::dot4(px, rows, off),
        |px, row| Active::dot1(px, row, off),
    );
}

/// The taps `k` of one window axis whose input coordinate `start + k * dil - pad` lies in
/// `0..size`, as a half-open range (contiguous because the coordinate grows with `k`).
pub(crate) fn valid_taps(
    start: usize,
    k: usize,
    dil: usize,
    pad: usize,
    size: usize,
) -> (usize, usize) {
    if dil == 1 {
        // The common case, without the divisions.
        let lo = pad.saturating_sub(start).min(k);
        let hi = (pad + size).saturating_sub(start).min(k);
        return (lo, hi.max(lo));
    }
    // First tap at or past the padding: ceil((pad - start) / dil).
    let lo = pad.saturating_sub(start).div_ceil(dil).min(k);
    // Taps with start + k*dil < pad + size.
    let hi = (pad + size).saturating_sub(start).div_ceil(dil).min(k);
    (lo, hi.max(lo))
}

/// The part of one output pixel's window that lies inside the input, as runs of bytes that
/// are contiguous in both the input and every weight row.
struct Window {
    /// Valid kernel rows.
    ky: (usize, usize),
    /// Valid kernel columns.
    kx: (usize, usize),
    /// Input row and column of tap (0, 0), in padded coordinates.
    y0: usize,
    x0: usize,
    /// Bytes per run, and kernel columns per run.
    run: usize,
    step: usize,
}

impl Window {
    fn new(g: &ConvGeometry, in_shape: Shape, oy: usize, ox: usize) -> Self {
        let (y0, x0) = (oy * g.stride_h, ox * g.stride_w);
        let ky = valid_taps(y0, g.kh, g.dil_h, g.pad_top, in_shape.h);
        let kx = valid_taps(x0, g.kw, g.dil_w, g.pad_left, in_shape.w);
        // Without dilation the valid taps of a kernel row are adjacent in both the input
        // row and the weights, so they form one run.
        let (run, step) = if g.dil_w == 1 {
            ((kx.1 - kx.0) * in_shape.c, (kx.1 - kx.0).max(1))
        } else {
            (in_shape.c, 1)
        };
        Self {
            ky,
            kx,
            y0,
            x0,
            run,
            step,
        }
    }

    /// Calls `f(input run, offset of the run in a weight row)` for every run.
    #[inline(always)]
    fn for_each_run<'i>(
        &self,
        g: &ConvGeometry,
        in_shape: Shape,
        input: &'i [i8],
        mut f: impl FnMut(&'i [i8], usize),
    ) {
        for ky in self.ky.0..self.ky.1 {
            let iy = self.y0 + ky * g.dil_h - g.pad_top;
            for kx in (self.kx.0..self.kx.1).step_by(self.step) {
                let ix = self.x0 + kx * g.dil_w - g.pad_left;
                let x = &input[(iy * in_shape.w + ix) * in_shape.c..][..self.run];
                f(x, (ky * g.kw + kx) * in_shape.c);
            }
        }
    }
}

/// Windows of at most this many bytes are gathered into a stack buffer (see
/// [`gathered`]): a 3x3 window of up to 56 channels.
const GATHER_MAX: usize = 512;

/// Windows of at most this many bytes are always gathered.
const GATHER_SMALL: usize = 64;

pub(crate) fn general(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) {
    let g = &p.geometry;
    let per_out = g.kh * g.kw * in_shape.c;
    // Measured on Cortex-M4 (firmware/bench.sh): gathering pays where the runs of a
    // kernel row are short (their per-run overhead dominates) and enough output channels
    // share each gathered window; long runs (32->64 3x3) and single-channel outputs (the
    // CBAM spatial convolution) are faster in place.
    let short_runs = g.kw * in_shape.c < 64 && out_shape.c >= 8;
    if per_out <= GATHER_SMALL || (per_out <= GATHER_MAX && short_runs) {
        let q = &p.quant;
        // Only with the short requantizer: other constants (rare) take `windowed`, which
        // has a loop for them, rather than a second copy of this one.
        if let (Ok(pad), Some(stages)) = (
            i8::try_from(q.in_zp),
            q.bounded_stages(q.max_abs_dot(per_out)),
        ) {
            gathered(p, in_shape, input, out_shape, output, pad, stages);
            return;
        }
    }
    windowed(p, in_shape, input, out_shape, output, per_out);
}

/// Any window: the inner products run over the window's valid runs in place.
// The three paths stay out of line: inlined together, the hot loops get a worse register
// allocation on Cortex-M4, and a caller's constant shapes (the benchmark's) would be folded
// into them where the runtime's, read from the blob, are not.
#[inline(never)]
fn windowed(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    per_out: usize,
) {
    let g = &p.geometry;
    let q = &p.quant;
    let off = q.in_zp.wrapping_neg();
    let (out_h, out_w) = (out_shape.h, out_shape.w);
    with_stages!(q, q.max_abs_dot(per_out), |stages| {
        for_each_channel(
            RowLayer {
                act: Active::act_bounds(q.act),
                weights: p.weights,
                per_out,
                output,
                out_c: out_shape.c,
            },
            stages,
            || (0..out_h).flat_map(move |oy| (0..out_w).map(move |ox| (oy, ox))),
            // Written out here rather than in helpers: the macro compiles each closure
            // once per stage kind, so each copy is called from one place and inlined.
            |(oy, ox), rows| {
                let win = Window::new(g, in_shape, oy, ox);
                let mut acc = [0i32; 4];
                win.for_each_run(g, in_shape, input, |x, at| {
                    let w = rows.map(|r| &r[at..][..win.run]);
                    for (a, v) in acc.iter_mut().zip(Active::dot4(x, w, off)) {
                        *a = a.wrapping_add(v);
                    }
                });
                acc
            },
            |(oy, ox), row| {
                let win = Window::new(g, in_shape, oy, ox);
                let mut acc = 0i32;
                win.for_each_run(g, in_shape, input, |x, at| {
                    acc = acc.wrapping_add(Active::dot1(x, &row[at..][..win.run], off));
                });
                acc
            },
        )
    });
}

/// Small windows (few input channels, e.g. a first layer on a grey image): each window is
/// copied into one contiguous stack buffer with padding taps set to the input zero point,
/// whose `(x - zp) * w` is exactly 0. One inner product per output channel then replaces
/// `kh` short runs that would be mostly loop overhead.
// Out of line for the same reasons as `windowed`.
#[inline(never)]
fn gathered<S: OutputStage>(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    pad: i8,
    mut quant: impl Iterator<Item = S>,
) {
    let g = &p.geometry;
    let off = p.quant.in_zp.wrapping_neg();
    let per_out = g.kh * g.kw * in_shape.c;
    let (out_h, out_w) = (out_shape.h, out_shape.w);
    let in_c = in_shape.c;
    let run = g.kw * in_c;
    let row_step = g.dil_h * in_shape.w * in_c;
    let span_h = (g.kh - 1) * g.dil_h;
    let gather = |buf: &mut [i8; GATHER_MAX], oy: usize, ox: usize| {
        let (y0, x0) = (oy * g.stride_h, ox * g.stride_w);
        if let (Some(iy), Some(ix), 1) = (
            unpad(y0, g.pad_top, in_shape.h.saturating_sub(span_h)),
            unpad(x0, g.pad_left, (in_shape.w + 1).saturating_sub(g.kw)),
            g.dil_w,
        ) {
            // A whole window without horizontal dilation: one run per kernel row.
            let mut at = (iy * in_shape.w + ix) * in_c;
            for dst in buf.chunks_exact_mut(run).take(g.kh) {
                if let Some(src) = input.get(at..at + run) {
                    copy_run(dst, src);
                }
                at += row_step;
            }
            return;
        }
        let mut taps = buf.chunks_exact_mut(in_c);
        for ky in 0..g.kh {
            let iy = unpad(oy * g.stride_h + ky * g.dil_h, g.pad_top, in_shape.h);
            for kx in 0..g.kw {
                let ix = unpad(ox * g.stride_w + kx * g.dil_w, g.pad_left, in_shape.w);
                let src = match (iy, ix) {
                    (Some(iy), Some(ix)) => input.get((iy * in_shape.w + ix) * in_c..),
                    _ => None,
                };
                let Some(dst) = taps.next() else {
                    return;
                };
                match src.and_then(|s| s.get(..in_c)) {
                    Some(src) => copy_run(dst, src),
                    None => {
                        for d in dst.iter_mut() {
                            *d = pad;
                        }
                    }
                }
            }
        }
    };
    let out_c = out_shape.c;
    let mut buf = [0i8; GATHER_MAX];
    let act = Active::act_bounds(p.quant.act);
    let Some(placeholder) = quant.next() else {
        return;
    };
    let mut stages = [placeholder; GATHER_BLOCK];
    // Channel blocks outside, pixels inside: each window is gathered once per block
    // instead of once per group of four, with the block's requantizers decoded up front.
    for (block, weights) in p.weights.chunks(GATHER_BLOCK * per_out).enumerate() {
        let first = block * GATHER_BLOCK;
        let n = weights.len() / per_out;
        for (i, stage) in stages.iter_mut().take(n).enumerate() {
            // The first channel's stage was taken out for the placeholder.
            let next = if block == 0 && i == 0 {
                Some(placeholder)
            } else {
                quant.next()
            };
            let Some(next) = next else {
                return;
            };
            *stage = next;
        }
        let mut out_pixels = output.chunks_exact_mut(out_c);
        for oy in 0..out_h {
            for ox in 0..out_w {
                let Some(outs) = out_pixels
                    .next()
                    .and_then(|px| px.get_mut(first..first + n))
                else {
                    return;
                };
                gather(&mut buf, oy, ox);
                let x = buf.get(..per_out).unwrap_or_default();
                block_outputs(x, (weights, per_out), off, (&stages, act), outs);
            }
        }
    }
}

/// `dst = src[..dst.len()]` (nothing when `src` is shorter), a word at a time: the runs
/// are too short for a `memcpy` call to pay.
#[inline(always)]
fn copy_run(dst: &mut [i8], src: &[i8]) {
    let Some(src) = src.get(..dst.len()) else {
        return;
    };
    let (dw, dt) = dst.as_chunks_mut::<4>();
    let (sw, st) = src.as_chunks::<4>();
    for (d, s) in dw.iter_mut().zip(sw) {
        *d = *s;
    }
    for (d, &v) in dt.iter_mut().zip(st) {
        *d = v;
    }
}

/// Channels per block of [`gathered`]: one gathered window serves up to 32 output
/// channels (16->32 3x3 measured 2.09 instructions per MAC on Cortex-M4 against 2.21 with
/// blocks of 16). With the window buffer, about 1.7 KB of stack.
const GATHER_BLOCK: usize = 32;

/// One pixel's outputs of a channel block: `x` against every row of `weights`, four rows
/// at a time, each requantized by its stage into `outs`.
#[inline(always)]
fn block_outputs<S: OutputStage>(
    x: &[i8],
    (weights, per_out): (&[i8], usize),
    off: i32,
    (stages, act): (&[S; GATHER_BLOCK], ActBounds),
    outs: &mut [i8],
) {
    let mut groups = weights.chunks_exact(4 * per_out);
    let mut out_groups = outs.chunks_exact_mut(4);
    for ((group, out), st) in (&mut groups)
        .zip(&mut out_groups)
        .zip(stages.chunks_exact(4))
    {
        let mut rows = group.chunks_exact(per_out);
        let (Some(r0), Some(r1), Some(r2), Some(r3)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        else {
            return;
        };
        let rows = [r0, r1, r2, r3];
        // The single-pass product pays for its set-up from a few words on.
        let acc = if per_out >= 16 {
            Active::dot4(x, rows, off)
        } else {
            Active::dot4_short(x, rows, off)
        };
        if let (Some(st), Some(out)) = (st.first_chunk::<4>(), out.first_chunk_mut::<4>()) {
            *out = S::finish4(st, acc, act);
        }
    }
    let whole = weights.len() / per_out / 4 * 4;
    let rest = groups.remainder().chunks_exact(per_out);
    let rest_stages = stages.get(whole..).unwrap_or_default();
    for ((row, o), stage) in rest.zip(out_groups.into_remainder()).zip(rest_stages) {
        *o = stage.finish(Active::dot1(x, row, off));
    }
}

/// Maps a padded-space coordinate to an input row/column, or `None` inside the padding.
#[inline]
fn unpad(padded: usize, pad: usize, size: usize) -> Option<usize> {
    padded.checked_sub(pad).filter(|&i| i < size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;

    fn run_case(rng: &mut Rng, pointwise: bool) {
        let g = if pointwise {
            ConvGeometry::square(1, 0)
        } else {
            ConvGeometry {
                kh: rng.range(1, 5),
                kw: rng.range(1, 5),
                stride_h: rng.range(1, 3),
                stride_w: rng.range(1, 3),
                dil_h: rng.range(1, 3),
                dil_w: rng.range(1, 3),
                pad_top: rng.range(0, 3),
                pad_left: rng.range(0, 3),
                pad_bottom: rng.range(0, 3),
                pad_right: rng.range(0, 3),
            }
        };
        let ins = Shape::new(rng.range(1, 10), rng.range(1, 10), rng.range(1, 9));
        let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
            return;
        };
        // Past 16 output channels the small-window path works in several blocks.
        let outs = Shape::new(oh, ow, rng.range(1, 36));
        let input = rng.i8s(ins.len().unwrap());
        let weights = rng.i8s(outs.c * g.kh * g.kw * ins.c);
        let qt = QuantData::random(rng, outs.c);
        let bytes = qt.bytes();
        let p = Conv2dParams {
            packed: &[],
            geometry: g,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut output = vec![0i8; outs.len().unwrap()];
        conv2d(&p, ins, &input, outs, &mut output).unwrap();
        let mut expected = vec![0i8; output.len()];
        conv2d_reference(&g, &qt, (ins, &input), &weights, (outs, &mut expected));
        assert_eq!(output, expected, "{g:?} {ins:?} {outs:?}");
    }

    #[test]
    fn general_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(0xC0417);
        for _ in 0..300 {
            run_case(&mut rng, false);
        }
    }

    #[test]
    fn pointwise_matches_reference() {
        let mut rng = Rng::new(0x1A1);
        for _ in 0..100 {
            run_case(&mut rng, true);
        }
    }

    #[test]
    fn rejects_inconsistent_slices() {
        let qt = QuantData::random(&mut Rng::new(1), 2);
        let bytes = qt.bytes();
        let w = [0i8; 2 * 9];
        let p = Conv2dParams {
            packed: &[],
            geometry: ConvGeometry::square(3, 1),
            weights: &w,
            quant: qt.channel_quant(&bytes),
        };
        let mut out = [0i8; 16 * 2];
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 1),
            &[0; 16],
            Shape::new(4, 4, 2),
            &mut out
        )
        .is_ok());
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 1),
            &[0; 15],
            Shape::new(4, 4, 2),
            &mut out
        )
        .is_err());
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 1),
            &[0; 16],
            Shape::new(3, 4, 2),
            &mut out
        )
        .is_err());
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 2),
            &[0; 32],
            Shape::new(4, 4, 2),
            &mut out
        )
        .is_err());
    }
}
