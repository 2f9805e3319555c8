//! The depthwise 3x3 interior on the DSP extension: the checked 3x3 window of
//! [`super::dot::mac_lanes4_3x3`] with its bounds checked once per output row.

use super::dot::mac_lanes4_3x3_run;
use crate::kernels::depthwise::Interior;
use crate::kernels::{ConvGeometry, Shape};

/// The interior of one group of four channels, row by row.
pub(super) struct InteriorRows<'a> {
    pub(super) g: &'a ConvGeometry,
    pub(super) in_shape: Shape,
    pub(super) interior: &'a Interior,
    /// The group's first channel.
    pub(super) first: usize,
}

impl InteriorRows<'_> {
    /// Every interior pixel of a whole 3x3 window without dilation, `finish` turning each
    /// pixel's accumulators (started from `offset_term`) into its outputs. The bytes each
    /// output row reads and writes are checked once for the row, so the per-pixel loop is
    /// the window's 27 multiply-accumulates and the output stage. `false` when a row does
    /// not fit the slices (the caller then takes the checked loop).
    #[inline]
    pub(super) fn run_3x3(
        &self,
        input: &[i8],
        weights: &[i8],
        output: &mut [i8],
        offset_term: [i32; 4],
        finish: impl Fn([i32; 4]) -> [i8; 4],
    ) -> bool {
        let (g, c, first) = (self.g, self.in_shape.c, self.first);
        let (cols, out_w) = (self.interior.cols, self.interior.out_w);
        let n = cols.1 - cols.0;
        let row_step = self.in_shape.w * c;
        let x_step = g.stride_w * c;
        let out_len = output.len();
        // A row's input from its first window and its output bytes.
        let span = |oy: usize| -> Option<(usize, usize, usize)> {
            let iy = (oy * g.stride_h).checked_sub(g.pad_top)?;
            let ix0 = (cols.0 * g.stride_w).checked_sub(g.pad_left)?;
            let x0 = (iy * self.in_shape.w + ix0) * c + first;
            let out0 = ((oy * out_w) + cols.0) * c + first;
            let out_end = out0.checked_add(n.checked_sub(1)? * c + 4)?;
            (out_end <= out_len).then_some((x0, out0, out_end))
        };
        let out_rows = self.interior.rows.0..self.interior.rows.1;
        if out_rows.clone().any(|oy| span(oy).is_none()) {
            return n == 0;
        }
        for oy in out_rows {
            let Some((x0, out0, out_end)) = span(oy) else {
                return true;
            };
            let (Some(x), Some(outs)) = (input.get(x0..), output.get_mut(out0..out_end)) else {
                return true;
            };
            let mut outs = outs.chunks_mut(c);
            let done = mac_lanes4_3x3_run(
                (x, n, x_step),
                row_step,
                (weights, c),
                offset_term,
                |_, acc| {
                    if let Some(out) = outs.next().and_then(<[i8]>::first_chunk_mut::<4>) {
                        *out = finish(acc);
                    }
                },
            );
            if !done {
                // The caller's checked loop then computes every interior pixel (again, for
                // the rows done here, with the same values).
                return false;
            }
        }
        true
    }
}
