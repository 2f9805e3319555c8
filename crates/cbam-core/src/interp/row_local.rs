//! The ops whose output rows depend only on a window of input rows (convolutions, pools)
//! or on the same rows (ADD, LUT), run on some of their rows. Band-by-band stages and
//! row shares for parallel workers both run ops this way, through the same kernels as a
//! whole-tensor run.

use crate::blob::{Kernel, Op, Span};
use crate::error::Error;
use crate::kernels::add::{add, add_in_place, AddInPlace};
use crate::kernels::conv2d::conv2d;
use crate::kernels::depthwise::depthwise_conv2d;
use crate::kernels::pool::pool2d;
use crate::kernels::sigmoid::sigmoid;
use crate::kernels::{Conv2dParams, ConvGeometry, DepthwiseParams, PoolParams, Shape};
use crate::schedule::{RowWindow, Rows};

/// Which rows of an op to compute, and from which input rows.
#[derive(Clone, Copy, Debug)]
pub(super) struct RowJob {
    pub window: RowWindow,
    /// Input rows present in the input slices (of every input).
    pub in_rows: Rows,
    /// Output rows written to the output slice.
    pub rows: Rows,
}

impl RowJob {
    /// The rows `rows` of `op`'s output, from the input rows its window reads; `None` for an
    /// op that is not row-local.
    pub fn of(op: &Op, rows: Rows) -> Option<RowJob> {
        let window = RowWindow::of(&op.record.params)?;
        let in_h = op.inputs.first().copied().flatten()?.shape.h;
        Some(RowJob {
            window,
            in_rows: window.input_rows(in_h, rows),
            rows,
        })
    }
}

/// Runs `kernel` on `job.rows` of its output. `read(slot)` gives input `slot`'s rows
/// `job.in_rows`; `in_place` is the slot whose rows `out` holds on entry (an in-place ADD).
#[inline(always)]
pub(super) fn run_rows<'a>(
    kernel: &Kernel,
    in_place: Option<usize>,
    in0: Shape,
    out_full: Shape,
    job: RowJob,
    read: impl Fn(usize) -> Result<&'a [i8], Error>,
    out: &mut [i8],
) -> Result<(), Error> {
    let in_shape = Shape::new(job.in_rows.len(), in0.w, in0.c);
    let out_shape = Shape::new(job.rows.len(), out_full.w, out_full.c);
    let geometry = |g: &ConvGeometry| band_geometry(g, job);
    match kernel {
        Kernel::Conv2d(p) => {
            let p = Conv2dParams {
                geometry: geometry(&p.geometry),
                ..*p
            };
            conv2d(&p, in_shape, read(0)?, out_shape, out)
        }
        Kernel::Depthwise(p) => {
            let p = DepthwiseParams {
                geometry: geometry(&p.geometry),
                ..*p
            };
            depthwise_conv2d(&p, in_shape, read(0)?, out_shape, out)
        }
        Kernel::Pool(kind, p) => {
            let p = PoolParams {
                geometry: geometry(&p.geometry),
                ..*p
            };
            pool2d(*kind, &p, in_shape, read(0)?, out_shape, out)
        }
        Kernel::Add(p, channels) => match in_place {
            Some(0) => add_in_place(p, out, read(1)?, AddInPlace::First),
            Some(_) => add_in_place(p, out, read(0)?, AddInPlace::Second),
            None => add(p, out_shape, read(0)?, read(1)?, *channels, out),
        },
        Kernel::Lut(lut) => sigmoid(lut, read(0)?, out),
        _ => Err(Error::BadSchedule {
            stage: u16::MAX,
            reason: "an op that cannot run on bands",
        }),
    }
}

/// The geometry that computes output rows `job.rows` from input rows `job.in_rows` alone:
/// the top and bottom padding become what lies outside the rows (real padding only at the
/// map's edge).
fn band_geometry(g: &ConvGeometry, job: RowJob) -> ConvGeometry {
    let RowWindow::Window {
        kh,
        stride,
        dil,
        pad_top,
    } = job.window
    else {
        return *g;
    };
    let (input, out) = (job.in_rows, job.rows);
    let top = (input.start + pad_top).saturating_sub(out.start * stride);
    let span = dil * kh.saturating_sub(1) + 1;
    let reach = out.len().saturating_sub(1) * stride + span;
    let bottom = reach.saturating_sub(input.len() + top);
    ConvGeometry {
        pad_top: top,
        pad_bottom: bottom,
        ..*g
    }
}

/// The bytes of `rows` of a tensor of `shape` whose buffer `span` starts at row `origin`.
pub(super) fn rows_span(
    span: Span,
    shape: Shape,
    origin: usize,
    rows: Rows,
) -> Result<Span, Error> {
    let bad = Error::SliceLength {
        what: "rows outside their tensor's buffer",
    };
    let row_bytes = shape.w.checked_mul(shape.c).ok_or(bad)?;
    let skip = rows.start.checked_sub(origin).ok_or(bad)?;
    let start = span
        .start
        .checked_add(skip.checked_mul(row_bytes).ok_or(bad)?)
        .ok_or(bad)?;
    let len = rows.len().checked_mul(row_bytes).ok_or(bad)?;
    if start.saturating_add(len) > span.end() {
        return Err(bad);
    }
    Ok(Span { start, len })
}
