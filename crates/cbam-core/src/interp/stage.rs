//! Runs a stage of the schedule band by band (see [`crate::schedule`]): every op on the rows
//! the band needs, through the same kernels as a whole-tensor run, with the padding of a
//! band's window moved to where the band meets the map's edge.

use super::row_local::{rows_span, run_rows, RowJob};
use super::{split, Observer};
use crate::blob::stages::{Stage, StageOps};
use crate::blob::{decode_op, Kernel, Model, Op, Span};
use crate::cbam::banded;
use crate::error::Error;
use crate::le::{as_i8, as_i8_mut};
use crate::schedule::{walk, Band, Pass, Rows, StageGraph};

impl Model<'_> {
    /// Runs every op of `stage`; reports the stage as its last op (the only whole output)
    /// and its CBAM op's attention once both maps are known.
    pub(super) fn run_stage(
        &self,
        stage: &Stage,
        arena: &mut [u8],
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        let ops = StageOps::load(self.blob, &self.header, stage)?;
        let last = decode_op(self.blob, &self.header, stage.end - 1)?;
        observer.op_start(usize::from(stage.end - 1), last.record.code);
        walk(&ops, stage.band_rows, |band| {
            for (i, rows) in band.rows.iter().enumerate().take(band.target + 1) {
                if rows.is_empty() {
                    continue;
                }
                let index = stage.first + i as u16;
                let op = decode_op(self.blob, &self.header, index)?;
                keep_rows(&op, band, i, arena)?;
                if band.fresh.get(i).is_some_and(|f| !f.is_empty()) {
                    self.run_rows(&op, &ops, i, band, arena, observer)?;
                }
            }
            Ok(())
        })?;
        let out = last.output.span;
        let bytes = arena
            .get(out.start..out.end())
            .ok_or(Error::ArenaBufferTooSmall {
                needed: out.end(),
                found: arena.len(),
            })?;
        observer.op_end(usize::from(stage.end - 1), last.record.code, as_i8(bytes));
        Ok(())
    }

    /// Runs stage op `i` (`op`) on its rows of `band`.
    fn run_rows(
        &self,
        op: &Op,
        ops: &StageOps,
        i: usize,
        band: &Band,
        arena: &mut [u8],
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        let rows = band.fresh.get(i).copied().unwrap_or(Rows::EMPTY);
        let overlap = Error::ArenaOverlap {
            op: op.record.index,
        };
        let origin = |t_band: usize, producer: Option<usize>| {
            if t_band == 0 {
                0
            } else {
                producer
                    .and_then(|p| band.rows.get(p))
                    .map_or(rows.start, |r| r.start)
            }
        };
        let out_t = &op.output;
        let out_span = rows_span(
            out_t.span,
            out_t.shape,
            origin(out_t.band_rows, Some(i)),
            rows,
        )?;
        let window = band.window(ops, i);
        let in_rows = window.input_rows(ops.in_h(i), rows);
        let producers = ops.producers(i);
        let mut in_spans = [Span { start: 0, len: 0 }; 4];
        for (slot, span) in in_spans.iter_mut().enumerate().take(op.record.n_inputs) {
            let t = op.input(slot)?;
            let from = origin(t.band_rows, producers[slot]);
            *span = rows_span(t.span, t.shape, from, in_rows)?;
        }
        let in0 = op.input(0)?.shape;
        let scratch = Span {
            start: self.header.scratch_off,
            len: op.record.scratch_len,
        };
        if let (Kernel::Cbam(p), Pass::Final, Some(_)) = (&op.kernel, band.pass, band.lookahead) {
            // The op's work rows: the band and the rows below it that the spatial conv
            // reads, in its own buffer (in place) or in the whole output.
            let in_place = in_spans[0].start == out_span.start;
            let work = if in_place {
                in_spans[0]
            } else {
                rows_span(out_t.span, out_t.shape, 0, in_rows)?
            };
            let view = split(arena, work, scratch).ok_or(overlap)?;
            let data = as_i8_mut(view.out);
            if !in_place {
                // Only the rows the previous band did not reach: the rest are scaled.
                let input = view.gaps.read(in_spans[0]).map(as_i8).ok_or(overlap)?;
                let done = banded::lookahead_done(p, out_t.shape, rows.start..rows.end);
                let skip = done.saturating_sub(in_rows.start) * out_t.shape.w * out_t.shape.c;
                let (to, from) = (data.get_mut(skip..), input.get(skip..));
                to.zip(from)
                    .filter(|(t, f)| t.len() == f.len())
                    .ok_or(overlap)
                    .map(|(t, f)| t.copy_from_slice(f))?;
            }
            let shape = out_t.shape;
            let scratch = as_i8_mut(view.scratch);
            banded::lookahead_rows(p, shape, scratch, data, rows.start..rows.end)?;
            if rows.end == shape.h {
                let att = banded::attention(p, shape, scratch)?;
                let index = usize::from(op.record.index);
                observer.cbam_attention(index, att.channel, att.spatial, shape.h, shape.w);
            }
            return Ok(());
        }
        let view = split(arena, out_span, scratch).ok_or(overlap)?;
        let out = as_i8_mut(view.out);
        let read = |slot: usize| -> Result<&[i8], Error> {
            view.gaps.read(in_spans[slot]).map(as_i8).ok_or(overlap)
        };
        if let Kernel::Cbam(p) = &op.kernel {
            if in_spans[0] != out_span {
                out.copy_from_slice(read(0)?);
            }
            let shape = out_t.shape;
            let scratch = as_i8_mut(view.scratch);
            let first_px = rows.start * shape.w;
            let first_band = rows.start == 0;
            let last_band = rows.end == shape.h;
            match band.pass {
                Pass::ChannelStats => {
                    if first_band {
                        banded::stats_begin(p, shape, scratch)?;
                    }
                    banded::stats_rows(p, shape, scratch, out)?;
                    if last_band {
                        banded::stats_end(p, shape, scratch)?;
                    }
                }
                Pass::SpatialMaps => {
                    banded::maps_rows(p, shape, scratch, out, first_px)?;
                    if last_band {
                        banded::maps_end(p, shape, scratch)?;
                        let att = banded::attention(p, shape, scratch)?;
                        let index = usize::from(op.record.index);
                        observer.cbam_attention(index, att.channel, att.spatial, shape.h, shape.w);
                    }
                }
                Pass::Final => banded::apply_rows(p, shape, scratch, out, first_px)?,
            }
            return Ok(());
        }
        // Only an ADD runs in place here (CBAM returned above).
        let in_place = match op.kernel {
            Kernel::Add(..) => op.in_place_slot(),
            _ => None,
        };
        if in_place.is_some_and(|slot| in_spans[slot] != out_span) {
            return Err(overlap);
        }
        let job = RowJob {
            window,
            in_rows,
            rows,
        };
        run_rows(&op.kernel, in_place, in0, out_t.shape, job, read, out)
    }
}

/// Moves the rows op `i` keeps from the previous band to the start of its band buffer (a
/// whole output keeps every row where it is).
fn keep_rows(op: &Op, band: &Band, i: usize, arena: &mut [u8]) -> Result<(), Error> {
    let out = &op.output;
    let kept = band.kept(i);
    let shift = band.shift.get(i).copied().unwrap_or(0);
    if out.band_rows == 0 || kept.is_empty() || shift == 0 {
        return Ok(());
    }
    let to = rows_span(out.span, out.shape, kept.start, kept)?;
    let from = rows_span(out.span, out.shape, kept.start - shift, kept)?;
    arena
        .get_mut(to.start..from.end())
        .ok_or(Error::SliceLength {
            what: "stage band outside its buffer",
        })?
        .copy_within(from.start - to.start.., 0);
    Ok(())
}
