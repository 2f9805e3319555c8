//! One inference with each row-local op's output rows shared out among workers. The core
//! stays single-threaded and allocation-free: it cuts an op's output into disjoint row
//! shares and hands them to a caller-given executor, which may run them on threads of its
//! own. Each share runs its rows through the same kernels and windows as a whole-tensor
//! run (see `row_local`), so the output is the same for any number of shares. The fused
//! CBAM op computes its channel attention on the calling thread, then shares out its three
//! later steps (the channel scaling with the pooled maps, the spatial convolution, the
//! spatial scaling), one after the other.

use core::array;

use super::row_local::{rows_span, run_rows, RowJob};
use super::{split, NoObserver, Observer};
use crate::blob::{Kernel, Model, Op, Span};
use crate::cbam;
use crate::error::Error;
use crate::kernels::{CbamParams, Shape};
use crate::le::{as_i8, as_i8_mut};
use crate::schedule::Rows;

/// The most shares one op is cut into.
pub const MAX_SHARES: usize = 16;

/// How [`Model::invoke_split`] shares ops out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Shares per op, normally the executor's worker count; 1 runs every op whole.
    pub shares: usize,
    /// The least work one share gets, in multiply-accumulates (output bytes for an op
    /// without any): handing a worker less costs more than it saves, so such ops are cut
    /// into fewer shares or run whole.
    pub min_share_work: u64,
    /// The fewest output pixels one share gets: a convolution's setup (its weights
    /// rearranged for the kernel) is paid once per share, so a share of a few pixels
    /// costs nearly as much as the whole op.
    pub min_share_pixels: usize,
}

/// Some output rows of one op (or of one step of it), ready to run on any thread.
pub struct RowShare<'a> {
    job: Option<ShareJob<'a>>,
    rows: Rows,
    result: Option<Result<(), Error>>,
}

enum ShareJob<'a> {
    /// A row-local op's rows.
    Rows {
        kernel: Kernel<'a>,
        in_place: Option<usize>,
        in0: Shape,
        out_shape: Shape,
        job: RowJob,
        /// The rows each input slot's share reads (empty for the slot the output
        /// overwrites).
        inputs: [&'a [i8]; 2],
        out: &'a mut [i8],
    },
    /// CBAM: the channel scaling of some rows' pixels and their pooled maps.
    CbamScale {
        p: CbamParams<'a>,
        data: &'a mut [i8],
        att_c: &'a [i8],
        maps: &'a mut [i8],
    },
    /// CBAM: rows of the spatial attention map, from the pooled maps' rows from
    /// `maps_first` on.
    CbamSpatial {
        p: CbamParams<'a>,
        shape: Shape,
        maps: &'a [i8],
        maps_first: usize,
        att: &'a mut [i8],
    },
    /// CBAM: the spatial scaling of some rows' pixels.
    CbamApply {
        p: CbamParams<'a>,
        data: &'a mut [i8],
        att_s: &'a [i8],
    },
}

impl<'a> RowShare<'a> {
    const IDLE: RowShare<'static> = RowShare {
        job: None,
        rows: Rows::EMPTY,
        result: None,
    };

    fn new(job: ShareJob<'a>, rows: Rows) -> Self {
        RowShare {
            job: Some(job),
            rows,
            result: None,
        }
    }
}

impl RowShare<'_> {
    /// Computes this share's rows. Runs once; later calls do nothing.
    pub fn run(&mut self) {
        let Some(job) = self.job.take() else {
            return;
        };
        let result = match job {
            ShareJob::Rows {
                kernel,
                in_place,
                in0,
                out_shape,
                job,
                inputs,
                out,
            } => {
                let read = |slot: usize| {
                    inputs.get(slot).copied().ok_or(Error::SliceLength {
                        what: "row share input slot",
                    })
                };
                run_rows(&kernel, in_place, in0, out_shape, job, read, out)
            }
            ShareJob::CbamScale {
                p,
                data,
                att_c,
                maps,
            } => {
                // No table: the host backends' loops need none.
                cbam::scale_channels_and_pool(&p, data, att_c, maps, &mut []);
                Ok(())
            }
            ShareJob::CbamSpatial {
                p,
                shape,
                maps,
                maps_first,
                att,
            } => {
                let rows = self.rows.start..self.rows.end;
                cbam::spatial_attention_rows(&p, shape, maps, maps_first, rows, att)
            }
            ShareJob::CbamApply { p, data, att_s } => {
                cbam::scale_pixels(&p, data, att_s);
                Ok(())
            }
        };
        self.result = Some(result);
    }

    /// The output rows this share writes, as `start..end`.
    pub fn rows(&self) -> core::ops::Range<usize> {
        self.rows.start..self.rows.end
    }
}

impl Model<'_> {
    /// [`Model::run`] with each row-local op (convolutions, pools, ADD, LUT) cut into up
    /// to `split.shares` shares of its output rows. `exec` gets every op's shares and must
    /// call [`RowShare::run`] on each before it returns, in any order and on any threads;
    /// ops that are not cut, and band-by-band stages, run on the calling thread. The output
    /// is the same as [`Model::run`]'s, bit for bit.
    pub fn run_split(
        &self,
        arena: &mut [u8],
        input: &[i8],
        output: &mut [i8],
        split: Split,
        exec: &mut impl FnMut(&mut [RowShare<'_>]),
    ) -> Result<(), Error> {
        self.run_split_observed(arena, input, output, split, exec, &mut NoObserver)
    }

    /// [`Model::run_split`] with hooks before and after every op, called on the calling
    /// thread (after an op's last share has run).
    pub fn run_split_observed(
        &self,
        arena: &mut [u8],
        input: &[i8],
        output: &mut [i8],
        split: Split,
        exec: &mut impl FnMut(&mut [RowShare<'_>]),
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        self.load_input(arena, input)?;
        let out_span = self.output_span(output.len())?;
        let n_ops = usize::from(self.header.n_ops);
        let arena = self.fit_arena(arena)?;
        self.walk_ops(
            arena,
            0..n_ops,
            observer,
            |model, index, op, arena, observer| match (shares_for(op, split), &op.kernel) {
                (n, Kernel::Cbam(p)) if n >= 2 => {
                    model.run_cbam_shares(index, op, p, arena, n, exec, observer)
                }
                (n, _) if n >= 2 => model.run_shares(op, arena, n, exec),
                _ => model.execute(index, op, arena, observer),
            },
        )?;
        output.copy_from_slice(as_i8(super::slice_mut(arena, out_span)?));
        Ok(())
    }

    /// Runs `op` as `n` row shares through `exec`.
    fn run_shares(
        &self,
        op: &Op,
        arena: &mut [u8],
        n: usize,
        exec: &mut impl FnMut(&mut [RowShare<'_>]),
    ) -> Result<(), Error> {
        let overlap = Error::ArenaOverlap {
            op: op.record.index,
        };
        let no_scratch = Span {
            start: self.header.scratch_off,
            len: 0,
        };
        let view = split(arena, op.output.span, no_scratch).ok_or(overlap)?;
        let shape = op.output.shape;
        let row_bytes = shape.w.checked_mul(shape.c).ok_or(Error::ShapeOverflow {
            what: "row share bytes",
        })?;
        let in_place = op.in_place_slot();
        let mut rest = as_i8_mut(view.out);
        let mut shares: [RowShare; MAX_SHARES] = array::from_fn(|_| RowShare::IDLE);
        for (k, share) in shares.iter_mut().enumerate().take(n) {
            let rows = Rows::new(shape.h * k / n, shape.h * (k + 1) / n);
            let job = RowJob::of(op, rows).ok_or(overlap)?;
            let out = take_head(&mut rest, rows.len() * row_bytes).ok_or(overlap)?;
            let mut inputs: [&[i8]; 2] = [&[], &[]];
            for (slot, input) in inputs.iter_mut().enumerate().take(op.record.n_inputs) {
                if in_place == Some(slot) {
                    continue;
                }
                let t = op.input(slot)?;
                let span = rows_span(t.span, t.shape, 0, job.in_rows)?;
                *input = view.gaps.read(span).map(as_i8).ok_or(overlap)?;
            }
            let job = ShareJob::Rows {
                kernel: op.kernel,
                in_place,
                in0: op.input(0)?.shape,
                out_shape: shape,
                job,
                inputs,
                out,
            };
            *share = RowShare::new(job, rows);
        }
        dispatch(&mut shares, n, exec, op)
    }

    /// Runs the fused CBAM op `op` with its three per-pixel and per-row steps cut into `n`
    /// shares each (the steps of [`crate::cbam::cbam`], in its order).
    #[allow(clippy::too_many_arguments)]
    fn run_cbam_shares(
        &self,
        index: usize,
        op: &Op,
        p: &CbamParams,
        arena: &mut [u8],
        n: usize,
        exec: &mut impl FnMut(&mut [RowShare<'_>]),
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        let overlap = Error::ArenaOverlap {
            op: op.record.index,
        };
        let scratch = Span {
            start: self.header.scratch_off,
            len: op.record.scratch_len,
        };
        let view = split(arena, op.output.span, scratch).ok_or(overlap)?;
        let data = as_i8_mut(view.out);
        let input = op.input(0)?;
        if input.span != op.output.span {
            data.copy_from_slice(view.gaps.read(input.span).map(as_i8).ok_or(overlap)?);
        }
        let shape = op.output.shape;
        let phases = cbam::channel_phase(p, shape, data, as_i8_mut(view.scratch))?;
        let (att_c, maps, att_s) = (phases.att_c, phases.maps, phases.att_s);
        let row_px = shape.w;
        let cut = |k: usize| Rows::new(shape.h * k / n, shape.h * (k + 1) / n);

        // Each step's shares borrow the maps the next one reads: one array per step.
        let mut shares: [RowShare; MAX_SHARES] = array::from_fn(|_| RowShare::IDLE);
        let (mut data_rest, mut maps_rest) = (&mut *data, &mut *maps);
        for (k, share) in shares.iter_mut().enumerate().take(n) {
            let rows = cut(k);
            let px = rows.len() * row_px;
            let data = take_head(&mut data_rest, px * shape.c).ok_or(overlap)?;
            let maps = take_head(&mut maps_rest, px * 2).ok_or(overlap)?;
            let job = ShareJob::CbamScale {
                p: *p,
                data,
                att_c,
                maps,
            };
            *share = RowShare::new(job, rows);
        }
        dispatch(&mut shares, n, exec, op)?;

        let pad = p.k / 2;
        let mut shares: [RowShare; MAX_SHARES] = array::from_fn(|_| RowShare::IDLE);
        let mut att_rest = &mut *att_s;
        for (k, share) in shares.iter_mut().enumerate().take(n) {
            let rows = cut(k);
            let att = take_head(&mut att_rest, rows.len() * row_px).ok_or(overlap)?;
            let maps_first = rows.start.saturating_sub(pad);
            let maps_end = (rows.end + pad).min(shape.h);
            let maps = maps
                .get(maps_first * row_px * 2..maps_end * row_px * 2)
                .ok_or(overlap)?;
            let job = ShareJob::CbamSpatial {
                p: *p,
                shape,
                maps,
                maps_first,
                att,
            };
            *share = RowShare::new(job, rows);
        }
        dispatch(&mut shares, n, exec, op)?;

        let mut shares: [RowShare; MAX_SHARES] = array::from_fn(|_| RowShare::IDLE);
        let (mut data_rest, mut att_rest) = (&mut *data, &*att_s);
        for (k, share) in shares.iter_mut().enumerate().take(n) {
            let rows = cut(k);
            let px = rows.len() * row_px;
            let data = take_head(&mut data_rest, px * shape.c).ok_or(overlap)?;
            let (att, rest) = att_rest.split_at_checked(px).ok_or(overlap)?;
            att_rest = rest;
            let job = ShareJob::CbamApply {
                p: *p,
                data,
                att_s: att,
            };
            *share = RowShare::new(job, rows);
        }
        dispatch(&mut shares, n, exec, op)?;
        observer.cbam_attention(index, att_c, att_s, shape.h, shape.w);
        Ok(())
    }
}

/// The first `len` bytes of `rest`, which keeps the others.
fn take_head<'a>(rest: &mut &'a mut [i8], len: usize) -> Option<&'a mut [i8]> {
    let (head, tail) = core::mem::take(rest).split_at_mut_checked(len)?;
    *rest = tail;
    Some(head)
}

/// Hands the first `n` shares to `exec`, then checks that each ran and succeeded.
fn dispatch(
    shares: &mut [RowShare<'_>],
    n: usize,
    exec: &mut impl FnMut(&mut [RowShare<'_>]),
    op: &Op,
) -> Result<(), Error> {
    let shares = shares.get_mut(..n).ok_or(Error::ArenaOverlap {
        op: op.record.index,
    })?;
    exec(shares);
    for share in shares.iter_mut() {
        share.job = None;
        share.result.take().unwrap_or(Err(Error::ShareNotRun {
            op: op.record.index,
        }))?;
    }
    Ok(())
}

/// How many shares `op` is cut into under `split` (below 2: run whole).
fn shares_for(op: &Op, split: Split) -> usize {
    let row_local = matches!(
        op.kernel,
        Kernel::Conv2d(_)
            | Kernel::Depthwise(_)
            | Kernel::Pool(..)
            | Kernel::Add(..)
            | Kernel::Lut(_)
            | Kernel::Cbam(_)
    );
    if !row_local || op.record.n_inputs > 2 {
        return 1;
    }
    let out_bytes = op.output.span.len as u64;
    let work = op.macs().max(out_bytes);
    let by_work = work / split.min_share_work.max(1);
    let by_work = usize::try_from(by_work).unwrap_or(usize::MAX);
    let shape = op.output.shape;
    let by_pixels = shape.h.saturating_mul(shape.w) / split.min_share_pixels.max(1);
    split
        .shares
        .min(MAX_SHARES)
        .min(shape.h)
        .min(by_work)
        .min(by_pixels)
}

#[cfg(test)]
mod tests;
