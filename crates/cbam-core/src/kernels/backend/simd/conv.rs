//! The architecture-independent half of the SIMD CONV2D: which bytes of the input form an
//! output pixel's window, and the loops over pixels and channel blocks. The arithmetic is
//! the [`Isa`]'s.
//!
//! Each output pixel's window is widened once into an `i16` buffer with the input offset
//! already added (padding taps are 0, exactly what `(zp - zp) * w` contributes). Most
//! layers then run as a matrix product of those windows with the weights ([`gemm`]; on a
//! CPU with four-byte dot products, of byte windows instead);
//! layers with few output pixels per weight, or windows past [`gemm::MAX_TAPS`], take the
//! per-pixel path here, a plain `i16 x i8` dot product over the contiguous, zero-padded
//! buffer shared by every output channel of the pixel.

use super::depthwise::interior_columns;
use super::gemm::{self, Pairs, Product, Quads};
use super::isa::{ChannelBlock, DotIsa, Isa, SmallWeights, BLOCK, MAX_OUT_ZP, SMALL_PAIRS};
use super::scratch::{with_filled, with_prefix};
use crate::kernels::backend::PACKED_OFFSET;
use crate::kernels::conv2d::valid_taps;
use crate::kernels::{Conv2dParams, ConvGeometry, Shape};

/// Longest window (`kh * kw * in_c`) the SIMD path takes: a 3x3 window over 512 channels.
/// The buffer lives on the stack (9 KiB), which host and Pi threads have plenty of.
pub(crate) const MAX_WINDOW: usize = 4608;

/// Weight row `row` of `weights` and everything after it: a backend reads whole 16-byte
/// chunks, which stay inside the slice for every row but the last ones.
#[inline(always)]
pub(crate) fn row_from(weights: &[i8], per_out: usize, row: usize) -> &[i8] {
    weights.get(row * per_out..).unwrap_or_default()
}

/// For copying runs of `run` bytes from `starts` sixteen at a time (the backends'
/// `widen_runs` and `taps_runs`): how far past a pixel's first source byte the reads go,
/// and how far past its first window tap the writes go, so that the bounds are checked
/// once per pixel.
pub(crate) fn run_bounds(starts: &[usize], run: usize) -> (usize, usize) {
    let span = run.div_ceil(16) * 16;
    let reach = starts.iter().max().map_or(0, |&s| s + span);
    (reach, starts.len().saturating_sub(1) * run + span)
}

/// CONV2D with the instruction set `isa`, for slices already checked against the shapes. Returns
/// `false`, writing nothing, when the parameters are outside what the SIMD path is exact
/// for or its buffer holds; the caller then runs the portable kernel.
pub(crate) fn conv2d<I: Isa>(
    isa: I,
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    let g = &p.geometry;
    let Some((per_out, offset)) = taken(p, in_shape, out_shape) else {
        return false;
    };
    if let Some(done) = two_channels_to_one(isa, p, in_shape, input, out_shape, output, offset) {
        return done;
    }
    let windows = Windows { g, in_shape, input };
    let pairs = Pairs { isa, offset };
    let quads = quads(isa, p);
    let pixels = output.len() / out_shape.c.max(1);
    if by_matrix_product(per_out, pixels) {
        let weights = (p.weights, per_out);
        let quant = (&p.quant, p.packed);
        let out = (output, out_shape);
        match quads {
            Some(quads) => windows.product_either(quads, weights, quant, out),
            None => windows.product_either(pairs, weights, quant, out),
        }
        return true;
    }
    if let Some(quads) = quads.filter(|_| per_out > 2 * SMALL_PAIRS) {
        let padded = per_out.next_multiple_of(32);
        with_prefix::<u8, MAX_WINDOW, _>(padded, |a| {
            with_prefix::<u8, MAX_WINDOW, _>(padded, |b| {
                let weights = (p.weights, per_out);
                windows.pixels_by_dot(quads, weights, &p.quant, (output, out_shape), [a, b]);
            });
        });
        return true;
    }
    let padded = per_out.next_multiple_of(16);
    with_prefix::<i16, MAX_WINDOW, _>(padded, |a| {
        with_prefix::<i16, MAX_WINDOW, _>(padded, |b| {
            windows.pixels_by_pairs(pairs, p, (output, out_shape), [a, b]);
        });
    });
    true
}

/// The window length and input offset of a layer the SIMD path takes, or `None`.
fn taken(p: &Conv2dParams, in_shape: Shape, out_shape: Shape) -> Option<(usize, i16)> {
    let g = &p.geometry;
    let per_out = g.kh.checked_mul(g.kw)?.checked_mul(in_shape.c)?;
    let offset = p.quant.in_zp.wrapping_neg();
    let offset = i16::try_from(offset)
        .ok()
        .filter(|_| PACKED_OFFSET.contains(&offset))?;
    let taken = per_out != 0
        && per_out <= MAX_WINDOW
        && out_shape.c != 0
        && (-MAX_OUT_ZP..=MAX_OUT_ZP).contains(&p.quant.out_zp);
    taken.then_some((per_out, offset))
}

/// The byte-window product, on a CPU with four-byte dot products and an input zero
/// point that is a byte (the byte windows hold it in the padding).
fn quads<I: Isa>(isa: I, p: &Conv2dParams) -> Option<Quads<I::Dot>> {
    isa.dot()
        .filter(|_| i8::try_from(p.quant.in_zp).is_ok())
        .map(|dot| Quads {
            dot,
            zp: p.quant.in_zp,
        })
}

/// Whether `pixels` output pixels of `per_out`-tap windows run as a matrix product.
/// Packing the weights costs about as much as a few pixels' products: with few output
/// pixels per weight (late layers of a network) the per-pixel dot products, which read
/// the weights as they are, win (measured on the example models).
fn by_matrix_product(per_out: usize, pixels: usize) -> bool {
    per_out <= gemm::MAX_TAPS && pixels.saturating_mul(gemm::TAPS_PER_PIXEL) >= per_out
}

/// For a convolution whose windows [`Windows::product_in_place`] reads in place: the
/// taps of a window row and of the padded input copy.
fn in_place_copy(g: &ConvGeometry, s: Shape) -> Option<(usize, usize)> {
    let run = g.kw * s.c;
    if g.is_pointwise() || g.dil_w != 1 || run == 0 || g.kh == 0 {
        return None;
    }
    let h = g.pad_top + s.h + g.pad_bottom;
    let w = g.pad_left + s.w + g.pad_right;
    // The last window's last word may read 3 taps past the copy's last pixel.
    let len = h.checked_mul(w)?.checked_mul(s.c)?.checked_add(4)?;
    (len <= PADDED_MAX).then_some((run, len))
}

/// Packs the weights of a layer as [`conv2d`] would on every call, into `out`: how many
/// words that takes (0 for a layer whose calls pack nothing), written only when `out`
/// holds them. A call then reads them through [`Conv2dParams::packed`].
pub(crate) fn prepack<I: Isa>(
    isa: I,
    p: &Conv2dParams,
    (in_shape, out_shape): (Shape, Shape),
    out: &mut [i32],
) -> usize {
    let Some((per_out, offset)) = taken(p, in_shape, out_shape) else {
        return 0;
    };
    let pixels = out_shape.h.saturating_mul(out_shape.w);
    if !by_matrix_product(per_out, pixels) {
        return 0;
    }
    let shapes = (in_shape, out_shape);
    match quads(isa, p) {
        Some(quads) => prepack_either(quads, p, shapes, out),
        None => prepack_either(Pairs { isa, offset }, p, shapes, out),
    }
}

/// [`prepack`] in the product `k`, in place where [`Windows::product_either`] reads the
/// windows in place.
fn prepack_either<K: Product>(
    k: K,
    p: &Conv2dParams,
    (in_shape, out_shape): (Shape, Shape),
    out: &mut [i32],
) -> usize {
    let g = &p.geometry;
    let (per_out, out_c) = (g.kh * g.kw * in_shape.c, out_shape.c);
    let weights = (p.weights, per_out);
    let window = (g.kh, g.kw * in_shape.c);
    let in_place =
        in_place_copy(g, in_shape).and_then(|_| gemm::in_place_layout::<K>(per_out, window, out_c));
    let len = in_place
        .unwrap_or_else(|| gemm::layout::<K>(per_out, out_c))
        .len();
    // A buffer too short (a caller asking for the length) costs no packing work.
    if out.len() >= len {
        match in_place {
            Some(_) => gemm::prepack_in_place(k, weights, &p.quant, (out_c, window), out),
            None => gemm::prepack(k, weights, &p.quant, out_c, out),
        };
    }
    len
}

/// Taps of the padded input copies [`Windows::product_padded`] and
/// [`Windows::product_in_place`] make on the stack: a 96x96 RGB image with a one-pixel
/// border.
const PADDED_MAX: usize = 32 * 1024;

/// Output pixels whose windows [`Windows::small_rows`] gathers at a time.
const SMALL_RUN: usize = 128;

/// Gathers output pixels' windows out of the input.
struct Windows<'a> {
    g: &'a ConvGeometry,
    in_shape: Shape,
    input: &'a [i8],
}

impl Windows<'_> {
    /// Every output pixel by [`gemm::conv`] in the product `k`.
    fn product<K: Product>(
        &self,
        k: K,
        weights: (&[i8], usize),
        quant: (&crate::kernels::ChannelQuant, &[i32]),
        (output, out_shape): (&mut [i8], Shape),
    ) {
        let per_out = weights.1;
        let (out_c, w) = (out_shape.c, out_shape.w.max(1));
        if self.g.is_pointwise() {
            let input = self.input;
            let fill = |windows: &mut [K::Tap], first: usize, count: usize| {
                let stride = per_out.next_multiple_of(K::TAPS);
                for (i, window) in windows.chunks_exact_mut(stride).take(count).enumerate() {
                    let x = input.get((first + i) * per_out..).unwrap_or_default();
                    k.taps(window, x.get(..per_out).unwrap_or_default());
                }
            };
            gemm::conv(k, weights, quant, output, out_c, (Some(input), fill));
        } else if !self.product_padded(k, weights, quant, (&mut *output, out_shape)) {
            let fill = |buffer: &mut [K::Tap], first: usize, count: usize| {
                self.gather_run(k, buffer, per_out, (first, count), w);
            };
            gemm::conv(k, weights, quant, output, out_c, (None, fill));
        }
    }

    /// [`Windows::product`] of a padded convolution over a copy of the input with its
    /// padding written out as the zero point's byte: every window is then whole runs of
    /// input bytes, where the pixels whose windows reach into the padding would each be
    /// gathered on their own (on a 14x14 map, one pixel in four). `false`, doing nothing,
    /// for a convolution without padding, a copy past [`PADDED_MAX`] bytes or a zero
    /// point that is not a byte.
    fn product_padded<K: Product>(
        &self,
        k: K,
        weights: (&[i8], usize),
        quant: (&crate::kernels::ChannelQuant, &[i32]),
        out: (&mut [i8], Shape),
    ) -> bool {
        let (g, s) = (self.g, self.in_shape);
        let pads = [g.pad_top, g.pad_bottom, g.pad_left, g.pad_right];
        let Ok(zp) = i8::try_from(quant.0.in_zp) else {
            return false;
        };
        let (h, w) = (
            g.pad_top + s.h + g.pad_bottom,
            g.pad_left + s.w + g.pad_right,
        );
        let len = h.checked_mul(w).and_then(|n| n.checked_mul(s.c));
        let Some(len) = len.filter(|&n| n <= PADDED_MAX && pads != [0; 4]) else {
            return false;
        };
        with_filled::<i8, PADDED_MAX, _>(len, zp, |copy| {
            self.copy_rows(copy, w, <[i8]>::copy_from_slice);
            let unpadded = ConvGeometry {
                pad_top: 0,
                pad_left: 0,
                pad_bottom: 0,
                pad_right: 0,
                ..*g
            };
            let inner = Windows {
                g: &unpadded,
                in_shape: Shape::new(h, w, s.c),
                input: copy,
            };
            inner.product(k, weights, quant, out);
        });
        true
    }

    /// The input into `copy` (`w` pixels a row, already holding the padding's value
    /// everywhere), each input row written by `row(dst, src)` inside the padding.
    fn copy_rows<T: Copy>(&self, copy: &mut [T], w: usize, mut row: impl FnMut(&mut [T], &[i8])) {
        let (g, s) = (self.g, self.in_shape);
        let len = s.w * s.c;
        for (y, src) in self.input.chunks_exact(len.max(1)).take(s.h).enumerate() {
            let at = ((y + g.pad_top) * w + g.pad_left) * s.c;
            if let Some(dst) = copy.get_mut(at..at + len) {
                row(dst, src);
            }
        }
    }

    /// Every output pixel in the product `k`, its windows read in place where they can be.
    fn product_either<K: Product>(
        &self,
        k: K,
        weights: (&[i8], usize),
        quant: (&crate::kernels::ChannelQuant, &[i32]),
        (output, out_shape): (&mut [i8], Shape),
    ) {
        if !self.product_in_place(k, weights, quant, (&mut *output, out_shape)) {
            self.product(k, weights, quant, (output, out_shape));
        }
    }

    /// Every output pixel by [`gemm::conv_in_place`] over a copy of the input as taps with
    /// its padding written out, instead of gathering each pixel's window (for the windows
    /// of few input channels, a network's first layers, that costs as much as their
    /// products). `false`, doing nothing, for a 1x1 convolution (its windows need no
    /// gathering), dilated columns, windows past [`gemm::MAX_IN_PLACE_TAPS`] or a copy
    /// past [`PADDED_MAX`] taps.
    fn product_in_place<K: Product>(
        &self,
        k: K,
        weights: (&[i8], usize),
        quant: (&crate::kernels::ChannelQuant, &[i32]),
        (output, out_shape): (&mut [i8], Shape),
    ) -> bool {
        const MAX_OFFS: usize = gemm::MAX_IN_PLACE_TAPS / 2;
        let (g, s) = (self.g, self.in_shape);
        let Some((run, len)) = in_place_copy(g, s) else {
            return false;
        };
        let run_words = run.div_ceil(K::TAPS);
        let words = g.kh * run_words;
        let layout = gemm::in_place_layout::<K>(weights.1, (g.kh, run), out_shape.c);
        if words > MAX_OFFS || layout.is_none() {
            return false;
        }
        let w = g.pad_left + s.w + g.pad_right;
        let row = w * s.c;
        let mut offs = [0usize; MAX_OFFS];
        for (j, off) in offs.iter_mut().take(words).enumerate() {
            *off = (j / run_words) * g.dil_h * row + K::TAPS * (j % run_words);
        }
        let out_w = out_shape.w.max(1);
        let (step_y, step_x) = (g.stride_h * row, g.stride_w * s.c);
        with_filled::<K::Tap, PADDED_MAX, _>(len, k.pad(), |copy| {
            self.copy_rows(copy, w, |dst, src| k.taps(dst, src));
            let windows = gemm::InPlace {
                src: copy,
                offs: offs.get(..words).unwrap_or_default(),
                run,
            };
            let base = |px: usize| (px / out_w) * step_y + (px % out_w) * step_x;
            let out = (output, out_shape.c);
            gemm::conv_in_place(k, weights, quant, out, &windows, base);
        });
        true
    }

    /// Every output pixel, two at a time, by [`DotIsa::pixel2`] over the byte windows `a`
    /// and `b` (each `per_out` rounded up to 32 long, zero past `per_out`).
    fn pixels_by_dot<D: DotIsa>(
        &self,
        quads: Quads<D>,
        (weights, per_out): (&[i8], usize),
        quant: &crate::kernels::ChannelQuant,
        (output, out_shape): (&mut [i8], Shape),
        [a, b]: [&mut [u8]; 2],
    ) {
        let (out_c, w) = (out_shape.c.max(1), out_shape.w.max(1));
        let mut spare = [0i8; BLOCK];
        let mut first = 0;
        while first < out_c {
            let n = (out_c - first).min(BLOCK);
            let block = ChannelBlock::new(quant, first, n);
            let rows = weights.get(first * per_out..(first + n) * per_out);
            let rows = (rows.unwrap_or_default(), per_out);
            let mut at = 0;
            let mut pixels = output.chunks_exact_mut(out_c);
            while let Some(px) = pixels.next() {
                let Some(out) = px.get_mut(first..first + n) else {
                    return;
                };
                self.gather(quads, a, per_out, at / w, at % w);
                // An odd last pixel goes twice, the second time into `spare`.
                let (next, second) = match pixels.next() {
                    Some(next) => (next.get_mut(first..first + n), at + 1),
                    None => (spare.get_mut(..n), at),
                };
                let Some(next) = next else {
                    return;
                };
                self.gather(quads, b, per_out, second / w, second % w);
                quads
                    .dot
                    .pixel2([a, b], rows, (&block, quads.k()), [out, next]);
                at += 2;
            }
            first += n;
        }
    }

    /// Every output pixel, two at a time, by [`Isa::pixel2`] over the `i16` windows `a` and
    /// `b` (each `per_out` rounded up to 16 long, zero past `per_out`), or by
    /// [`Windows::small_rows`] for windows of a few taps.
    fn pixels_by_pairs<I: Isa>(
        &self,
        pairs: Pairs<I>,
        p: &Conv2dParams,
        (output, out_shape): (&mut [i8], Shape),
        [window, window2]: [&mut [i16]; 2],
    ) {
        let g = &p.geometry;
        let per_out = g.kh.saturating_mul(g.kw).saturating_mul(self.in_shape.c);
        let out_c = out_shape.c.max(1);
        let mut first = 0;
        while first < out_c {
            let n = (out_c - first).min(BLOCK);
            let block = ChannelBlock::new(&p.quant, first, n);
            let weights = p
                .weights
                .get(first * per_out..(first + n) * per_out)
                .unwrap_or_default();
            // Small windows (a first layer on a grey image): the dot products would be one or
            // two vectors long, all reduction and no work, so the weights are transposed once
            // and each pixel's taps broadcast against eight channels at a time instead.
            let small =
                (per_out <= 2 * SMALL_PAIRS).then(|| SmallWeights::new(weights, per_out, n));
            let w = out_shape.w.max(1);
            if let Some(t) = &small {
                self.small_rows(pairs, (per_out, w), t, &block, (output, out_c, first, n));
                first += n;
                continue;
            }
            let mut at = 0;
            let mut pixels = output.chunks_exact_mut(out_c);
            while let Some(px) = pixels.next() {
                let Some(out) = px.get_mut(first..first + n) else {
                    return;
                };
                self.gather(pairs, window, per_out, at / w, at % w);
                match pixels.next() {
                    Some(next) => {
                        let Some(out2) = next.get_mut(first..first + n) else {
                            return;
                        };
                        self.gather(pairs, window2, per_out, (at + 1) / w, (at + 1) % w);
                        let windows = [&window[..], &window2[..]];
                        pairs
                            .isa
                            .pixel2(windows, weights, per_out, &block, [out, out2]);
                    }
                    None => pairs.isa.pixel(window, weights, per_out, &block, out),
                }
                at += 2;
            }
            first += n;
        }
    }

    /// Every output pixel of the `n` channels from `first` by [`Isa::row_small`]: the
    /// windows of [`SMALL_RUN`] pixels at a time are gathered first, so that each group of
    /// channels keeps its constants in registers over them.
    fn small_rows<I: Isa>(
        &self,
        pairs: Pairs<I>,
        (per_out, w): (usize, usize),
        weights: &SmallWeights,
        block: &ChannelBlock,
        (output, out_c, first, n): (&mut [i8], usize, usize, usize),
    ) {
        let stride = 2 * weights.pairs;
        with_prefix::<i16, { SMALL_RUN * 2 * SMALL_PAIRS }, _>(SMALL_RUN * stride, |buffer| {
            let out = (output, out_c, first, n);
            self.small_runs(pairs, (per_out, w), weights, block, buffer, out);
        });
    }

    /// [`Windows::small_rows`] in the window buffer `buffer`.
    fn small_runs<I: Isa>(
        &self,
        pairs: Pairs<I>,
        (per_out, w): (usize, usize),
        weights: &SmallWeights,
        block: &ChannelBlock,
        buffer: &mut [i16],
        (output, out_c, first, n): (&mut [i8], usize, usize, usize),
    ) {
        let stride = 2 * weights.pairs;
        let pixels = output.len() / out_c.max(1);
        let mut px = 0;
        while px < pixels {
            let count = (pixels - px).min(SMALL_RUN);
            for (i, window) in buffer
                .chunks_exact_mut(stride.max(1))
                .take(count)
                .enumerate()
            {
                self.gather(pairs, window, per_out, (px + i) / w, (px + i) % w);
            }
            let windows = buffer.get(..count * stride).unwrap_or_default();
            let out = output.get_mut(px * out_c + first..).unwrap_or_default();
            pairs
                .isa
                .row_small((windows, stride), weights, block, (out, out_c, n));
            px += count;
        }
    }

    /// The windows of the `count` output pixels from `first` (row-major over `out_w`
    /// columns) into `buffer`, pixel `i`'s at `i * stride` (`per_out` rounded up to a
    /// multiple of `K::TAPS`), writing anything past each window's taps: the runs of pixels
    /// of one output row whose windows lie inside the input (without horizontal dilation)
    /// are their kernel rows' runs of bytes, converted by one [`Product::taps_runs`]; the
    /// others are gathered one at a time.
    fn gather_run<K: Product>(
        &self,
        k: K,
        buffer: &mut [K::Tap],
        per_out: usize,
        (first, count): (usize, usize),
        out_w: usize,
    ) {
        const MAX_ROWS: usize = 16;
        let (g, s) = (self.g, self.in_shape);
        let stride = per_out.next_multiple_of(K::TAPS);
        let out_w = out_w.max(1);
        let (lo, hi) = interior_columns(g, s.w, out_w);
        let mut i = 0;
        while i < count {
            let px = first + i;
            let (oy, ox) = (px / out_w, px % out_w);
            let y0 = oy * g.stride_h;
            let whole_rows = valid_taps(y0, g.kh, g.dil_h, g.pad_top, s.h) == (0, g.kh);
            let window = buffer.get_mut(i * stride..).unwrap_or_default();
            if !whole_rows || ox < lo || ox >= hi || g.dil_w != 1 || g.kh > MAX_ROWS {
                self.gather(k, window, per_out, oy, ox);
                i += 1;
                continue;
            }
            let n = (hi - ox).min(count - i);
            let mut starts = [0usize; MAX_ROWS];
            let ix = ox * g.stride_w - g.pad_left;
            for (ky, start) in starts.iter_mut().enumerate().take(g.kh) {
                let iy = y0 + ky * g.dil_h - g.pad_top;
                *start = (iy * s.w + ix) * s.c;
            }
            let starts = starts.get(..g.kh).unwrap_or_default();
            let pixels = (n, g.stride_w * s.c, stride);
            k.taps_runs(window, self.input, (starts, g.kw * s.c), pixels);
            i += n;
        }
    }

    /// Writes the window of output pixel `(oy, ox)`, `k`'s tap of each input byte in
    /// `[ky][kx][c]` order and its padding tap in the padding, into `window[..per_out]`.
    #[inline]
    fn gather<K: Product>(
        &self,
        k: K,
        window: &mut [K::Tap],
        per_out: usize,
        oy: usize,
        ox: usize,
    ) {
        let (g, s) = (self.g, self.in_shape);
        let (y0, x0) = (oy * g.stride_h, ox * g.stride_w);
        let ky = valid_taps(y0, g.kh, g.dil_h, g.pad_top, s.h);
        let kx = valid_taps(x0, g.kw, g.dil_w, g.pad_left, s.w);
        if ky != (0, g.kh) || kx != (0, g.kw) {
            if let Some(taps) = window.get_mut(..per_out) {
                taps.fill(k.pad());
            }
        }
        // Without horizontal dilation a kernel row's valid taps are one run of bytes in both
        // the input row and the window; with it, every tap is its own run.
        let (run_taps, step) = if g.dil_w == 1 {
            (kx.1 - kx.0, (kx.1 - kx.0).max(1))
        } else {
            (1, 1)
        };
        let run = run_taps * s.c;
        for ky in ky.0..ky.1 {
            let iy = y0 + ky * g.dil_h - g.pad_top;
            for kx in (kx.0..kx.1).step_by(step) {
                let ix = x0 + kx * g.dil_w - g.pad_left;
                let src = self.input.get((iy * s.w + ix) * s.c..).unwrap_or_default();
                let dst = window.get_mut((ky * g.kw + kx) * s.c..).unwrap_or_default();
                let (dst, src) = (
                    dst.get_mut(..run).unwrap_or_default(),
                    src.get(..run).unwrap_or_default(),
                );
                if run < 16 {
                    // A few bytes (a first layer's pixels): cheaper here than a call.
                    for (d, &x) in dst.iter_mut().zip(src) {
                        *d = k.tap(x);
                    }
                } else {
                    k.taps(dst, src);
                }
            }
        }
    }
}

/// `i16` elements of the padded map [`two_channels_to_one`] builds on the stack.
const PLANE_MAX: usize = 8192;

/// Taps (`kh * kw`) [`two_channels_to_one`] takes.
const MAX_TAPS: usize = 64;

/// Two input channels, one output channel, stride and dilation 1: CBAM's spatial attention
/// (a `k x k` convolution of the pooled `[mean; max]` maps). Per pixel the window would be
/// gathered for a single dot product, so instead the whole input is widened once into a
/// zero-padded copy and every tap's (channel 0, channel 1) pair, one `i32`, is multiplied
/// against eight neighbouring output pixels at a time. `None` when the op is not of this
/// shape or too large for the stack copy.
// Out of line so that its 16 KiB copy is not part of every other convolution's frame.
#[inline(never)]
fn two_channels_to_one<I: Isa>(
    isa: I,
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    offset: i16,
) -> Option<bool> {
    let g = &p.geometry;
    let unit = [g.stride_h, g.stride_w, g.dil_h, g.dil_w] == [1; 4];
    if !unit || in_shape.c != 2 || out_shape.c != 1 || g.kh * g.kw > MAX_TAPS {
        return None;
    }
    let wp = g.pad_left + in_shape.w + g.pad_right;
    let hp = g.pad_top + in_shape.h + g.pad_bottom;
    // A row's last group of eight may read up to seven pixels past the map.
    let len = hp.checked_mul(wp)?.checked_add(8)?.checked_mul(2)?;
    if len > PLANE_MAX {
        return None;
    }
    with_prefix::<i16, PLANE_MAX, _>(len, |plane| {
        pair_rows(
            isa,
            p,
            (in_shape, input),
            (out_shape, output),
            (plane, wp),
            offset,
        )
    })
}

/// [`two_channels_to_one`] in the zeroed plane `plane` of `wp` pixels per row.
fn pair_rows<I: Isa>(
    isa: I,
    p: &Conv2dParams,
    (in_shape, input): (Shape, &[i8]),
    (out_shape, output): (Shape, &mut [i8]),
    (plane, wp): (&mut [i16], usize),
    offset: i16,
) -> Option<bool> {
    let g = &p.geometry;
    let row = 2 * in_shape.w;
    for (y, src) in input.chunks_exact(row.max(1)).enumerate() {
        let at = 2 * ((y + g.pad_top) * wp + g.pad_left);
        isa.widen(plane.get_mut(at..at + row)?, src, offset);
    }
    let mut taps = [0i32; MAX_TAPS];
    for (t, pair) in taps.iter_mut().zip(p.weights.chunks_exact(2)) {
        if let [w0, w1] = pair {
            let (lo, hi) = (i16::from(*w0) as u16, i16::from(*w1) as u16);
            *t = (u32::from(lo) | (u32::from(hi) << 16)) as i32;
        }
    }
    let taps = taps.get(..g.kh * g.kw)?;
    let block = ChannelBlock::new(&p.quant, 0, 1);
    for (oy, out) in output.chunks_exact_mut(out_shape.w.max(1)).enumerate() {
        let from = plane.get(2 * oy * wp..)?;
        isa.pair_row(from, wp, taps, g.kw, &block, out);
    }
    Some(true)
}
