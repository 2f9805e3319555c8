//! One inference with each row-local op's output rows shared out among workers. The core
//! stays single-threaded and allocation-free: it cuts an op's output into disjoint row
//! shares and hands them to a caller-given executor, which may run them on threads of its
//! own. Each share runs its rows through the same kernels and windows as a whole-tensor
//! run (see `row_local`), so the output is the same for any number of shares.

use core::array;

use super::row_local::{rows_span, run_rows, RowJob};
use super::{split, NoObserver, Observer};
use crate::blob::{Kernel, Model, Op, Span};
use crate::error::Error;
use crate::kernels::Shape;
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

/// Some output rows of one op, ready to run on any thread.
pub struct RowShare<'a> {
    job: Option<ShareJob<'a>>,
    result: Option<Result<(), Error>>,
}

struct ShareJob<'a> {
    kernel: Kernel<'a>,
    in_place: Option<usize>,
    in0: Shape,
    out_shape: Shape,
    rows: RowJob,
    /// The rows each input slot's share reads (empty for the slot the output overwrites).
    inputs: [&'a [i8]; 2],
    out: &'a mut [i8],
}

impl RowShare<'_> {
    const IDLE: RowShare<'static> = RowShare {
        job: None,
        result: None,
    };

    /// Computes this share's rows. Runs once; later calls do nothing.
    pub fn run(&mut self) {
        let Some(j) = self.job.take() else {
            return;
        };
        let inputs = j.inputs;
        let read = |slot: usize| {
            inputs.get(slot).copied().ok_or(Error::SliceLength {
                what: "row share input slot",
            })
        };
        let result = run_rows(
            &j.kernel,
            j.in_place,
            j.in0,
            j.out_shape,
            j.rows,
            read,
            j.out,
        );
        self.result = Some(result);
    }

    /// The output rows this share writes, as `start..end`.
    pub fn rows(&self) -> core::ops::Range<usize> {
        self.job
            .as_ref()
            .map_or(0..0, |j| j.rows.rows.start..j.rows.rows.end)
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
        let slot = self.input_mut(arena)?;
        if input.len() != slot.len() {
            return Err(Error::InputLength {
                expected: slot.len(),
                found: input.len(),
            });
        }
        slot.copy_from_slice(input);
        let out_span = self.output_span(output.len())?;
        let n_ops = usize::from(self.header.n_ops);
        let arena = self.fit_arena(arena)?;
        self.walk_ops(
            arena,
            0..n_ops,
            observer,
            |model, index, op, arena, observer| match shares_for(op, split) {
                n if n >= 2 => model.run_shares(op, arena, n, exec),
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
            let (out, tail) = core::mem::take(&mut rest)
                .split_at_mut_checked(rows.len() * row_bytes)
                .ok_or(overlap)?;
            rest = tail;
            let mut inputs: [&[i8]; 2] = [&[], &[]];
            for (slot, input) in inputs.iter_mut().enumerate().take(op.record.n_inputs) {
                if in_place == Some(slot) {
                    continue;
                }
                let t = op.input(slot)?;
                let span = rows_span(t.span, t.shape, 0, job.in_rows)?;
                *input = view.gaps.read(span).map(as_i8).ok_or(overlap)?;
            }
            share.job = Some(ShareJob {
                kernel: op.kernel,
                in_place,
                in0: op.input(0)?.shape,
                out_shape: shape,
                rows: job,
                inputs,
                out,
            });
        }
        let shares = shares.get_mut(..n).ok_or(overlap)?;
        exec(shares);
        for share in shares.iter() {
            share.result.unwrap_or(Err(Error::ShareNotRun {
                op: op.record.index,
            }))?;
        }
        Ok(())
    }
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
