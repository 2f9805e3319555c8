//! The architecture-independent half of the SIMD DEPTHWISE_CONV2D (depth multiplier 1):
//! which input bytes each output pixel's taps read, and the loops over pixels and groups
//! of [`LANES`] channels. The arithmetic is the [`Isa`]'s.
//!
//! The portable kernel takes four channels at a time; here a pixel's taps are multiplied
//! against [`LANES`] adjacent channels at once, tap pairs interleaved so that one widening
//! multiply-add serves two taps. Taps in the padding read a row of input zero points,
//! whose `x + offset` is exactly 0, so border pixels run the same code as interior ones.

use super::isa::{ChannelBlock, Isa, BLOCK, MAX_OUT_ZP};
use crate::kernels::conv2d::valid_taps;
use crate::kernels::{ConvGeometry, DepthwiseParams, Shape};

/// Channels one [`Isa::depthwise_pixel`] call computes.
pub(crate) const LANES: usize = 16;

/// Taps (`kh * kw`) the SIMD path takes: a 7x7 window.
const MAX_TAPS: usize = 49;

/// Bytes of the padded copy [`Groups::band`] builds on the stack: a 3x3 window's band
/// holds 85 input columns of one group of [`LANES`] channels.
const BAND: usize = 4096;

/// Tap pairs of the longest window.
const MAX_PAIRS: usize = MAX_TAPS.div_ceil(2);

/// Weights of one group of [`LANES`] channels for one tap pair, interleaved:
/// `[w_a[0], w_b[0], w_a[1], w_b[1], ..]` for the pair's taps `a` and `b`.
pub(crate) type PairWeights = [i16; 2 * LANES];

/// DEPTHWISE_CONV2D (depth multiplier 1) with `isa`, for slices already checked against
/// the shapes. `false`, writing nothing, for parameters outside what the SIMD path is
/// exact for or its buffers hold; the caller then runs the portable kernel.
pub(crate) fn depthwise<I: Isa>(
    isa: I,
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    let g = &p.geometry;
    let taps = g.kh * g.kw;
    // A zero point outside int8 has no input byte that pads exactly.
    let (Ok(pad), Ok(offset)) = (
        i8::try_from(p.quant.in_zp),
        i16::try_from(p.quant.in_zp.wrapping_neg()),
    ) else {
        return false;
    };
    if p.depth_multiplier != 1
        || taps == 0
        || taps > MAX_TAPS
        || in_shape.c != out_shape.c
        || !(-MAX_OUT_ZP..=MAX_OUT_ZP).contains(&p.quant.out_zp)
    {
        return false;
    }
    let c = out_shape.c;
    let pairs = taps.div_ceil(2);
    let padding = [pad; LANES];
    let mut first = 0;
    while first < c {
        let n = (c - first).min(BLOCK);
        let block = ChannelBlock::new(&p.quant, first, n);
        let mut weights = [[0i16; 2 * LANES]; MAX_PAIRS * (BLOCK / LANES)];
        for (group, w) in weights.chunks_exact_mut(MAX_PAIRS).enumerate() {
            let ch = first + group * LANES;
            if ch < first + n {
                interleave(p.weights, c, taps, ch, (first + n - ch).min(LANES), w);
            }
        }
        let groups = Groups {
            isa,
            g,
            in_shape,
            input,
            offset,
            padding: &padding,
            weights: &weights,
            block: &block,
            first,
            n,
        };
        let taps = tap_offsets(g, in_shape);
        let taps = taps.get(..2 * pairs).unwrap_or_default();
        let interior = interior_columns(g, in_shape.w, out_shape.w);
        for oy in 0..out_shape.h {
            let ky = valid_taps(oy * g.stride_h, g.kh, g.dil_h, g.pad_top, in_shape.h);
            let (lo, hi) = if ky == (0, g.kh) { interior } else { (0, 0) };
            let row = output
                .get_mut(oy * out_shape.w * c..(oy + 1) * out_shape.w * c)
                .unwrap_or_default();
            let (left, rest) = row.split_at_mut((lo * c).min(row.len()));
            let (mid, right) = rest.split_at_mut(((hi - lo) * c).min(rest.len()));
            groups.border(oy, 0, left);
            if hi > lo {
                // Whole windows: one call per group for the run of pixels.
                let iy = oy * g.stride_h - g.pad_top;
                let ix = lo * g.stride_w - g.pad_left;
                let step = g.stride_w * c;
                for (k, w) in weights.chunks_exact(MAX_PAIRS).enumerate() {
                    let ch = first + k * LANES;
                    if ch >= first + n {
                        break;
                    }
                    let len = (first + n - ch).min(LANES);
                    let start = (iy * in_shape.w + ix) * c + ch;
                    let w = w.get(..pairs).unwrap_or_default();
                    let done = isa.depthwise_row(
                        input,
                        (start, step, hi - lo),
                        taps,
                        w,
                        offset,
                        (&block, ch - first),
                        (mid.get_mut(ch..).unwrap_or_default(), c, len),
                    );
                    if !done {
                        for (i, px) in mid.chunks_exact_mut(c).enumerate() {
                            groups.pixel(oy, lo + i, px, k..k + 1);
                        }
                    }
                }
            }
            groups.border(oy, hi, right);
        }
        first += n;
    }
    true
}

/// Channels `ch..ch + n` of the `[tap][c]` weights, as [`PairWeights`] per tap pair (zero
/// for channels past `n` and for the missing second tap of an odd window).
fn interleave(weights: &[i8], c: usize, taps: usize, ch: usize, n: usize, out: &mut [PairWeights]) {
    for (pair, dst) in out.iter_mut().enumerate().take(taps.div_ceil(2)) {
        for (half, tap) in [2 * pair, 2 * pair + 1].into_iter().enumerate() {
            if tap >= taps {
                continue;
            }
            let row = weights.get(tap * c + ch..).unwrap_or_default();
            for (o, &w) in row.iter().take(n).enumerate() {
                if let Some(d) = dst.get_mut(2 * o + half) {
                    *d = i16::from(w);
                }
            }
        }
    }
}

/// The input offset of every tap `ky * kw + kx` from its window's first tap, for a window
/// that lies inside the input; an odd window's missing last tap (weight zero) repeats
/// tap 0.
fn tap_offsets(g: &ConvGeometry, in_shape: Shape) -> [usize; 2 * MAX_PAIRS] {
    let mut taps = [0usize; 2 * MAX_PAIRS];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            if let Some(t) = taps.get_mut(ky * g.kw + kx) {
                *t = (ky * g.dil_h * in_shape.w + kx * g.dil_w) * in_shape.c;
            }
        }
    }
    taps
}

/// The output columns whose windows lie wholly inside the input's columns, as a
/// half-open range (contiguous, since a window moves right with its column).
fn interior_columns(g: &ConvGeometry, in_w: usize, out_w: usize) -> (usize, usize) {
    let whole =
        |ox: usize| valid_taps(ox * g.stride_w, g.kw, g.dil_w, g.pad_left, in_w) == (0, g.kw);
    let lo = (0..out_w).find(|&ox| whole(ox)).unwrap_or(out_w);
    let hi = (lo..out_w).find(|&ox| !whole(ox)).unwrap_or(out_w);
    (lo, hi)
}

/// One channel block's constants and weights, for the pixels computed one at a time.
struct Groups<'a, I> {
    isa: I,
    g: &'a ConvGeometry,
    in_shape: Shape,
    input: &'a [i8],
    offset: i16,
    padding: &'a [i8; LANES],
    weights: &'a [PairWeights],
    block: &'a ChannelBlock,
    first: usize,
    n: usize,
}

impl<I: Isa> Groups<'_, I> {
    /// The output pixels `seg` (whole pixels) of row `oy` from column `ox`, some of whose
    /// windows reach into the padding: by [`Groups::band`] where the instruction set has
    /// a row kernel worth the copy, else one pixel at a time.
    fn border(&self, oy: usize, ox: usize, seg: &mut [i8]) {
        let c = self.in_shape.c;
        if c == 0 || seg.is_empty() {
            return;
        }
        let g = self.g;
        let span_h = (g.kh - 1) * g.dil_h + 1;
        let ext_w = (g.kw - 1) * g.dil_w + 1;
        // The most output pixels whose band fits the buffer.
        let cols = BAND / (LANES * span_h);
        let most = cols
            .checked_sub(ext_w)
            .map_or(0, |spare| spare / g.stride_w.max(1) + 1);
        if !I::DEPTHWISE_BAND || most == 0 {
            for (i, px) in seg.chunks_exact_mut(c).enumerate() {
                self.pixel(oy, ox + i, px, 0..usize::MAX);
            }
            return;
        }
        let mut done = 0;
        for part in seg.chunks_mut(most * c) {
            let n = part.len() / c;
            self.band(oy, ox + done, part);
            done += n;
        }
    }

    /// The output pixels `seg` of row `oy` from column `ox0` by [`Isa::depthwise_row`]
    /// over a copy of the input they read, one group of [`LANES`] channels at a time, in
    /// which the padding is the row of input zero points: `x + offset` is 0 there, as the
    /// reference's skipped taps contribute nothing. The band must fit [`BAND`].
    fn band(&self, oy: usize, ox0: usize, seg: &mut [i8]) {
        let (g, s) = (self.g, self.in_shape);
        let c = s.c;
        let count = seg.len() / c.max(1);
        let span_h = (g.kh - 1) * g.dil_h + 1;
        let span_w = (count.max(1) - 1) * g.stride_w + (g.kw - 1) * g.dil_w + 1;
        let taps = g.kh * g.kw;
        let pairs = taps.div_ceil(2);
        // The band's tap offsets; an odd window's missing tap (weight zero) reads tap 0.
        let mut offsets = [0usize; 2 * MAX_PAIRS];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                if let Some(t) = offsets.get_mut(ky * g.kw + kx) {
                    *t = (ky * g.dil_h * span_w + kx * g.dil_w) * LANES;
                }
            }
        }
        let offsets = offsets.get(..2 * pairs).unwrap_or_default();
        let mut band = [0i8; BAND];
        let Some(band) = band.get_mut(..span_h * span_w * LANES) else {
            return;
        };
        // Input row and column of the band's first row and column (may lie in the padding).
        let y0 = (oy * g.stride_h) as isize - g.pad_top as isize;
        let x0 = (ox0 * g.stride_w) as isize - g.pad_left as isize;
        let (first, n) = (self.first, self.n);
        for (k, w) in self.weights.chunks_exact(MAX_PAIRS).enumerate() {
            let ch = first + k * LANES;
            if ch >= first + n {
                break;
            }
            let len = (first + n - ch).min(LANES);
            for (r, row) in band.chunks_exact_mut(span_w * LANES).enumerate() {
                let iy = y0 + r as isize;
                if iy < 0 || iy >= s.h as isize {
                    row.fill(self.padding[0]);
                    continue;
                }
                for (col, dst) in row.chunks_exact_mut(LANES).enumerate() {
                    let ix = x0 + col as isize;
                    let dst = dst.first_chunk_mut::<LANES>();
                    let Some(dst) = dst else { continue };
                    if ix < 0 || ix >= s.w as isize {
                        *dst = *self.padding;
                        continue;
                    }
                    let at = (iy as usize * s.w + ix as usize) * c + ch;
                    match self.input.get(at..).and_then(<[i8]>::first_chunk::<LANES>) {
                        Some(src) => *dst = *src,
                        None => {
                            let src = self.input.get(at..).unwrap_or_default();
                            for (d, &x) in dst.iter_mut().zip(src.iter().take(len)) {
                                *d = x;
                            }
                        }
                    }
                }
            }
            let w = w.get(..pairs).unwrap_or_default();
            let out = seg.get_mut(ch..).unwrap_or_default();
            let done = self.isa.depthwise_row(
                band,
                (0, g.stride_w * LANES, count),
                offsets,
                w,
                self.offset,
                (self.block, ch - first),
                (out, c, len),
            );
            if !done {
                for (i, px) in seg.chunks_exact_mut(c).enumerate() {
                    self.pixel(oy, ox0 + i, px, k..k + 1);
                }
            }
        }
    }

    /// The groups `groups` (of [`LANES`] channels, counted from the block's first) of
    /// output pixel `(oy, ox)`, whose channels are `px`: taps in the padding read the row
    /// of input zero points.
    fn pixel(&self, oy: usize, ox: usize, px: &mut [i8], groups: core::ops::Range<usize>) {
        let (g, in_shape) = (self.g, self.in_shape);
        let c = in_shape.c;
        let taps = g.kh * g.kw;
        let pairs = taps.div_ceil(2);
        let ky = valid_taps(oy * g.stride_h, g.kh, g.dil_h, g.pad_top, in_shape.h);
        let kx = valid_taps(ox * g.stride_w, g.kw, g.dil_w, g.pad_left, in_shape.w);
        // Every tap's input pixel (channel 0) or `None` in the padding.
        let mut at = [None; 2 * MAX_PAIRS];
        for ky in ky.0..ky.1 {
            let iy = oy * g.stride_h + ky * g.dil_h - g.pad_top;
            for kx in kx.0..kx.1 {
                let ix = ox * g.stride_w + kx * g.dil_w - g.pad_left;
                if let Some(a) = at.get_mut(ky * g.kw + kx) {
                    *a = Some((iy * in_shape.w + ix) * c);
                }
            }
        }
        let at = at.get(..2 * pairs).unwrap_or_default();
        let mut rows = [&self.padding[..]; 2 * MAX_PAIRS];
        let (first, n) = (self.first, self.n);
        let chunks = self.weights.chunks_exact(MAX_PAIRS).enumerate();
        for (k, w) in chunks.skip(groups.start).take(groups.len()) {
            let ch = first + k * LANES;
            if ch >= first + n {
                break;
            }
            for (r, a) in rows.iter_mut().zip(at.iter()) {
                *r = match a {
                    Some(a) => self.input.get(a + ch..).unwrap_or(self.padding),
                    None => self.padding,
                };
            }
            let len = (first + n - ch).min(LANES);
            let Some(out) = px.get_mut(ch..ch + len) else {
                return;
            };
            let (rows, w) = (&rows[..2 * pairs], &w[..pairs]);
            self.isa
                .depthwise_pixel(rows, w, self.offset, (self.block, ch - first), out);
        }
    }
}
