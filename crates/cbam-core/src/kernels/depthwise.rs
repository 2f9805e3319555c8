//! DEPTHWISE_CONV2D (op 2): each output channel `o` filters input channel `o / multiplier`.

use super::backend::{ActBounds, Active, Backend};
use super::conv2d::valid_taps;
use super::requant::OutputStage;
use super::{check_len, ConvGeometry, DepthwiseParams, Shape};
use crate::error::Error;

fn check(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &[i8],
) -> Result<(), Error> {
    let g = &p.geometry;
    if g.output_size(in_shape.h, in_shape.w) != Some((out_shape.h, out_shape.w))
        || in_shape.c.checked_mul(p.depth_multiplier) != Some(out_shape.c)
    {
        return Err(Error::SliceLength {
            what: "depthwise output shape vs geometry",
        });
    }
    check_len(input.len(), in_shape.len(), "depthwise input")?;
    check_len(output.len(), out_shape.len(), "depthwise output")?;
    let wlen =
        g.kh.checked_mul(g.kw)
            .and_then(|k| k.checked_mul(out_shape.c));
    check_len(p.weights.len(), wlen, "depthwise weights")?;
    p.quant.check(out_shape.c)
}

/// Runs DEPTHWISE_CONV2D (no scratch).
pub fn depthwise_conv2d(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> Result<(), Error> {
    check(p, in_shape, input, out_shape, output)?;
    if out_shape.c == 0 || Active::depthwise(p, in_shape, input, out_shape, output) {
        return Ok(());
    }
    let q = &p.quant;
    // The fast path with the short requantizer only; other constants (rare) take the
    // general loop rather than a second copy of it.
    match q.bounded_stages(q.max_abs_dot(p.geometry.kh * p.geometry.kw)) {
        Some(stages) if p.depth_multiplier == 1 => {
            multiplier_one(p, in_shape, input, out_shape, output, stages)
        }
        _ => any_multiplier(p, in_shape, input, out_shape, output),
    }
    Ok(())
}

/// The valid kernel rows and columns of output pixel `(oy, ox)`.
fn taps(g: &ConvGeometry, in_shape: Shape, oy: usize, ox: usize) -> [(usize, usize); 2] {
    [
        valid_taps(oy * g.stride_h, g.kh, g.dil_h, g.pad_top, in_shape.h),
        valid_taps(ox * g.stride_w, g.kw, g.dil_w, g.pad_left, in_shape.w),
    ]
}

/// Depth multiplier 1 (the common case): channel `o` reads input channel `o`, so four
/// adjacent channels are four adjacent bytes in both the input and the weights. Channels
/// are the outer loop so that each one's requantizer is decoded once per layer.
// Out of line so that no caller's constant shapes are folded into it: the runtime's shapes
// come from the blob (and the benchmark measures what the runtime gets).
#[inline(never)]
fn multiplier_one<S: OutputStage>(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    mut quant: impl Iterator<Item = S>,
) {
    let c = out_shape.c;
    let off = p.quant.in_zp.wrapping_neg();
    let mut first = 0;
    while first + 4 <= c {
        let (Some(q0), Some(q1), Some(q2), Some(q3)) =
            (quant.next(), quant.next(), quant.next(), quant.next())
        else {
            return;
        };
        let stages = Stages4 {
            stages: [q0, q1, q2, q3],
            act: Active::act_bounds(p.quant.act),
        };
        let interior = Interior::new(&p.geometry, in_shape, out_shape);
        // The border pixels here, the (many more) interior ones below.
        let group = Group {
            first,
            stages: &stages,
        };
        if border_3x3(p, in_shape, input, out_shape, output, &interior, &group) {
            interior_group(p, in_shape, input, &interior, output, first, &stages);
            first += 4;
            continue;
        }
        for_each_tap_set(p, in_shape, out_shape, output, &interior, |taps, out_px| {
            let mut acc = [0i32; 4];
            taps.for_each_row(|x_at, w_at, n| {
                let x = input.get(x_at + first..).unwrap_or(&[]);
                let w = p.weights.get(w_at + first..).unwrap_or(&[]);
                Active::mac_lanes4_row(&mut acc, (x, taps.x_step), (w, c), n, off);
            });
            store4(out_px.get_mut(first..first + 4), acc, &stages);
        });
        interior_group(p, in_shape, input, &interior, output, first, &stages);
        first += 4;
    }
    for ch in first..c {
        let Some(stage) = quant.next() else {
            return;
        };
        for_each_tap_set(
            p,
            in_shape,
            out_shape,
            output,
            &Interior::NONE,
            |taps, out_px| {
                let mut acc = 0i32;
                taps.for_each(|xi, wi| {
                    let x = input.get(xi + ch).copied().unwrap_or(0);
                    let w = p.weights.get(wi + ch).copied().unwrap_or(0);
                    acc =
                        acc.wrapping_add(i32::from(x).wrapping_add(off).wrapping_mul(i32::from(w)));
                });
                if let Some(out) = out_px.get_mut(ch) {
                    *out = stage.finish(acc);
                }
            },
        );
    }
}

/// Four adjacent channels from `first` and their output stages.
struct Group<'s, S> {
    first: usize,
    stages: &'s Stages4<S>,
}

/// The border pixels of four channels of a whole 3x3 window without dilation: each
/// window is gathered into 36 bytes (four channels per tap) with the taps outside the
/// input set to the input zero point, whose `(x - zp) * w` is exactly 0, so the interior's
/// 3x3 loop and its offset term serve the border too. `false`, touching nothing, for other
/// windows or a zero point outside int8.
fn border_3x3<S: OutputStage>(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    interior: &Interior,
    group: &Group<S>,
) -> bool {
    let g = &p.geometry;
    let c = in_shape.c;
    let Ok(pad) = i8::try_from(p.quant.in_zp) else {
        return false;
    };
    if (g.kh, g.kw, g.dil_h, g.dil_w) != (3, 3, 1, 1) {
        return false;
    }
    let Some(weights) = p.weights.get(group.first..) else {
        return false;
    };
    // The group's weights in the gathered layout: tap t at 4 * t.
    let mut w = [0i8; 36];
    for (tap, dst) in weights.chunks(c.max(1)).zip(w.chunks_exact_mut(4)) {
        if let Some(src) = tap.first_chunk::<4>() {
            dst.copy_from_slice(src);
        }
    }
    let off = p.quant.in_zp.wrapping_neg();
    let offset_term = window_sums(&w, 4, 9).map(|s| s.wrapping_mul(off));
    let mut x = [0i8; 36];
    let mut out_pixels = output.chunks_exact_mut(out_shape.c);
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            let Some(out_px) = out_pixels.next() else {
                return true;
            };
            if interior.contains(oy, ox) {
                continue;
            }
            for (t, dst) in x.chunks_exact_mut(4).enumerate() {
                let iy = (oy * g.stride_h + t / 3).checked_sub(g.pad_top);
                let ix = (ox * g.stride_w + t % 3).checked_sub(g.pad_left);
                let src = match (iy, ix) {
                    (Some(iy), Some(ix)) if iy < in_shape.h && ix < in_shape.w => input
                        .get((iy * in_shape.w + ix) * c + group.first..)
                        .and_then(<[i8]>::first_chunk::<4>),
                    _ => None,
                };
                dst.copy_from_slice(src.unwrap_or(&[pad; 4]));
            }
            let mut acc = offset_term;
            if Active::mac_lanes4_3x3(&mut acc, &x, 12, &w, 4) {
                let at = group.first;
                store4(out_px.get_mut(at..at + 4), acc, group.stages);
            }
        }
    }
    true
}

/// Writes `clamp(requant(bias + acc) + zp)` for four adjacent channels.
#[inline(always)]
fn store4<S: OutputStage>(outs: Option<&mut [i8]>, acc: [i32; 4], stages: &Stages4<S>) {
    if let Some(outs) = outs.and_then(|o| o.first_chunk_mut::<4>()) {
        *outs = S::finish4(&stages.stages, acc, stages.act);
    }
}

/// The output stages of four adjacent channels and the layer's activation range.
struct Stages4<S> {
    stages: [S; 4],
    act: ActBounds,
}

/// The output pixels whose whole window lies inside the input, as half-open row and
/// column ranges (empty when there are none).
pub(crate) struct Interior {
    pub(crate) rows: (usize, usize),
    pub(crate) cols: (usize, usize),
    pub(crate) out_w: usize,
}

impl Interior {
    const NONE: Self = Self {
        rows: (0, 0),
        cols: (0, 0),
        out_w: 0,
    };

    fn new(g: &ConvGeometry, in_shape: Shape, out_shape: Shape) -> Self {
        Self {
            rows: whole_windows(
                g.pad_top,
                g.kh,
                g.dil_h,
                g.stride_h,
                in_shape.h,
                out_shape.h,
            ),
            cols: whole_windows(
                g.pad_left,
                g.kw,
                g.dil_w,
                g.stride_w,
                in_shape.w,
                out_shape.w,
            ),
            out_w: out_shape.w,
        }
    }

    #[inline(always)]
    fn contains(&self, oy: usize, ox: usize) -> bool {
        (self.rows.0..self.rows.1).contains(&oy) && (self.cols.0..self.cols.1).contains(&ox)
    }
}

/// The outputs `o` of one axis with `o * stride - pad >= 0` and
/// `o * stride - pad + (k - 1) * dil < size`.
fn whole_windows(
    pad: usize,
    k: usize,
    dil: usize,
    stride: usize,
    size: usize,
    out: usize,
) -> (usize, usize) {
    let lo = pad.div_ceil(stride.max(1)).min(out);
    let span = k.saturating_sub(1).saturating_mul(dil);
    // The last whole window starts at `size - 1 - span` (unpadded).
    let hi = match size.saturating_add(pad).checked_sub(span.saturating_add(1)) {
        Some(last) => (last / stride.max(1) + 1).min(out),
        None => lo,
    };
    (lo, hi.max(lo))
}

/// Four channels from `first` at every interior output pixel: the window offsets are
/// fixed, so the input offset only moves by one stride per pixel and no tap is clipped.
fn interior_group<S: OutputStage>(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    interior: &Interior,
    output: &mut [i8],
    first: usize,
    stages: &Stages4<S>,
) {
    let g = &p.geometry;
    let c = in_shape.c;
    let off = p.quant.in_zp.wrapping_neg();
    let (x_step, row_step) = (g.dil_w * c, g.dil_h * in_shape.w * c);
    let w_row = g.kw * c;
    let Some(weights) = p.weights.get(first..) else {
        return;
    };
    let whole_3x3 = g.kh == 3 && g.kw == 3 && g.dil_h == 1 && g.dil_w == 1;
    // Over a whole window `sum (x + off) * w = sum x * w + off * sum w`, and the second
    // term is the same at every interior pixel: computed once, it frees the offset's
    // register and instructions in the 3x3 loop (exact, as all of it wraps modulo 2^32).
    let offset_term = window_sums(weights, c, g.kh * g.kw).map(|s| s.wrapping_mul(off));
    if Active::HAS_DEPTHWISE_3X3_INTERIOR && whole_3x3 {
        let (window, group) = ((g, in_shape), (interior, first));
        let finish = |acc| S::finish4(&stages.stages, acc, stages.act);
        if Active::depthwise_3x3_interior(
            window,
            group,
            (input, weights),
            output,
            offset_term,
            finish,
        ) {
            return;
        }
    }
    for oy in interior.rows.0..interior.rows.1 {
        let iy = oy * g.stride_h - g.pad_top;
        let ix0 = interior.cols.0 * g.stride_w - g.pad_left;
        let mut x_at = (iy * in_shape.w + ix0) * c + first;
        let out_row = oy * interior.out_w;
        for ox in interior.cols.0..interior.cols.1 {
            let mut acc = offset_term;
            let x = input.get(x_at..).unwrap_or(&[]);
            if !(whole_3x3 && Active::mac_lanes4_3x3(&mut acc, x, row_step, weights, c)) {
                acc = [0i32; 4];
                let (mut xr, mut wr) = (x_at, 0);
                for _ in 0..g.kh {
                    let x = input.get(xr..).unwrap_or(&[]);
                    let w = weights.get(wr..).unwrap_or(&[]);
                    Active::mac_lanes4_row(&mut acc, (x, x_step), (w, c), g.kw, off);
                    xr += row_step;
                    wr += w_row;
                }
            }
            let at = (out_row + ox) * c + first;
            store4(output.get_mut(at..at + 4), acc, stages);
            x_at += g.stride_w * c;
        }
    }
}

/// `sum w` over the `taps` window taps of four adjacent channels whose weights are
/// `step` bytes apart per tap (wrapping; taps outside `weights` count as 0).
fn window_sums(weights: &[i8], step: usize, taps: usize) -> [i32; 4] {
    let mut sums = [0i32; 4];
    for tap in weights.chunks(step.max(1)).take(taps) {
        for (s, &w) in sums.iter_mut().zip(tap) {
            *s = s.wrapping_add(i32::from(w));
        }
    }
    sums
}

/// The window taps of one output pixel that lie inside the input (depth multiplier 1).
struct Taps<'g> {
    g: &'g ConvGeometry,
    /// Input bytes between horizontally adjacent taps.
    x_step: usize,
    in_w: usize,
    c: usize,
    oy: usize,
    ox: usize,
    ky: (usize, usize),
    kx: (usize, usize),
}

impl Taps<'_> {
    /// Calls `body(input offset, weight offset, taps)` for every kernel row's first valid
    /// tap (channel 0) with the number of valid taps in the row.
    #[inline(always)]
    fn for_each_row(&self, mut body: impl FnMut(usize, usize, usize)) {
        let g = self.g;
        let n = self.kx.1 - self.kx.0;
        if n == 0 {
            // Every column is padding; `ix` below would not exist.
            return;
        }
        let ix = self.ox * g.stride_w + self.kx.0 * g.dil_w - g.pad_left;
        for ky in self.ky.0..self.ky.1 {
            let iy = self.oy * g.stride_h + ky * g.dil_h - g.pad_top;
            body(
                (iy * self.in_w + ix) * self.c,
                (ky * g.kw + self.kx.0) * self.c,
                n,
            );
        }
    }

    /// Calls `body(input offset, weight offset)` (of channel 0) for every tap.
    #[inline(always)]
    fn for_each(&self, mut body: impl FnMut(usize, usize)) {
        let g = self.g;
        for ky in self.ky.0..self.ky.1 {
            let iy = self.oy * g.stride_h + ky * g.dil_h - g.pad_top;
            for kx in self.kx.0..self.kx.1 {
                let ix = self.ox * g.stride_w + kx * g.dil_w - g.pad_left;
                body((iy * self.in_w + ix) * self.c, (ky * g.kw + kx) * self.c);
            }
        }
    }
}

/// Calls `f(taps, output pixel)` for every output pixel outside `skip`.
#[inline(always)]
fn for_each_tap_set(
    p: &DepthwiseParams,
    in_shape: Shape,
    out_shape: Shape,
    output: &mut [i8],
    skip: &Interior,
    mut f: impl FnMut(&Taps, &mut [i8]),
) {
    let g = &p.geometry;
    let c = out_shape.c;
    let mut out_pixels = output.chunks_exact_mut(c);
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            let Some(out_px) = out_pixels.next() else {
                return;
            };
            if skip.contains(oy, ox) {
                continue;
            }
            let [ky, kx] = taps(g, in_shape, oy, ox);
            let taps = Taps {
                g,
                x_step: (g.dil_w * c).max(1),
                in_w: in_shape.w,
                c,
                oy,
                ox,
                ky,
                kx,
            };
            f(&taps, out_px);
        }
    }
}

/// Any depth multiplier: output channel `o` filters input channel `o / multiplier`.
fn any_multiplier(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) {
    let g = &p.geometry;
    let q = &p.quant;
    let (in_c, out_c, dm) = (in_shape.c, out_shape.c, p.depth_multiplier);
    let mut out_pixels = output.chunks_exact_mut(out_c);
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            let Some(out_px) = out_pixels.next() else {
                return;
            };
            let [(ky_lo, ky_hi), (kx_lo, kx_hi)] = taps(g, in_shape, oy, ox);
            for (o, (out, stage)) in out_px.iter_mut().zip(q.exact_stages()).enumerate() {
                let ic = o / dm;
                let mut acc = 0i32;
                for ky in ky_lo..ky_hi {
                    let iy = oy * g.stride_h + ky * g.dil_h - g.pad_top;
                    for kx in kx_lo..kx_hi {
                        let ix = ox * g.stride_w + kx * g.dil_w - g.pad_left;
                        let x = i32::from(input[(iy * in_shape.w + ix) * in_c + ic]);
                        let w = i32::from(p.weights[(ky * g.kw + kx) * out_c + o]);
                        acc = acc.wrapping_add(x.wrapping_sub(q.in_zp).wrapping_mul(w));
                    }
                }
                *out = stage.finish(acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;

    #[test]
    fn matches_reference_on_random_shapes() {
        let mut rng = Rng::new(0xDE9);
        for _ in 0..300 {
            let g = ConvGeometry {
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
            };
            let ins = Shape::new(rng.range(1, 10), rng.range(1, 10), rng.range(1, 7));
            let dm = rng.range(1, 4);
            check_against_reference(&mut rng, g, ins, dm);
        }
    }

    /// The 3x3 windows of most depthwise layers, with enough channels for several groups
    /// of four and enough pixels for an interior.
    #[test]
    fn whole_3x3_windows_match_reference() {
        let mut rng = Rng::new(0x3B3);
        for _ in 0..200 {
            let pad = rng.range(0, 3);
            let g = ConvGeometry {
                stride_h: rng.range(1, 3),
                stride_w: rng.range(1, 3),
                ..ConvGeometry::square(3, pad)
            };
            let ins = Shape::new(rng.range(1, 13), rng.range(1, 13), rng.range(1, 14));
            check_against_reference(&mut rng, g, ins, 1);
        }
    }

    fn check_against_reference(rng: &mut Rng, g: ConvGeometry, ins: Shape, dm: usize) {
        {
            let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
                return;
            };
            let outs = Shape::new(oh, ow, ins.c * dm);
            let input = rng.i8s(ins.len().unwrap());
            let weights = rng.i8s(g.kh * g.kw * outs.c);
            let qt = QuantData::random(rng, outs.c);
            let bytes = qt.bytes();
            let p = DepthwiseParams {
                geometry: g,
                depth_multiplier: dm,
                weights: &weights,
                quant: qt.channel_quant(&bytes),
            };
            let mut output = vec![0i8; outs.len().unwrap()];
            depthwise_conv2d(&p, ins, &input, outs, &mut output).unwrap();

            let mut expected = vec![0i8; output.len()];
            depthwise_reference(&g, &qt, (ins, &input), &weights, (outs, &mut expected));
            assert_eq!(output, expected, "{g:?} {ins:?} dm={dm}");
        }
    }
}
