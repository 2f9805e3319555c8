//! CONV2D as a register-blocked matrix product, with the output channels in the vector
//! lanes: each output pixel's window (`x + offset` as `i16`, zero in the padding) is one
//! row of the left matrix, and the weights, repacked once per layer into panels of
//! [`PANEL`] channels, the right one. The [`Isa::gemm_run`] micro-kernel multiplies a
//! pair of taps of up to four pixels, broadcast, against the same pair of taps of
//! [`PANEL`] channels, so that its accumulators are whole output vectors: no horizontal
//! sums, and one requantization per [`PANEL`] outputs.
//!
//! Where the CPU has four-byte dot products ([`DotIsa`]), the same loops run over byte
//! windows and panels of tap quads ([`Quads`]) instead of `i16` windows and tap pairs
//! ([`Pairs`]): twice the multiply-adds per instruction and half the window bytes.
//!
//! The order of the loops keeps both operands in the L1 cache: channel blocks (one
//! [`ChannelBlock`] of constants and the panels of its weights) outside, then runs of
//! pixels whose windows are gathered once into a stack buffer, then each panel over the
//! run, a few pixels at a time.

use super::isa::{ChannelBlock, DotIsa, Isa, BLOCK};
use super::prepacked::{Format, Layout};
use super::scratch::with_prefix;

/// Output channels per panel, the micro-kernel's width.
pub(crate) const PANEL: usize = 16;

/// `i32` words of packed weights on the stack (64 KiB): a block's panels.
const PACKED_WORDS: usize = 16_384;

/// Longest window (taps) the matrix product takes: one panel's pairs fill the buffer.
pub(crate) const MAX_TAPS: usize = 2 * PACKED_WORDS / PANEL;

/// The matrix product pays for its packing from one output pixel per this many taps of
/// window on (measured on the example models' layers, AVX2).
pub(crate) const TAPS_PER_PIXEL: usize = 12;

/// Taps of gathered windows on the stack (16 KiB of `i16`, 8 KiB of bytes).
const ROWS_LEN: usize = 8192;

/// Most pixels gathered at a time: the run stays in the L1 cache beside a panel.
const MAX_RUN: usize = 256;

/// The weights of the channels `first..first + n` of a block, as panels of [`PANEL`]
/// channels (`packed` holds whole panels): panel `s`'s word `j * PANEL + o` holds taps `2j` (low half) and `2j + 1`
/// (high half) of channel `first + s * PANEL + o` as `i16`; taps past the window and
/// channels past `n` are zero.
#[cfg(test)]
pub(crate) fn pack(weights: &[i8], per_out: usize, pairs: usize, packed: &mut [i32]) {
    let panel_len = pairs * PANEL;
    for (panel, rows) in packed
        .chunks_exact_mut(panel_len.max(1))
        .zip(weights.chunks(PANEL * per_out.max(1)))
    {
        panel.fill(0);
        for (o, row) in rows.chunks_exact(per_out.max(1)).enumerate() {
            let (twos, odd) = row.as_chunks::<2>();
            let words = panel.iter_mut().skip(o).step_by(PANEL);
            for (word, &[lo, hi]) in words.zip(twos) {
                *word = i32::from(i16::from(lo) as u16) | (i32::from(hi) << 16);
            }
            if let (Some(&lo), Some(word)) = (odd.first(), panel.get_mut(twos.len() * PANEL + o)) {
                *word = i32::from(i16::from(lo) as u16);
            }
        }
    }
}

/// The two forms of the matrix product: the window element, how many taps a packed word
/// holds, and the packing and micro-kernel of each.
pub(crate) trait Product: Copy {
    /// A window tap as the micro-kernel reads it.
    type Tap: Copy + Default;

    /// Taps per packed weight word (and the multiple a window's stride is rounded to).
    const TAPS: usize;

    /// How its packed weights are laid out, for gathered windows and for windows read in
    /// place (rows padded to whole words).
    const FORMAT: Format;
    const IN_PLACE_FORMAT: Format;

    /// Longest window (taps, rows rounded up to whole words) read in place.
    const IN_PLACE_TAPS: usize;

    /// The weights of a block's `n` channels (`per_out` each) as panels of [`PANEL`]
    /// channels, `words` words per channel each (see [`pack`] and [`pack_quads`]), and
    /// what their accumulators start from into `start` (where the micro-kernel reads it).
    fn pack(
        self,
        block: &ChannelBlock,
        weights: (&[i8], usize),
        words: usize,
        packed: &mut [i32],
        start: &mut [i32; BLOCK],
    );

    /// The tap of the input byte `x`.
    fn tap(self, x: i8) -> Self::Tap;

    /// The tap of a padding position (an input byte equal to the zero point).
    fn pad(self) -> Self::Tap;

    /// `src`'s bytes as taps, into the start of `dst`.
    fn taps(self, dst: &mut [Self::Tap], src: &[i8]);

    /// [`Product::taps`] of several runs of `run` bytes for each of `count` pixels, as
    /// [`Isa::widen_runs`] widens them.
    fn taps_runs(
        self,
        dst: &mut [Self::Tap],
        src: &[i8],
        runs: (&[usize], usize),
        pixels: (usize, usize, usize),
    );

    /// The micro-kernel over a run of pixels (see [`Isa::gemm_run`], [`DotIsa::gemm_quads`]).
    fn run(
        self,
        windows: (&[Self::Tap], usize),
        pixels: usize,
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    );

    /// The micro-kernel over windows read in place (see [`Isa::gemm_in_place`],
    /// [`DotIsa::gemm_in_place`]).
    fn run_in_place(
        self,
        src: &[Self::Tap],
        windows: (&[usize], &[usize]),
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    );
}

/// `i16` windows (`x + offset`, 0 in the padding) by tap pairs: every [`Isa`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pairs<I> {
    pub isa: I,
    pub offset: i16,
}

impl<I: Isa> Product for Pairs<I> {
    type Tap = i16;
    const TAPS: usize = 2;
    const FORMAT: Format = Format::Pairs;
    const IN_PLACE_FORMAT: Format = Format::InPlacePairs;
    // The AVX2 pair tile broadcasts one pair per load either way, but the NEON one loads
    // eight taps of a gathered window at once: its in-place rows past a first layer's few
    // channels cost more instructions than gathering saves.
    const IN_PLACE_TAPS: usize = 256;

    /// The pair micro-kernels start from the block's bias: `start` is not theirs.
    #[inline]
    fn pack(
        self,
        _: &ChannelBlock,
        (weights, per_out): (&[i8], usize),
        words: usize,
        packed: &mut [i32],
        _: &mut [i32; BLOCK],
    ) {
        self.isa.pack_panels(weights, per_out, words, packed);
    }

    #[inline(always)]
    fn tap(self, x: i8) -> i16 {
        i16::from(x).wrapping_add(self.offset)
    }

    #[inline(always)]
    fn pad(self) -> i16 {
        0
    }

    #[inline]
    fn taps(self, dst: &mut [i16], src: &[i8]) {
        self.isa.widen(dst, src, self.offset);
    }

    #[inline]
    fn taps_runs(
        self,
        dst: &mut [i16],
        src: &[i8],
        runs: (&[usize], usize),
        pixels: (usize, usize, usize),
    ) {
        self.isa.widen_runs(dst, src, runs, pixels, self.offset);
    }

    #[inline]
    fn run(
        self,
        windows: (&[i16], usize),
        pixels: usize,
        panel: &[i32],
        (block, _, at): (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    ) {
        self.isa.gemm_run(windows, pixels, panel, (block, at), out);
    }

    #[inline]
    fn run_in_place(
        self,
        src: &[i16],
        windows: (&[usize], &[usize]),
        panel: &[i32],
        (block, _, at): (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    ) {
        self.isa
            .gemm_in_place(src, windows, panel, (block, at), out);
    }
}

/// Byte windows (`x ^ KEY`, the zero point's byte in the padding) by tap quads: a
/// [`DotIsa`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quads<D> {
    pub dot: D,
    /// The input zero point (an int8 value).
    pub zp: i32,
}

impl<D: DotIsa> Quads<D> {
    /// The window byte of the input byte `x`.
    #[inline(always)]
    pub(crate) fn byte(x: i8) -> u8 {
        x as u8 ^ D::KEY
    }

    /// [`Quads::byte`] of sixteen bytes, as one 128-bit XOR (the compiler leaves a
    /// byte loop a byte loop here).
    #[inline(always)]
    fn bytes16(to: &mut [u8; 16], from: &[i8; 16]) {
        let key = u128::from_ne_bytes([D::KEY; 16]);
        *to = (u128::from_ne_bytes(from.map(|x| x as u8)) ^ key).to_ne_bytes();
    }

    /// What the window byte adds to the input byte.
    const KEY_VALUE: i32 = if D::KEY == 0x80 { 128 } else { 0 };

    /// The accumulators start this many times each channel's sum of weights lower, which
    /// cancels the key and the zero point.
    #[inline(always)]
    pub(crate) fn k(self) -> i32 {
        self.zp.wrapping_add(Self::KEY_VALUE)
    }
}

impl<D: DotIsa> Product for Quads<D> {
    type Tap = u8;
    const TAPS: usize = 4;
    const FORMAT: Format = Format::Quads;
    const IN_PLACE_FORMAT: Format = Format::InPlaceQuads;
    const IN_PLACE_TAPS: usize = D::IN_PLACE_TAPS;

    fn pack(
        self,
        block: &ChannelBlock,
        (weights, per_out): (&[i8], usize),
        words: usize,
        packed: &mut [i32],
        start: &mut [i32; BLOCK],
    ) {
        let mut sums = [0i32; BLOCK];
        self.dot.pack(weights, per_out, words, packed, &mut sums);
        let k = self.k();
        for ((s, &bias), &sum) in start.iter_mut().zip(&block.bias).zip(&sums) {
            *s = bias.wrapping_sub(k.wrapping_mul(sum));
        }
    }

    #[inline(always)]
    fn tap(self, x: i8) -> u8 {
        Self::byte(x)
    }

    #[inline(always)]
    fn pad(self) -> u8 {
        Self::byte(self.zp as i8)
    }

    #[inline]
    fn taps(self, dst: &mut [u8], src: &[i8]) {
        let n = dst.len().min(src.len());
        let (dst, src) = (
            dst.get_mut(..n).unwrap_or_default(),
            src.get(..n).unwrap_or_default(),
        );
        let (to, to_rest) = dst.as_chunks_mut::<16>();
        let (from, from_rest) = src.as_chunks::<16>();
        for (to, from) in to.iter_mut().zip(from) {
            Self::bytes16(to, from);
        }
        for (d, &x) in to_rest.iter_mut().zip(from_rest) {
            *d = Self::byte(x);
        }
    }

    #[inline]
    fn taps_runs(
        self,
        dst: &mut [u8],
        src: &[i8],
        runs: (&[usize], usize),
        pixels: (usize, usize, usize),
    ) {
        self.dot.taps_runs(dst, src, runs, pixels);
    }

    #[inline]
    fn run(
        self,
        windows: (&[u8], usize),
        pixels: usize,
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    ) {
        self.dot.gemm_quads(windows, pixels, panel, block, out);
    }

    #[inline]
    fn run_in_place(
        self,
        src: &[u8],
        windows: (&[usize], &[usize]),
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    ) {
        self.dot.gemm_in_place(src, windows, panel, block, out);
    }
}

/// The weights of a block's channels as panels of [`PANEL`] channels by tap quads: panel
/// `s`'s word `j * PANEL + o` holds taps `4j..4j + 4` of channel `s * PANEL + o` as
/// little-endian bytes; taps past the window and channels past the block are zero. Each
/// channel's sum of weights goes into `sums`.
#[cfg(test)]
pub(crate) fn pack_quads(
    weights: &[i8],
    per_out: usize,
    quads: usize,
    packed: &mut [i32],
    sums: &mut [i32; BLOCK],
) {
    let panel_len = quads * PANEL;
    for (panel, rows) in packed
        .chunks_exact_mut(panel_len.max(1))
        .zip(weights.chunks(PANEL * per_out.max(1)))
    {
        panel.fill(0);
        for (o, row) in rows.chunks_exact(per_out.max(1)).enumerate() {
            let words = panel.iter_mut().skip(o).step_by(PANEL);
            for (word, quad) in words.zip(row.chunks(4)) {
                let mut b = [0u8; 4];
                for (b, &w) in b.iter_mut().zip(quad) {
                    *b = w as u8;
                }
                *word = i32::from_le_bytes(b);
            }
        }
    }
    for (sum, row) in sums.iter_mut().zip(weights.chunks_exact(per_out.max(1))) {
        *sum = row.iter().map(|&w| i32::from(w)).sum();
    }
}

/// Every output pixel of a convolution whose windows are `per_out <= MAX_TAPS` taps long,
/// in the product `k`: `fill(windows, first, count)` writes the windows of the `count`
/// output pixels from `first`, pixel `i`'s into `windows[i * stride..][..per_out]`
/// (`stride` is `per_out` rounded up to a multiple of `K::TAPS`); it may write anything
/// past a window's taps (the buffer is not cut to the windows).
/// With `contiguous`, the windows of consecutive pixels are consecutive runs of `per_out`
/// input bytes (a 1x1 convolution), and a run of them whose length is a multiple of
/// `K::TAPS` is converted with one call.
/// `pre` is the layer packed by [`prepack`], or anything else (then the weights are
/// packed here, block by block). `output` holds whole pixels of `out_c` channels.
// Out of line so that its buffers are not part of its caller's frame.
#[inline(never)]
pub(crate) fn conv<K: Product>(
    k: K,
    (weights, per_out): (&[i8], usize),
    (quant, pre): (&crate::kernels::ChannelQuant, &[i32]),
    output: &mut [i8],
    out_c: usize,
    (contiguous, mut fill): (Option<&[i8]>, impl FnMut(&mut [K::Tap], usize, usize)),
) {
    let layout = layout::<K>(per_out, out_c);
    let stride = K::TAPS * layout.words;
    if per_out == 0 || per_out > MAX_TAPS || out_c == 0 {
        return;
    }
    let pixels = output.len() / out_c;
    let run = (ROWS_LEN / stride).min(MAX_RUN).min(pixels);
    if layout.block_c == 0 || run == 0 {
        return;
    }
    let pre = Some(pre).filter(|p| layout.holds(p));
    let packed_len = match pre {
        Some(_) => 0,
        None => out_c.min(layout.block_c).next_multiple_of(PANEL) * layout.words,
    };
    with_prefix::<i32, PACKED_WORDS, _>(packed_len, |packed| {
        with_prefix::<K::Tap, ROWS_LEN, _>(run * stride, |rows| {
            let fill = (contiguous, &mut fill);
            blocks(
                k,
                (weights, per_out),
                quant,
                (output, out_c),
                (layout, pre, run),
                (packed, rows),
                fill,
            );
        });
    });
}

/// Channels per block for windows of `words` packed words: as many panels as the stack
/// buffer holds, at most one [`ChannelBlock`].
fn block_c(words: usize) -> usize {
    (PACKED_WORDS / (words * PANEL).max(1) * PANEL).min(BLOCK)
}

/// How [`conv`] packs the weights of `out_c` channels of `per_out` taps in the product `K`.
pub(crate) fn layout<K: Product>(per_out: usize, out_c: usize) -> Layout {
    let words = per_out.div_ceil(K::TAPS);
    Layout {
        format: K::FORMAT,
        words,
        block_c: block_c(words),
        out_c,
    }
}

/// The rows of the block of channels `first..first + n`.
fn block_rows(weights: &[i8], per_out: usize, first: usize, n: usize) -> &[i8] {
    weights
        .get(first * per_out..(first + n) * per_out)
        .unwrap_or_default()
}

/// [`conv`]'s packing of every block of the layer, done once ahead of its calls, into
/// `out` (at least [`layout`]'s length). `false`, writing nothing, for a layer [`conv`]
/// does not take or a buffer too short.
pub(crate) fn prepack<K: Product>(
    k: K,
    (weights, per_out): (&[i8], usize),
    quant: &crate::kernels::ChannelQuant,
    out_c: usize,
    out: &mut [i32],
) -> bool {
    let layout = layout::<K>(per_out, out_c);
    if per_out == 0 || per_out > MAX_TAPS {
        return false;
    }
    layout.pack(out, |first, n, panels, start| {
        let block = ChannelBlock::new(quant, first, n);
        let rows = (block_rows(weights, per_out, first, n), per_out);
        k.pack(&block, rows, layout.words, panels, start);
    })
}

/// The loops of [`conv`] over channel blocks, runs of pixels and panels, in the buffers
/// `packed` (a block's panels, unless `pre` holds them all) and `rows` (a run's windows).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn blocks<K: Product>(
    k: K,
    (weights, per_out): (&[i8], usize),
    quant: &crate::kernels::ChannelQuant,
    (output, out_c): (&mut [i8], usize),
    (layout, pre, run): (Layout, Option<&[i32]>, usize),
    (packed, rows): (&mut [i32], &mut [K::Tap]),
    (contiguous, fill): (Option<&[i8]>, &mut impl FnMut(&mut [K::Tap], usize, usize)),
) {
    let words = layout.words;
    let stride = words * K::TAPS;
    let pixels = output.len() / out_c.max(1);
    let mut start = [0i32; BLOCK];
    let mut first = 0;
    while first < out_c {
        let n = (out_c - first).min(layout.block_c);
        let block = ChannelBlock::new(quant, first, n);
        let panels: &[i32] = match pre.and_then(|pre| layout.block(pre, first, n)) {
            Some((starts, panels)) => {
                start.iter_mut().zip(starts).for_each(|(s, &x)| *s = x);
                panels
            }
            None => {
                let len = n.div_ceil(PANEL) * words * PANEL;
                let packed = packed.get_mut(..len).unwrap_or_default();
                let rows = (block_rows(weights, per_out, first, n), per_out);
                k.pack(&block, rows, words, packed, &mut start);
                packed
            }
        };
        let mut px = 0;
        while px < pixels {
            let count = (pixels - px).min(run);
            match contiguous {
                Some(input) if per_out == stride => {
                    let src = input.get(px * per_out..).unwrap_or_default();
                    let src = src.get(..count * per_out).unwrap_or_default();
                    k.taps(rows.get_mut(..count * stride).unwrap_or_default(), src);
                }
                _ => {
                    fill(rows, px, count);
                    if stride > per_out {
                        // The fill may leave anything past a window's taps: zeroed,
                        // nothing but the window reaches an accumulator.
                        for window in rows.chunks_exact_mut(stride).take(count) {
                            if let Some(tail) = window.get_mut(per_out..) {
                                tail.fill(K::Tap::default());
                            }
                        }
                    }
                }
            }
            for (s, panel) in panels.chunks_exact(words * PANEL).enumerate() {
                let at = s * PANEL;
                let len = (n - at).min(PANEL);
                let windows = rows.get(..count * stride).unwrap_or_default();
                let out = output
                    .get_mut(px * out_c + first + at..)
                    .unwrap_or_default();
                k.run(
                    (windows, stride),
                    count,
                    panel,
                    (&block, &start, at),
                    (out, out_c, len),
                );
            }
            px += count;
        }
        first += n;
    }
}

/// Longest window, in taps with each row run rounded up to whole words, that
/// [`conv_in_place`] takes from any product (each has its own [`Product::IN_PLACE_TAPS`]):
/// a 3x3 window over 128 channels. Gathering costs most where a network's first layers
/// have few input channels (as much as multiplying), but on x86 it was still 6% of a
/// network of 3x3 layers of 32 and 64 channels; past this, a window's offsets and a
/// block's padded rows would crowd the stack.
pub(crate) const MAX_IN_PLACE_TAPS: usize = 1152;

/// Output pixels whose bases [`conv_in_place`] computes at a time.
const IN_PLACE_RUN: usize = 256;

/// A convolution's windows as they lie in a copy of its input made of taps (keyed bytes
/// or widened `i16`): each window is rows of `run` taps, and each row is read as
/// `run.div_ceil(K::TAPS)` words of taps.
pub(crate) struct InPlace<'a, T> {
    /// The input as taps, with at least `K::TAPS - 1` taps after its last window.
    pub src: &'a [T],
    /// Word `j` of every window lies at its pixel's base plus `offs[j]` (in taps): the
    /// words of the first row, then those of the second, and so on.
    pub offs: &'a [usize],
    /// Taps in each row of a window.
    pub run: usize,
}

/// How [`conv_in_place`] packs `out_c` channels of windows of `rows` rows of `run`
/// taps (`per_out` in all) in the product `K`, or `None` for windows it does not take.
pub(crate) fn in_place_layout<K: Product>(
    per_out: usize,
    (rows, run): (usize, usize),
    out_c: usize,
) -> Option<Layout> {
    let words = rows.checked_mul(run.div_ceil(K::TAPS))?;
    let most = K::IN_PLACE_TAPS.min(MAX_IN_PLACE_TAPS);
    let fits = run > 0 && K::TAPS * words <= most && rows.checked_mul(run) == Some(per_out);
    fits.then(|| Layout {
        format: K::IN_PLACE_FORMAT,
        words,
        block_c: block_c(words),
        out_c,
    })
}

/// The rows of a block's weights (`per_out` each, in runs of `run`) with each run padded
/// with zeros to whole words of `word` taps, `taps` a row, into `padded`.
fn pad_runs(
    padded: &mut [i8],
    weights: &[i8],
    (per_out, run, word): (usize, usize, usize),
    taps: usize,
) {
    let run_words = run.div_ceil(word.max(1));
    for (dst, src) in padded
        .chunks_exact_mut(taps)
        .zip(weights.chunks_exact(per_out.max(1)))
    {
        for (d, s) in dst
            .chunks_exact_mut(word * run_words)
            .zip(src.chunks_exact(run.max(1)))
        {
            let (head, tail) = d.split_at_mut(run);
            head.copy_from_slice(s);
            tail.fill(0);
        }
    }
}

/// [`conv_in_place`]'s packing of every block of the layer (windows of `rows` rows of
/// `run` taps), done once ahead of its calls, into `out`. `false`, writing nothing, for
/// windows [`conv_in_place`] does not take or a buffer too short.
pub(crate) fn prepack_in_place<K: Product>(
    k: K,
    (weights, per_out): (&[i8], usize),
    quant: &crate::kernels::ChannelQuant,
    (out_c, window): (usize, (usize, usize)),
    out: &mut [i32],
) -> bool {
    let Some(layout) = in_place_layout::<K>(per_out, window, out_c) else {
        return false;
    };
    let taps = K::TAPS * layout.words;
    with_prefix::<i8, { BLOCK * MAX_IN_PLACE_TAPS }, _>(layout.block_c * taps, |padded| {
        layout.pack(out, |first, n, panels, start| {
            let block = ChannelBlock::new(quant, first, n);
            let rows = block_rows(weights, per_out, first, n);
            pad_runs(padded, rows, (per_out, window.1, K::TAPS), taps);
            let rows = (padded.get(..n * taps).unwrap_or_default(), taps);
            k.pack(&block, rows, layout.words, panels, start);
        })
    })
}

/// Every output pixel of a convolution by [`Product::run_in_place`], each window read
/// in `windows.src` from `base(pixel)`: each row rounded up to whole words, the taps past
/// a row multiplied by zero weights (so whatever taps follow it, the sums are the
/// window's). `per_out` is the window's rows times `run`; a window whose rows do not
/// match `offs` does nothing. `pre` is the layer packed by [`prepack_in_place`], or
/// anything else (then the weights are packed here).
#[inline(never)]
pub(crate) fn conv_in_place<K: Product>(
    k: K,
    (weights, per_out): (&[i8], usize),
    (quant, pre): (&crate::kernels::ChannelQuant, &[i32]),
    (output, out_c): (&mut [i8], usize),
    windows: &InPlace<K::Tap>,
    base: impl Fn(usize) -> usize,
) {
    let run_words = windows.run.div_ceil(K::TAPS);
    let words = windows.offs.len();
    let shape = (words / run_words.max(1), windows.run);
    let layout = in_place_layout::<K>(per_out, shape, out_c);
    let Some(layout) = layout.filter(|l| out_c > 0 && l.words == words && l.block_c > 0) else {
        return;
    };
    let taps = K::TAPS * words;
    let pixels = output.len() / out_c;
    let pre = Some(pre).filter(|p| layout.holds(p));
    let (packed_len, rows_len) = match pre {
        Some(_) => (0, 0),
        None => (
            out_c.min(layout.block_c).next_multiple_of(PANEL) * words,
            layout.block_c * taps,
        ),
    };
    with_prefix::<i32, PACKED_WORDS, _>(packed_len, |packed| {
        with_prefix::<i8, { BLOCK * MAX_IN_PLACE_TAPS }, _>(rows_len, |rows| {
            let mut start = [0i32; BLOCK];
            let mut bases = [0usize; IN_PLACE_RUN];
            let mut first = 0;
            while first < out_c {
                let n = (out_c - first).min(layout.block_c);
                let block = ChannelBlock::new(quant, first, n);
                let panels: &[i32] = match pre.and_then(|pre| layout.block(pre, first, n)) {
                    Some((starts, panels)) => {
                        start.iter_mut().zip(starts).for_each(|(s, &x)| *s = x);
                        panels
                    }
                    None => {
                        let block_weights = block_rows(weights, per_out, first, n);
                        let shape = (per_out, windows.run, K::TAPS);
                        pad_runs(rows, block_weights, shape, taps);
                        let len = n.div_ceil(PANEL) * words * PANEL;
                        let packed = packed.get_mut(..len).unwrap_or_default();
                        let rows = (rows.get(..n * taps).unwrap_or_default(), taps);
                        k.pack(&block, rows, words, packed, &mut start);
                        packed
                    }
                };
                let mut px = 0;
                while px < pixels {
                    let count = (pixels - px).min(IN_PLACE_RUN);
                    for (i, b) in bases.iter_mut().take(count).enumerate() {
                        *b = base(px + i);
                    }
                    let bases = bases.get(..count).unwrap_or_default();
                    for (s, panel) in panels.chunks_exact(words * PANEL).enumerate() {
                        let at = s * PANEL;
                        let len = (n - at).min(PANEL);
                        let out = output
                            .get_mut(px * out_c + first + at..)
                            .unwrap_or_default();
                        k.run_in_place(
                            windows.src,
                            (bases, windows.offs),
                            panel,
                            (&block, &start, at),
                            (out, out_c, len),
                        );
                    }
                    px += count;
                }
                first += n;
            }
        });
    });
}
