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

/// Tap pairs of a 3x3 window, the common one, whose weights take a smaller buffer.
const SHORT_PAIRS: usize = 5;

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
    // The interleaved weights of a block of channels, `cap` tap pairs per group: a 3x3
    // window's buffer is a fifth of a 7x7 one's, and it is zeroed per block.
    let mut blocks = |weights: &mut [PairWeights], cap: usize| {
        let mut first = 0;
        while first < c {
            let n = (c - first).min(BLOCK);
            weights.fill([0; 2 * LANES]);
            let shapes = (in_shape, input, out_shape, &mut *output);
            layer_block(isa, p, shapes, (pad, offset), (first, n), (weights, cap));
            first += n;
        }
    };
    if pairs <= SHORT_PAIRS {
        blocks(
            &mut [[0i16; 2 * LANES]; SHORT_PAIRS * (BLOCK / LANES)],
            SHORT_PAIRS,
        );
    } else {
        blocks(
            &mut [[0i16; 2 * LANES]; MAX_PAIRS * (BLOCK / LANES)],
            MAX_PAIRS,
        );
    }
    true
}

/// The channels `first..first + n` of [`depthwise`] (checked there; `pad` is the input
/// zero point and `offset` minus it), with `weights` zero and `cap >= pairs` tap pairs
/// per group of [`LANES`] channels.
fn layer_block<I: Isa>(
    isa: I,
    p: &DepthwiseParams,
    (in_shape, input, out_shape, output): (Shape, &[i8], Shape, &mut [i8]),
    (pad, offset): (i8, i16),
    (first, n): (usize, usize),
    (weights, cap): (&mut [PairWeights], usize),
) {
    let g = &p.geometry;
    let taps = g.kh * g.kw;
    let c = out_shape.c;
    let pairs = taps.div_ceil(2);
    let padding = [pad; LANES];
    {
        let block = ChannelBlock::new(&p.quant, first, n);
        for (group, w) in weights.chunks_exact_mut(cap).enumerate() {
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
            weights,
            cap,
            block: &block,
            first,
            n,
        };
        let taps = tap_offsets(g, in_shape);
        let taps = taps.get(..2 * pairs).unwrap_or_default();
        let interior = interior_columns(g, in_shape.w, out_shape.w);
        groups.banded(taps, interior, (out_shape, output));
    }
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
pub(crate) fn interior_columns(g: &ConvGeometry, in_w: usize, out_w: usize) -> (usize, usize) {
    let whole =
        |ox: usize| valid_taps(ox * g.stride_w, g.kw, g.dil_w, g.pad_left, in_w) == (0, g.kw);
    let lo = (0..out_w).find(|&ox| whole(ox)).unwrap_or(out_w);
    let hi = (lo..out_w).find(|&ox| !whole(ox)).unwrap_or(out_w);
    (lo, hi)
}

/// The output rows whose windows lie wholly inside the input's rows, as a half-open
/// range.
fn interior_rows(g: &ConvGeometry, in_h: usize, out_h: usize) -> (usize, usize) {
    let whole =
        |oy: usize| valid_taps(oy * g.stride_h, g.kh, g.dil_h, g.pad_top, in_h) == (0, g.kh);
    let lo = (0..out_h).find(|&oy| whole(oy)).unwrap_or(out_h);
    let hi = (lo..out_h).find(|&oy| !whole(oy)).unwrap_or(out_h);
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
    /// Tap pairs per group in `weights`.
    cap: usize,
    block: &'a ChannelBlock,
    first: usize,
    n: usize,
}

impl<I: Isa> Groups<'_, I> {
    /// The pixels of a grid whose windows lie inside the input, by [`Isa::depthwise_row`]
    /// on the input itself, one call per group of [`LANES`] channels: `line` is the first
    /// row's `(start, step, count)` in the input (channel 0), `rows` the rows' `(count,
    /// input step, output step)`, `out` starts at the first pixel and `at` is its place.
    fn direct(
        &self,
        taps: &[usize],
        (start, step, count): (usize, usize, usize),
        rows: (usize, usize, usize),
        out: &mut [i8],
        at: (usize, usize),
    ) {
        let c = self.in_shape.c;
        let pairs = taps.len() / 2;
        let (first, n) = (self.first, self.n);
        for (k, w) in self.weights.chunks_exact(self.cap).enumerate() {
            let ch = first + k * LANES;
            if ch >= first + n {
                break;
            }
            let len = (first + n - ch).min(LANES);
            let w = w.get(..pairs).unwrap_or_default();
            let done = self.isa.depthwise_row(
                self.input,
                (start + ch, step, count),
                rows,
                taps,
                w,
                self.offset,
                (self.block, ch - first),
                (out.get_mut(ch..).unwrap_or_default(), c, len),
            );
            if !done {
                for (y, i) in (0..rows.0).flat_map(|y| (0..count).map(move |i| (y, i))) {
                    let from = y * rows.2 + i * c;
                    let px = out.get_mut(from..from + c).unwrap_or_default();
                    self.pixel(at.0 + y, at.1 + i, px, k..k + 1);
                }
            }
        }
    }

    /// The whole layer for the block's channels by bands: a map whose padded input fits
    /// one band in a single band per group, otherwise the interior by [`Groups::direct`]
    /// and the border rows and columns by [`Groups::band_run`].
    fn banded(
        &self,
        taps: &[usize],
        (lo, hi): (usize, usize),
        (out_shape, output): (Shape, &mut [i8]),
    ) {
        // Made once per block of channels: each band overwrites what it reads.
        let mut band = [0i8; BAND];
        let band = &mut band;
        let (g, s) = (self.g, self.in_shape);
        let (c, out_w) = (s.c, out_shape.w);
        let full = (g.pad_top + s.h + g.pad_bottom) * (g.pad_left + s.w + g.pad_right);
        if full * LANES <= BAND {
            // Every window inside the padded input, which the band holds whole.
            let grid = (out_shape.h, out_w);
            self.band(band, (0, 0), grid, (output, c, out_w * c));
            return;
        }
        let rows = interior_rows(g, s.h, out_shape.h);
        let inside = rows.1 > rows.0 && hi > lo;
        if inside {
            let iy = rows.0 * g.stride_h - g.pad_top;
            let ix = lo * g.stride_w - g.pad_left;
            let line = ((iy * s.w + ix) * c, g.stride_w * c, hi - lo);
            let grid = (rows.1 - rows.0, g.stride_h * s.w * c, out_w * c);
            let out = output
                .get_mut((rows.0 * out_w + lo) * c..)
                .unwrap_or_default();
            self.direct(taps, line, grid, out, (rows.0, lo));
        }
        for oy in (0..out_shape.h).filter(|&oy| !inside || oy < rows.0 || oy >= rows.1) {
            let row = output
                .get_mut(oy * out_w * c..(oy + 1) * out_w * c)
                .unwrap_or_default();
            self.band_run(band, (oy, 0), (0, 1), (row, c));
        }
        if inside {
            // The border columns of the rows with an interior: one band per column, down
            // the rows.
            for ox in (0..lo).chain(hi..out_w) {
                let from = (rows.0 * out_w + ox) * c;
                let len = (rows.1 - rows.0 - 1) * out_w * c + c;
                let Some(out) = output.get_mut(from..from + len) else {
                    continue;
                };
                self.band_run(band, (rows.0, ox), (1, 0), (out, out_w * c));
            }
        }
    }

    /// A line of output pixels, some of whose windows reach into the padding: pixel `i`
    /// is `(oy + i * dy, ox + i * dx)` (a row for `(0, 1)`, a column for `(1, 0)`) and its
    /// channels are `out[i * step..][..c]`, for as many pixels as `out` holds. By
    /// [`Isa::depthwise_row`] over a copy of the input they read, one group of [`LANES`]
    /// channels at a time, in which the padding is the row of input zero points: `x +
    /// offset` is 0 there, as the reference's skipped taps contribute nothing. The line is
    /// cut into pieces whose copies fit `band`.
    fn band_run(
        &self,
        band: &mut [i8; BAND],
        (oy, ox): (usize, usize),
        (dy, dx): (usize, usize),
        (out, step): (&mut [i8], usize),
    ) {
        let (g, c) = (self.g, self.in_shape.c);
        if c == 0 || step == 0 {
            return;
        }
        let count = (out.len() + step - c) / step;
        let ext_h = (g.kh - 1) * g.dil_h + 1;
        let ext_w = (g.kw - 1) * g.dil_w + 1;
        // The most pixels whose copy fits: the band grows along the line only.
        let (across, along, stride) = if dy == 0 {
            (ext_h, ext_w, g.stride_w)
        } else {
            (ext_w, ext_h, g.stride_h)
        };
        let most = (BAND / (LANES * across))
            .checked_sub(along)
            .map_or(0, |spare| spare / stride.max(1) + 1);
        let mut done = 0;
        while done < count {
            let n = (count - done).min(most.max(1));
            let at = (oy + done * dy, ox + done * dx);
            let out = out.get_mut(done * step..).unwrap_or_default();
            if most == 0 {
                for i in 0..n {
                    let px = out.get_mut(i * step..i * step + c).unwrap_or_default();
                    self.pixel(at.0 + i * dy, at.1 + i * dx, px, 0..usize::MAX);
                }
            } else if dy == 0 {
                self.band(band, at, (1, n), (out, step, 0));
            } else {
                self.band(band, at, (n, 1), (out, c, step));
            }
            done += n;
        }
    }

    /// A grid of `ny` rows of `nx` output pixels from `(oy, ox)`, whose copy of the input
    /// fits `band`, by [`Isa::depthwise_row`] over that copy, one group of [`LANES`]
    /// channels at a time, in which the padding is the row of input zero points: `x +
    /// offset` is 0 there, as the reference's skipped taps contribute nothing. Pixel `(y,
    /// x)`'s channels are `out[y * row_step + x * step..][..c]`.
    fn band(
        &self,
        band: &mut [i8; BAND],
        (oy, ox): (usize, usize),
        (ny, nx): (usize, usize),
        (out, step, row_step): (&mut [i8], usize, usize),
    ) {
        let (g, s) = (self.g, self.in_shape);
        let c = s.c;
        if ny == 0 || nx == 0 {
            return;
        }
        let span_h = (ny - 1) * g.stride_h + (g.kh - 1) * g.dil_h + 1;
        let span_w = (nx - 1) * g.stride_w + (g.kw - 1) * g.dil_w + 1;
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
        let pixel_step = g.stride_w * LANES;
        let band_rows = (ny, g.stride_h * span_w * LANES, row_step);
        let Some(band) = band.get_mut(..span_h * span_w * LANES) else {
            // Too large a grid for the copy (the callers cut grids to fit): pixel by pixel.
            for (y, x) in (0..ny).flat_map(|y| (0..nx).map(move |x| (y, x))) {
                let from = y * row_step + x * step;
                let px = out.get_mut(from..from + c).unwrap_or_default();
                self.pixel(oy + y, ox + x, px, 0..usize::MAX);
            }
            return;
        };
        // The input row and column of the band's first row and column, and the band's
        // columns that lie inside the input (the same for every row).
        let y0 = (oy * g.stride_h) as isize - g.pad_top as isize;
        let x0 = (ox * g.stride_w) as isize - g.pad_left as isize;
        let inside = |v: isize| v.clamp(0, span_w as isize) as usize;
        let (c_lo, c_hi) = (inside(-x0), inside(s.w as isize - x0));
        let c_hi = c_hi.max(c_lo);
        let pad = self.padding[0];
        let (first, n_ch) = (self.first, self.n);
        for (k, w) in self.weights.chunks_exact(self.cap).enumerate() {
            let ch = first + k * LANES;
            if ch >= first + n_ch {
                break;
            }
            let len = (first + n_ch - ch).min(LANES);
            for (r, row) in band.chunks_exact_mut(span_w * LANES).enumerate() {
                let iy = y0 + r as isize;
                if iy < 0 || iy >= s.h as isize {
                    row.fill(pad);
                    continue;
                }
                let (left, rest) = row.split_at_mut(c_lo * LANES);
                let (mid, right) = rest.split_at_mut((c_hi - c_lo) * LANES);
                left.fill(pad);
                right.fill(pad);
                // Input column `x0 + c_lo` (inside the input when the band has such columns).
                let base = (iy as usize * s.w + (x0 + c_lo as isize).max(0) as usize) * c + ch;
                let src = self.input.get(base..).unwrap_or_default();
                for (i, dst) in mid.chunks_exact_mut(LANES).enumerate() {
                    let from = src.get(i * c..).unwrap_or_default();
                    match (from.first_chunk::<LANES>(), dst.first_chunk_mut::<LANES>()) {
                        (Some(from), Some(dst)) => *dst = *from,
                        _ => {
                            for (d, &x) in dst.iter_mut().zip(from.iter().take(len)) {
                                *d = x;
                            }
                        }
                    }
                }
            }
            let w = w.get(..pairs).unwrap_or_default();
            let done = self.isa.depthwise_row(
                band,
                (0, pixel_step, nx),
                band_rows,
                offsets,
                w,
                self.offset,
                (self.block, ch - first),
                (out.get_mut(ch..).unwrap_or_default(), step, len),
            );
            if !done {
                for (y, x) in (0..ny).flat_map(|y| (0..nx).map(move |x| (y, x))) {
                    let from = y * row_step + x * step;
                    let px = out.get_mut(from..from + c).unwrap_or_default();
                    self.pixel(oy + y, ox + x, px, k..k + 1);
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
        let chunks = self.weights.chunks_exact(self.cap).enumerate();
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
