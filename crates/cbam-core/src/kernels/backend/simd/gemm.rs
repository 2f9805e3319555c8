//! CONV2D as a register-blocked matrix product, with the output channels in the vector
//! lanes: each output pixel's window (`x + offset` as `i16`, zero in the padding) is one
//! row of the left matrix, and the weights, repacked once per layer into panels of
//! [`PANEL`] channels, the right one. The [`Isa::gemm_run`] micro-kernel multiplies a
//! pair of taps of up to four pixels, broadcast, against the same pair of taps of
//! [`PANEL`] channels, so that its accumulators are whole output vectors: no horizontal
//! sums, and one requantization per [`PANEL`] outputs.
//!
//! The order of the loops keeps both operands in the L1 cache: channel blocks (one
//! [`ChannelBlock`] of constants and the panels of its weights) outside, then runs of
//! pixels whose windows are gathered once into a stack buffer, then each panel over the
//! run, a few pixels at a time.

use super::isa::{ChannelBlock, Isa, BLOCK};

/// Output channels per panel, the micro-kernel's width.
pub(crate) const PANEL: usize = 16;

/// `i32` words of packed weights on the stack (64 KiB): a block's panels.
const PACKED_WORDS: usize = 16_384;

/// Longest window (taps) the matrix product takes: one panel's pairs fill the buffer.
pub(crate) const MAX_TAPS: usize = 2 * PACKED_WORDS / PANEL;

/// The matrix product pays for its packing from one output pixel per this many taps of
/// window on (measured on the example models' layers, AVX2).
pub(crate) const TAPS_PER_PIXEL: usize = 12;

/// `i16` elements of gathered windows on the stack (16 KiB).
const ROWS_LEN: usize = 8192;

/// Most pixels gathered at a time: the run stays in the L1 cache beside a panel.
const MAX_RUN: usize = 64;

/// The weights of the channels `first..first + n` of a block, as panels of [`PANEL`]
/// channels (`packed` holds whole panels): panel `s`'s word `j * PANEL + o` holds taps `2j` (low half) and `2j + 1`
/// (high half) of channel `first + s * PANEL + o` as `i16`; taps past the window and
/// channels past `n` are zero.
#[cfg(any(test, cbam_backend = "neon"))]
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

/// Every output pixel of a convolution whose windows are `per_out <= MAX_TAPS` taps long:
/// `fill(windows, first, count)` writes the windows of the `count` output pixels from
/// `first` (`x + offset`, zero in the padding), pixel `i`'s into
/// `windows[i * stride..][..per_out]` (`stride` is `per_out` rounded up to even); it may
/// write anything past a window's taps (the buffer is not cut to the windows).
/// With `contiguous`, the windows of consecutive pixels are consecutive runs of `per_out`
/// input bytes from `contiguous.0` (a 1x1 convolution), and an even-length run of them
/// is widened with one call.
/// `output` holds whole pixels of `out_c` channels.
pub(crate) fn conv<I: Isa>(
    isa: I,
    (weights, per_out): (&[i8], usize),
    quant: &crate::kernels::ChannelQuant,
    output: &mut [i8],
    out_c: usize,
    fill: (Option<(&[i8], i16)>, impl FnMut(&mut [i16], usize, usize)),
) {
    let pairs = per_out.div_ceil(2);
    let packed = out_c.min(BLOCK).next_multiple_of(PANEL) * pairs;
    let rows = MAX_RUN * 2 * pairs;
    // The buffers are zeroed on every call (the language wants them initialised): a
    // layer that needs a quarter or a sixteenth of them gets buffers of that size, the
    // same blocks and runs for a fraction of the zeroing.
    if packed <= PACKED_WORDS / 16 && rows <= ROWS_LEN / 4 {
        conv_in::<I, { PACKED_WORDS / 16 }, { ROWS_LEN / 4 }>(
            isa,
            (weights, per_out),
            quant,
            (output, out_c),
            fill,
        );
    } else if packed <= PACKED_WORDS / 4 && rows <= ROWS_LEN / 2 {
        conv_in::<I, { PACKED_WORDS / 4 }, { ROWS_LEN / 2 }>(
            isa,
            (weights, per_out),
            quant,
            (output, out_c),
            fill,
        );
    } else {
        conv_in::<I, PACKED_WORDS, ROWS_LEN>(isa, (weights, per_out), quant, (output, out_c), fill);
    }
}

/// [`conv`] with `PW` words of packed weights and `RL` elements of windows on the stack.
// Out of line so that its buffers are not part of its caller's frame.
#[inline(never)]
fn conv_in<I: Isa, const PW: usize, const RL: usize>(
    isa: I,
    (weights, per_out): (&[i8], usize),
    quant: &crate::kernels::ChannelQuant,
    (output, out_c): (&mut [i8], usize),
    (contiguous, mut fill): (Option<(&[i8], i16)>, impl FnMut(&mut [i16], usize, usize)),
) {
    let pairs = per_out.div_ceil(2);
    let stride = 2 * pairs;
    if per_out == 0 || per_out > MAX_TAPS || out_c == 0 {
        return;
    }
    let pixels = output.len() / out_c;
    // Channels per block: as many panels as the buffer holds, at most one ChannelBlock.
    let block_c = (PW / (pairs * PANEL) * PANEL).min(BLOCK);
    let run = (RL / stride).min(MAX_RUN);
    if block_c == 0 || run == 0 {
        return;
    }
    let mut packed = [0i32; PW];
    let mut rows = [0i16; RL];
    let mut first = 0;
    while first < out_c {
        let n = (out_c - first).min(block_c);
        let block = ChannelBlock::new(quant, first, n);
        let panels = n.div_ceil(PANEL);
        let block_weights = weights
            .get(first * per_out..(first + n) * per_out)
            .unwrap_or_default();
        let packed = packed.get_mut(..panels * pairs * PANEL).unwrap_or_default();
        isa.pack_panels(block_weights, per_out, pairs, packed);
        let mut px = 0;
        while px < pixels {
            let count = (pixels - px).min(run);
            match contiguous {
                Some((input, offset)) if per_out == stride => {
                    let src = input.get(px * per_out..).unwrap_or_default();
                    let src = src.get(..count * per_out).unwrap_or_default();
                    isa.widen(
                        rows.get_mut(..count * stride).unwrap_or_default(),
                        src,
                        offset,
                    );
                }
                _ => {
                    fill(&mut rows, px, count);
                    if stride > per_out {
                        // The odd tap's partner (the fill may have written past the taps).
                        for window in rows.chunks_exact_mut(stride).take(count) {
                            if let Some(last) = window.last_mut() {
                                *last = 0;
                            }
                        }
                    }
                }
            }
            for (s, panel) in packed.chunks_exact(pairs * PANEL).enumerate() {
                let at = s * PANEL;
                let len = (n - at).min(PANEL);
                let windows = rows.get(..count * stride).unwrap_or_default();
                let out = output
                    .get_mut(px * out_c + first + at..)
                    .unwrap_or_default();
                isa.gemm_run(
                    (windows, stride),
                    count,
                    panel,
                    (&block, at),
                    (out, out_c, len),
                );
            }
            px += count;
        }
        first += n;
    }
}
