//! The loop shared by the accumulating kernels whose weights are one row per output channel
//! (CONV2D, its pointwise path, FULLY_CONNECTED): output channels in groups of four, and
//! inside a group every output pixel.
//!
//! Channel-outer order decodes each channel's bias and requantizer once per layer instead
//! of once per pixel, keeps the group's four weight rows hot, and lets the inner product
//! load each input byte once for four channels.

use super::backend::ActBounds;
use super::requant::OutputStage;

/// Splits `group` (four consecutive weight rows of `len` bytes) into its rows.
#[inline(always)]
fn four_rows(group: &[i8], len: usize) -> Option<[&[i8]; 4]> {
    let mut rows = group.chunks_exact(len);
    Some([rows.next()?, rows.next()?, rows.next()?, rows.next()?])
}

/// An accumulating layer's weights, one row of `per_out` bytes per output channel, and
/// its output tensor of `out_c`-byte pixels.
pub(crate) struct RowLayer<'a, 'o> {
    /// The layer's activation range, as the backend's output stages read it.
    pub act: ActBounds,
    pub weights: &'a [i8],
    pub per_out: usize,
    pub output: &'o mut [i8],
    pub out_c: usize,
}

/// For every output channel, `clamp(requant(bias + acc) + zp)` at every output pixel
/// (`pixels` yields one descriptor per output pixel), with the channels' `stages` in
/// order. `four(pixel, rows)` gives the accumulators of four channels whose weight rows
/// are `rows`; `one(pixel, row)` those of a single channel (the last `out_c % 4`).
#[inline(always)]
pub(crate) fn for_each_channel<S: OutputStage, P: Copy, I: Iterator<Item = P>>(
    layer: RowLayer,
    mut quant: impl Iterator<Item = S>,
    pixels: impl Fn() -> I,
    mut four: impl FnMut(P, [&[i8]; 4]) -> [i32; 4],
    mut one: impl FnMut(P, &[i8]) -> i32,
) {
    let RowLayer {
        act,
        weights,
        per_out,
        output,
        out_c,
    } = layer;
    if per_out == 0 || out_c == 0 {
        return; // the callers handle empty shapes; chunks of 0 would panic
    }
    let mut first = 0;
    let mut groups = weights.chunks_exact(4 * per_out);
    for group in &mut groups {
        let (Some(rows), Some(q0), Some(q1), Some(q2), Some(q3)) = (
            four_rows(group, per_out),
            quant.next(),
            quant.next(),
            quant.next(),
            quant.next(),
        ) else {
            return;
        };
        let stages = [q0, q1, q2, q3];
        for (pixel, out_px) in pixels().zip(output.chunks_exact_mut(out_c)) {
            let acc = four(pixel, rows);
            if let Some(outs) = out_px
                .get_mut(first..)
                .and_then(<[i8]>::first_chunk_mut::<4>)
            {
                *outs = S::finish4(&stages, acc, act);
            }
        }
        first += 4;
    }
    for row in groups.remainder().chunks_exact(per_out) {
        let Some(stage) = quant.next() else {
            return;
        };
        for (pixel, out_px) in pixels().zip(output.chunks_exact_mut(out_c)) {
            if let Some(out) = out_px.get_mut(first) {
                *out = stage.finish(one(pixel, row));
            }
        }
        first += 1;
    }
}
