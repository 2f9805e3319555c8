//! The schedule (FORMAT.md "Schedule"): stages of ops that run band by band, and the
//! checks that make a stage safe to run before the first inference.

use super::header::Header;
use super::read::{record, region, size};
use super::tensor::Span;
use super::{decode_op, Kernel};
use crate::error::Error;
use crate::format::{StageFields, STAGE_FLAG_LOOKAHEAD, STAGE_RECORD_LEN};
use crate::schedule::{self, RowWindow, StageGraph, MAX_STAGE_OPS};

/// A stage record, range-checked against the op table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stage {
    pub index: u16,
    pub first: u16,
    pub end: u16,
    pub band_rows: usize,
    /// The CBAM op pools its spatial maps in the final pass ([`STAGE_FLAG_LOOKAHEAD`]).
    pub lookahead: bool,
}

/// Stages in the schedule (0 without one).
pub(crate) fn count(blob: &[u8], header: &Header) -> Result<u16, Error> {
    if header.schedule_off == 0 {
        return Ok(0);
    }
    let bytes = region(blob, "schedule", header.schedule_off, 4)?;
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    u16::try_from(n).map_err(|_| Error::BadSchedule {
        stage: u16::MAX,
        reason: "more stages than ops",
    })
}

/// Stage `index` of the schedule.
pub(crate) fn stage(blob: &[u8], header: &Header, index: u16) -> Result<Stage, Error> {
    let base = usize::from(index)
        .checked_mul(STAGE_RECORD_LEN)
        .and_then(|o| o.checked_add(header.schedule_off)?.checked_add(4))
        .ok_or(Error::ShapeOverflow { what: "schedule" })?;
    let f = record(
        blob,
        "stage record",
        base,
        STAGE_RECORD_LEN,
        StageFields::read,
    )?;
    let bad = |reason| Error::BadSchedule {
        stage: index,
        reason,
    };
    if f.first_op >= f.end_op || f.end_op > header.n_ops {
        return Err(bad("op range empty or past the op table"));
    }
    if usize::from(f.end_op - f.first_op) > MAX_STAGE_OPS {
        return Err(bad("more ops than a stage holds (32)"));
    }
    if f.band_rows == 0 {
        return Err(bad("band_rows is 0"));
    }
    // Version 2 left the flags word reserved.
    let flags = if header.version >= 3 { f.flags } else { 0 };
    if flags & !STAGE_FLAG_LOOKAHEAD != 0 {
        return Err(bad("unknown stage flags"));
    }
    Ok(Stage {
        index,
        first: f.first_op,
        end: f.end_op,
        band_rows: size(u32::from(f.band_rows), "band_rows")?,
        lookahead: flags & STAGE_FLAG_LOOKAHEAD != 0,
    })
}

/// The stage that op `op` belongs to, if any (stages are sorted and disjoint: checked).
pub(crate) fn stage_of(blob: &[u8], header: &Header, op: u16) -> Result<Option<Stage>, Error> {
    for i in 0..count(blob, header)? {
        let s = stage(blob, header, i)?;
        if (s.first..s.end).contains(&op) {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// What the walk needs of a stage's ops, decoded once per run.
pub(crate) struct StageOps {
    n: usize,
    windows: [RowWindow; MAX_STAGE_OPS],
    in_h: [usize; MAX_STAGE_OPS],
    out_h: [usize; MAX_STAGE_OPS],
    producers: [[Option<usize>; 4]; MAX_STAGE_OPS],
    cbam: Option<usize>,
    /// Rows below a band the CBAM op reads in a look-ahead stage.
    lookahead: Option<usize>,
    /// Version 3 keeps the rows two bands share; version 2 computes them again.
    keeps_rows: bool,
}

impl StageOps {
    /// Decodes the stage's ops and checks that they can run band by band.
    pub fn load(blob: &[u8], header: &Header, stage: &Stage) -> Result<Self, Error> {
        let bad = |reason| Error::BadSchedule {
            stage: stage.index,
            reason,
        };
        let mut ops = StageOps {
            n: usize::from(stage.end - stage.first),
            windows: [RowWindow::Same; MAX_STAGE_OPS],
            in_h: [0; MAX_STAGE_OPS],
            out_h: [0; MAX_STAGE_OPS],
            producers: [[None; 4]; MAX_STAGE_OPS],
            cbam: None,
            lookahead: None,
            keeps_rows: header.version >= 3,
        };
        let mut outputs = [u16::MAX; MAX_STAGE_OPS];
        for i in 0..ops.n {
            let index = stage.first + i as u16;
            let op = decode_op(blob, header, index)?;
            let window =
                RowWindow::of(&op.record.params).ok_or(bad("an op that cannot run on bands"))?;
            let last = i + 1 == ops.n;
            if (op.output.band_rows == 0) != last {
                return Err(bad(
                    "only the last op's output may be (and must be) a whole tensor",
                ));
            }
            if let Kernel::Cbam(p) = &op.kernel {
                let hw = op.output.shape.pixels().unwrap_or(0);
                if ops.cbam.is_some() || p.c.saturating_mul(2) > hw {
                    return Err(bad("more than one CBAM op, or one with 2C > hw"));
                }
                ops.cbam = Some(i);
                if stage.lookahead {
                    if op.in_place_slot().is_none() && op.output.band_rows != 0 {
                        return Err(bad(
                            "a look-ahead CBAM op must be in place or write the whole output",
                        ));
                    }
                    let shape = op.output.shape;
                    let rows = op.rows_per_band(stage.band_rows);
                    if !crate::format::lookahead_maps_hold_sums(p.c, shape.h, shape.w, p.k, rows) {
                        return Err(bad(
                            "a look-ahead CBAM op's map window cannot hold its channel sums",
                        ));
                    }
                    ops.lookahead = Some(p.k / 2);
                }
            }
            ops.windows[i] = window;
            ops.in_h[i] = op.input(0)?.shape.h;
            ops.out_h[i] = op.output.shape.h;
            for (slot, &t) in op.record.inputs().iter().enumerate() {
                let input = op.input(slot)?;
                if input.shape.h != ops.in_h[i] {
                    return Err(bad("inputs of different heights"));
                }
                let producer = outputs.iter().take(i).position(|&o| o == t);
                if input.band_rows != 0 && producer.is_none() {
                    return Err(bad("a band tensor read outside the stage that writes it"));
                }
                ops.producers[i][slot] = producer;
            }
            outputs[i] = op.record.output;
        }
        if stage.lookahead && ops.cbam.is_none() {
            return Err(bad("the look-ahead flag on a stage without a CBAM op"));
        }
        Ok(ops)
    }
}

impl StageGraph for StageOps {
    fn n_ops(&self) -> usize {
        self.n
    }
    fn window(&self, op: usize) -> RowWindow {
        self.windows.get(op).copied().unwrap_or(RowWindow::Same)
    }
    fn out_h(&self, op: usize) -> usize {
        self.out_h.get(op).copied().unwrap_or(0)
    }
    fn in_h(&self, op: usize) -> usize {
        self.in_h.get(op).copied().unwrap_or(0)
    }
    fn producers(&self, op: usize) -> [Option<usize>; 4] {
        self.producers.get(op).copied().unwrap_or([None; 4])
    }
    fn cbam(&self) -> Option<usize> {
        self.cbam
    }
    fn cbam_lookahead(&self) -> Option<usize> {
        self.lookahead
    }
    fn keeps_rows(&self) -> bool {
        self.keeps_rows
    }
}

/// Every check of a schedule: stages sorted and disjoint, each one runnable band by band,
/// every band within its buffer, and the buffers of a stage apart from one another, from the
/// tensors it reads and writes whole, and from the scratch.
pub(crate) fn validate(blob: &[u8], header: &Header) -> Result<(), Error> {
    let mut prev_end = 0;
    for i in 0..count(blob, header)? {
        let s = stage(blob, header, i)?;
        if s.first < prev_end {
            return Err(Error::BadSchedule {
                stage: i,
                reason: "stages overlap or are out of order",
            });
        }
        prev_end = s.end;
        let ops = StageOps::load(blob, header, &s)?;
        let cost = schedule::cost(&ops, s.band_rows);
        let mut spans = [Span { start: 0, len: 0 }; 5 * MAX_STAGE_OPS + 1];
        let mut n_spans = 0;
        let mut push = |span: Span| {
            if let Some(slot) = spans.get_mut(n_spans) {
                *slot = span;
                n_spans += 1;
            }
        };
        for k in 0..ops.n_ops() {
            let op = decode_op(blob, header, s.first + k as u16)?;
            let max_rows = cost.max_rows.get(k).copied().unwrap_or(0);
            if op.output.band_rows != 0 && max_rows > op.output.band_rows {
                return Err(Error::BadSchedule {
                    stage: i,
                    reason: "a band needs more rows than its tensor's band buffer holds",
                });
            }
            let in_place = op.in_place_slot().is_some();
            if in_place && cost.keeps.get(k).copied().unwrap_or(true) {
                return Err(Error::BadSchedule {
                    stage: i,
                    reason: "an op in place keeps rows from one band to the next",
                });
            }
            if !in_place {
                push(op.output.span);
            }
            for t in op.inputs.iter().flatten().filter(|t| t.band_rows == 0) {
                push(t.span);
            }
            if op.record.scratch_len > 0 {
                push(Span {
                    start: header.scratch_off,
                    len: op.record.scratch_len,
                });
            }
        }
        let spans = spans.get(..n_spans).unwrap_or_default();
        for (a, x) in spans.iter().enumerate() {
            // A whole tensor read by several ops appears once per reader.
            if spans.iter().skip(a + 1).any(|y| y != x && y.overlaps(x)) {
                return Err(Error::BadSchedule {
                    stage: i,
                    reason: "buffers of the stage overlap",
                });
            }
        }
    }
    Ok(())
}
