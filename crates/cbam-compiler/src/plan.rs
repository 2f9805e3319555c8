//! Arena planning: every activation tensor and the shared scratch region get a byte offset
//! in one caller-provided arena, reusing memory between tensors whose lifetimes do not
//! overlap.
//!
//! Lifetimes come from the op order: a tensor lives from the op that writes it to the last
//! op that reads it (the model input from op 0, the model output to the end). Offsets are
//! assigned greedily, largest buffer first, into the smallest gap that fits (best fit),
//! every offset 16-byte aligned. A CBAM op writes in place over its input, and an ADD over
//! one of its inputs, when nothing else reads that input.

use cbam_core::format::{OpParams, Unplaced};
use cbam_core::schedule::{self, RowWindow, StageGraph, MAX_STAGE_OPS};

use crate::quant::{QModel, QOpKind};

pub const ALIGN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Arena offset of each quantized tensor.
    pub offsets: Vec<u32>,
    /// Scratch bytes each op needs (FORMAT.md op record `scratch_len`).
    pub op_scratch: Vec<u32>,
    pub scratch_off: u32,
    pub scratch_size: u32,
    pub arena_size: u32,
    /// Ops whose output aliases their input.
    pub in_place: Vec<usize>,
    /// Stages that run band by band (empty: every op runs on whole tensors).
    pub stages: Vec<Stage>,
    /// Per tensor: 0 for a whole tensor, else the rows of its band buffer.
    pub band_rows: Vec<u32>,
    /// Multiply-accumulates the stages compute more than a whole-tensor run.
    pub extra_macs: u64,
    /// The op during which the most bytes are alive (where a smaller plan must cut).
    pub peak_op: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the model needs an arena of {bytes} bytes, beyond the format's 4 GiB limit")]
    ArenaTooLarge { bytes: usize },
    #[error("the core cannot size the scratch of op `{op}`: {reason}")]
    Scratch { op: String, reason: String },
    #[error("tensor `{tensor}` is read by op {op} before any op writes it")]
    ReadBeforeWrite { tensor: String, op: usize },
    #[error("ops {first}..{end} cannot run band by band: {reason}")]
    BadStage {
        first: usize,
        end: usize,
        reason: &'static str,
    },
}

/// A block of arena memory alive over ops `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub size: usize,
    pub start: usize,
    pub end: usize,
}

impl Buffer {
    fn overlaps_in_time(&self, other: &Buffer) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Assigns 16-aligned offsets so that buffers alive at the same time never share bytes.
pub fn assign_offsets(buffers: &[Buffer]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].size), buffers[i].start, i));
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    for &i in &order {
        let buf = buffers[i];
        let mut live: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| buffers[j].overlaps_in_time(&buf) && buffers[j].size > 0)
            .map(|&j| (offsets[j], offsets[j] + buffers[j].size))
            .collect();
        live.sort_unstable();
        let mut best: Option<(usize, usize)> = None; // (gap, offset)
        let mut cursor = 0;
        for (start, end) in live {
            let candidate = align_up(cursor);
            if start >= candidate + buf.size {
                let gap = start - candidate;
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, candidate));
                }
            }
            cursor = cursor.max(end);
        }
        offsets[i] = best.map_or(align_up(cursor), |(_, off)| off);
        placed.push(i);
    }
    offsets
}

/// Scratch bytes the core needs for op `index` of `model`, asked of the blob format itself
/// so the reader's check (`scratch_len` equals its own answer) holds by construction.
pub fn scratch_len(model: &QModel, index: usize) -> Result<usize, PlanError> {
    let Some(op) = model.ops.get(index) else {
        return Ok(0);
    };
    let [h, w, c] = op
        .inputs
        .first()
        .and_then(|&t| model.tensors.get(t))
        .map_or([0; 3], |t| t.shape);
    // The size follows from the value words; the arrays are not placed yet.
    let params = op.kind.params(&mut cbam_core::format::Unplaced);
    params
        .scratch_size((h, w, c))
        .ok_or_else(|| PlanError::Scratch {
            op: op.node.clone(),
            reason: "its scratch size overflows usize".into(),
        })
}

/// The most rows of its output a stage op holds per band: its band buffer's, or the
/// stage's band when it writes the stage's whole output (`band_rows == 0`).
fn rows_per_band(stage: &Stage, band_rows: u32) -> usize {
    match band_rows {
        0 => stage.band_rows,
        rows => rows as usize,
    }
}

/// [`scratch_len`] for op `index` in a look-ahead stage whose bands hold at most `rows`
/// rows of its output.
fn lookahead_scratch_len(model: &QModel, index: usize, rows: usize) -> Result<usize, PlanError> {
    let op = &model.ops[index];
    let [h, w, c] = model.tensors[op.inputs[0]].shape;
    op.kind
        .params(&mut cbam_core::format::Unplaced)
        .lookahead_scratch_size((h, w, c), rows)
        .ok_or_else(|| PlanError::Scratch {
            op: op.node.clone(),
            reason: "its scratch size overflows usize".into(),
        })
}

/// Plans `model`'s arena with CBAM and ADD in place and no stages.
pub fn plan(model: &QModel) -> Result<Plan, PlanError> {
    plan_with(model, true, &[])
}

/// Plans `model`'s arena: CBAM and ADD in place or not, and `stages` run band by band.
pub fn plan_with(model: &QModel, ops_in_place: bool, stages: &[Stage]) -> Result<Plan, PlanError> {
    let n_ops = model.ops.len();
    let (mut start, mut end) = lifetimes(model)?;
    let mut band_rows = vec![0u32; model.tensors.len()];
    let mut extra_macs = 0u64;
    let mut keeps = vec![false; n_ops];
    for stage in stages {
        let graph = QStage::new(model, *stage)?;
        let cost = schedule::cost(&graph, stage.band_rows);
        let last = stage.end - 1;
        for (k, op) in model.ops[stage.first..stage.end].iter().enumerate() {
            let i = stage.first + k;
            keeps[i] = cost.keeps[k];
            let out_h = model.tensors[op.output].shape[0];
            let per_row = op_macs(model, i) / out_h.max(1) as u64;
            extra_macs += per_row * cost.computed_rows[k].saturating_sub(out_h) as u64;
            for &t in &op.inputs {
                end[t] = end[t].max(last);
            }
            if i == last {
                start[op.output] = start[op.output].min(stage.first);
            } else {
                band_rows[op.output] = cost.max_rows[k] as u32;
                start[op.output] = stage.first;
                end[op.output] = last;
            }
        }
    }
    let stored_len = |t: usize| {
        let tensor = &model.tensors[t];
        match band_rows[t] {
            0 => tensor.len(),
            rows => rows as usize * tensor.shape[1] * tensor.shape[2],
        }
    };
    // In place ([`may_alias`]): the op's output shares the input's buffer. Inside a stage
    // only between two band buffers (a band and a whole tensor are laid out differently,
    // and a stage's whole input lives to the stage's end) whose output keeps no rows from
    // band to band (or its rows would not line up with the input's).
    let in_stage = |i: usize| stages.iter().any(|s| (s.first..s.end).contains(&i));
    let same_storage = |i: usize, input: usize, output: usize| {
        if in_stage(i) {
            band_rows[input] != 0 && band_rows[output] != 0
        } else {
            end[input] == i
        }
    };
    let mut owner: Vec<usize> = (0..model.tensors.len()).collect();
    let mut in_place = Vec::new();
    for (i, op) in model.ops.iter().enumerate() {
        if !ops_in_place || (in_stage(i) && keeps[i]) {
            continue;
        }
        let slot = (0..op.inputs.len())
            .find(|&slot| may_alias(model, i, slot) && same_storage(i, op.inputs[slot], op.output));
        if let Some(slot) = slot {
            owner[op.output] = owner[op.inputs[slot]];
            in_place.push(i);
        }
    }
    // A look-ahead CBAM op works on its band and the rows below it: in its own buffer, or
    // in the stage's whole output.
    for stage in stages.iter().filter(|s| s.lookahead) {
        let cbam =
            (stage.first..stage.end).find(|&i| matches!(model.ops[i].kind, QOpKind::Cbam(_)));
        if let Some((i, QOpKind::Cbam(p))) = cbam.map(|i| (i, &model.ops[i].kind)) {
            let [h, w, c] = model.tensors[model.ops[i].output].shape;
            let rows = rows_per_band(stage, band_rows[model.ops[i].output]);
            if !cbam_core::format::lookahead_maps_hold_sums(c, h, w, p.kernel, rows) {
                return Err(PlanError::BadStage {
                    first: stage.first,
                    end: stage.end,
                    reason: "the CBAM op's window of map rows cannot hold its channel sums",
                });
            }
        }
        if cbam.is_some_and(|i| i + 1 < stage.end && !in_place.contains(&i)) {
            return Err(PlanError::BadStage {
                first: stage.first,
                end: stage.end,
                reason: "a look-ahead CBAM op must be in place or the stage's last op",
            });
        }
    }
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buffer_of = vec![usize::MAX; model.tensors.len()];
    for t in 0..model.tensors.len() {
        let root = owner[t];
        if buffer_of[root] == usize::MAX {
            buffers.push(Buffer {
                size: 0,
                start: start[t],
                end: end[t],
            });
            buffer_of[root] = buffers.len() - 1;
        }
        let b = &mut buffers[buffer_of[root]];
        b.size = b.size.max(stored_len(t));
        b.start = b.start.min(start[t]);
        b.end = b.end.max(end[t]);
        buffer_of[t] = buffer_of[root];
    }
    let op_scratch = (0..n_ops)
        .map(|i| {
            match stages
                .iter()
                .find(|s| s.lookahead && (s.first..s.end).contains(&i))
            {
                Some(stage) => {
                    let rows = rows_per_band(stage, band_rows[model.ops[i].output]);
                    lookahead_scratch_len(model, i, rows)
                }
                None => scratch_len(model, i),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scratch_size = op_scratch.iter().copied().max().unwrap_or(0);
    let users: Vec<usize> = (0..n_ops).filter(|&i| op_scratch[i] > 0).collect();
    let scratch_buffer = match (users.first(), users.last()) {
        (Some(&first), Some(&last)) => {
            // A stage's CBAM op keeps its scratch from the stage's first band to its last.
            let around = |i: usize| {
                stages
                    .iter()
                    .find(|s| (s.first..s.end).contains(&i))
                    .map_or((i, i), |s| (s.first, s.end - 1))
            };
            buffers.push(Buffer {
                size: scratch_size,
                start: around(first).0,
                end: around(last).1,
            });
            Some(buffers.len() - 1)
        }
        _ => None,
    };
    let offsets = assign_offsets(&buffers);
    let arena = buffers
        .iter()
        .zip(&offsets)
        .map(|(b, o)| o + b.size)
        .max()
        .unwrap_or(0);
    let live_at = |i: usize| -> usize {
        buffers
            .iter()
            .filter(|b| b.start <= i && i <= b.end)
            .map(|b| b.size)
            .sum()
    };
    let peak_op = (0..n_ops).max_by_key(|&i| (live_at(i), i)).unwrap_or(0);
    let to_u32 = |x: usize| u32::try_from(x).map_err(|_| PlanError::ArenaTooLarge { bytes: arena });
    Ok(Plan {
        offsets: buffer_of
            .iter()
            .map(|&b| to_u32(offsets[b]))
            .collect::<Result<_, _>>()?,
        op_scratch: op_scratch
            .iter()
            .map(|&s| to_u32(s))
            .collect::<Result<_, _>>()?,
        scratch_off: to_u32(scratch_buffer.map_or(0, |b| offsets[b]))?,
        scratch_size: to_u32(scratch_size)?,
        arena_size: to_u32(arena)?,
        in_place,
        stages: stages.to_vec(),
        band_rows,
        extra_macs,
        peak_op,
    })
}

/// Ops `first..end` run band by band, `band_rows` rows of the last op's output at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub first: usize,
    pub end: usize,
    pub band_rows: usize,
    /// The stage's CBAM op pools its spatial maps in the final pass, reading rows beyond
    /// each band, instead of in a pass of its own (see `cbam_core::schedule`).
    pub lookahead: bool,
}

/// Whether op `i` may write over its input `slot` (the core's `Op::in_place_slot`): the
/// fused CBAM op over its input, or an ADD of two same-shaped, unpruned tensors over
/// either; nothing else reads that input, and it is neither the model's input nor output.
fn may_alias(model: &QModel, i: usize, slot: usize) -> bool {
    let op = &model.ops[i];
    let Some(&input) = op.inputs.get(slot) else {
        return false;
    };
    let kind_allows = match op.kind {
        QOpKind::Cbam(_) => slot == 0,
        QOpKind::Add(_) => {
            let out = &model.tensors[op.output];
            op.inputs.len() == 2
                && op.inputs[0] != op.inputs[1]
                && op.inputs.iter().all(|&t| {
                    let t = &model.tensors[t];
                    t.shape == out.shape && t.kept.is_none()
                })
        }
        _ => false,
    };
    let readers = model
        .ops
        .iter()
        .filter(|o| o.inputs.contains(&input))
        .count();
    kind_allows && readers == 1 && input != model.input && input != model.output
}

/// Multiply-accumulates of op `i` as the core counts them for convolutions (the ops whose
/// rows a stage computes more than once at a cost worth reporting).
pub fn op_macs(model: &QModel, i: usize) -> u64 {
    let op = &model.ops[i];
    let out = model.tensors[op.output].len() as u64;
    let in_c = op
        .inputs
        .first()
        .map_or(0, |&t| model.tensors[t].shape[2] as u64);
    match op.kind.params(&mut Unplaced) {
        OpParams::Conv2d(c) => out * (c.kh * c.kw) as u64 * in_c,
        OpParams::DepthwiseConv2d(d) => out * (d.conv.kh * d.conv.kw) as u64,
        _ => 0,
    }
}

/// A stage of a quantized model as the core's walk sees it.
struct QStage<'a> {
    model: &'a QModel,
    stage: Stage,
    cbam: Option<usize>,
}

impl<'a> QStage<'a> {
    /// The stage, if the core can run it band by band (the reader's checks, ahead of it).
    fn new(model: &'a QModel, stage: Stage) -> Result<Self, PlanError> {
        let bad = |reason| PlanError::BadStage {
            first: stage.first,
            end: stage.end,
            reason,
        };
        let Stage { first, end, .. } = stage;
        if first >= end || end > model.ops.len() || end - first > MAX_STAGE_OPS {
            return Err(bad("empty, past the last op or longer than 32 ops"));
        }
        if stage.band_rows == 0 || stage.band_rows > usize::from(u16::MAX) {
            return Err(bad("band rows outside 1..=65535"));
        }
        let mut cbam = None;
        for (k, op) in model.ops[first..end].iter().enumerate() {
            let i = first + k;
            if RowWindow::of(&op.kind.params(&mut Unplaced)).is_none() {
                return Err(bad("an op that cannot run on bands"));
            }
            let h = model.tensors[op.inputs[0]].shape[0];
            if op.inputs.iter().any(|&t| model.tensors[t].shape[0] != h) {
                return Err(bad("inputs of different heights"));
            }
            if let QOpKind::Cbam(_) = op.kind {
                let [h, w, c] = model.tensors[op.output].shape;
                if cbam.is_some() || 2 * c > h * w {
                    return Err(bad("more than one CBAM op, or one with 2C > hw"));
                }
                cbam = Some(k);
            }
            if i + 1 < end {
                if op.output == model.output || op.output == model.input {
                    return Err(bad("the model input or output inside"));
                }
                let read_outside = model
                    .ops
                    .iter()
                    .enumerate()
                    .any(|(j, o)| !(first..end).contains(&j) && o.inputs.contains(&op.output));
                if read_outside {
                    return Err(bad("a tensor inside is read after the stage"));
                }
            }
        }
        if stage.lookahead && cbam.is_none() {
            return Err(bad("look-ahead without a CBAM op"));
        }
        Ok(Self { model, stage, cbam })
    }

    fn op(&self, op: usize) -> &crate::quant::QOp {
        &self.model.ops[self.stage.first + op]
    }
}

impl StageGraph for QStage<'_> {
    fn n_ops(&self) -> usize {
        self.stage.end - self.stage.first
    }
    fn window(&self, op: usize) -> RowWindow {
        RowWindow::of(&self.op(op).kind.params(&mut Unplaced)).unwrap_or(RowWindow::Same)
    }
    fn out_h(&self, op: usize) -> usize {
        self.model.tensors[self.op(op).output].shape[0]
    }
    fn in_h(&self, op: usize) -> usize {
        self.model.tensors[self.op(op).inputs[0]].shape[0]
    }
    fn producers(&self, op: usize) -> [Option<usize>; 4] {
        let mut out = [None; 4];
        for (slot, &t) in out.iter_mut().zip(&self.op(op).inputs) {
            *slot = (0..op).find(|&k| self.op(k).output == t);
        }
        out
    }
    fn cbam(&self) -> Option<usize> {
        self.cbam
    }
    fn cbam_lookahead(&self) -> Option<usize> {
        let c = self.cbam.filter(|_| self.stage.lookahead)?;
        match &self.op(c).kind {
            QOpKind::Cbam(p) => Some(p.kernel / 2),
            _ => None,
        }
    }
}

/// Per tensor: the first and last op index at which it must hold its value.
pub(crate) fn lifetimes(model: &QModel) -> Result<(Vec<usize>, Vec<usize>), PlanError> {
    let n = model.tensors.len();
    let last_op = model.ops.len().saturating_sub(1);
    let mut start = vec![usize::MAX; n];
    let mut end = vec![0usize; n];
    if let Some(s) = start.get_mut(model.input) {
        *s = 0;
    }
    for (i, op) in model.ops.iter().enumerate() {
        for &t in &op.inputs {
            if start.get(t).is_none_or(|s| *s == usize::MAX) {
                return Err(PlanError::ReadBeforeWrite {
                    tensor: model
                        .tensors
                        .get(t)
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                    op: i,
                });
            }
            end[t] = end[t].max(i);
        }
        if let Some(s) = start.get_mut(op.output) {
            *s = (*s).min(i);
            end[op.output] = end[op.output].max(i);
        }
    }
    if let Some(e) = end.get_mut(model.output) {
        *e = last_op;
    }
    // Tensors no op writes or reads (none in a lowered model) get an empty lifetime.
    for (s, e) in start.iter_mut().zip(end.iter_mut()) {
        if *s == usize::MAX {
            *s = 0;
            *e = 0;
        }
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{lower, testing::small_cbam_graph, LowerOptions};
    use proptest::prelude::*;

    fn assert_disjoint(buffers: &[Buffer], offsets: &[usize]) {
        for (i, a) in buffers.iter().enumerate() {
            assert_eq!(offsets[i] % ALIGN, 0);
            for (j, b) in buffers.iter().enumerate().skip(i + 1) {
                if a.size == 0 || b.size == 0 || !a.overlaps_in_time(b) {
                    continue;
                }
                let (ra, rb) = (
                    offsets[i]..offsets[i] + a.size,
                    offsets[j]..offsets[j] + b.size,
                );
                assert!(
                    ra.end <= rb.start || rb.end <= ra.start,
                    "buffers {i} {a:?}@{ra:?} and {j} {b:?}@{rb:?} overlap"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn live_buffers_never_overlap(
            raw in prop::collection::vec((1usize..5000, 0usize..40, 0usize..10), 1..60)
        ) {
            let buffers: Vec<Buffer> = raw
                .iter()
                .map(|&(size, start, len)| Buffer { size, start, end: start + len })
                .collect();
            let offsets = assign_offsets(&buffers);
            assert_disjoint(&buffers, &offsets);
        }
    }

    #[test]
    fn dead_buffers_are_reused() {
        // A chain: each buffer dies when the next is written.
        let buffers: Vec<Buffer> = (0..6)
            .map(|i| Buffer {
                size: 1000,
                start: i,
                end: i + 1,
            })
            .collect();
        let offsets = assign_offsets(&buffers);
        assert_disjoint(&buffers, &offsets);
        let top = offsets.iter().max().copied().unwrap_or(0) + 1000;
        assert_eq!(
            top,
            1008 + 1000,
            "a chain needs two slots (second one aligned)"
        );
    }

    #[test]
    fn small_model_plan_is_tight_and_cbam_is_in_place() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let p = plan(&m).unwrap();
        // Ops: conv, cbam (in place), maxpool, fc.
        assert_eq!(p.in_place, vec![1]);
        assert_eq!(p.offsets[m.ops[1].output], p.offsets[m.ops[1].inputs[0]]);
        assert!(p.op_scratch[1] > 0 && p.scratch_size == p.op_scratch[1]);
        // Conv out 256 B + input 64 B live together; scratch lives only during CBAM.
        let scratch_end = (p.scratch_off + p.scratch_size) as usize;
        assert!(p.arena_size as usize >= scratch_end);
        assert!(p.arena_size <= 256 + 64 + 16 + p.scratch_size + 16, "{p:?}");
        // Scratch is disjoint from the CBAM tensor while CBAM runs.
        let cbam_t = p.offsets[m.ops[1].output] as usize..p.offsets[m.ops[1].output] as usize + 256;
        assert!(scratch_end <= cbam_t.start || p.scratch_off as usize >= cbam_t.end);
    }

    /// The core's outputs for `plan` on a few inputs (the blob must pass the reader's checks).
    fn run_core(m: &QModel, p: &Plan) -> Vec<Vec<i8>> {
        run_blob(&crate::blob::write(m, p, &crate::blob::BlobMeta::default()).unwrap())
    }

    fn run_blob(blob: &[u8]) -> Vec<Vec<i8>> {
        let model = cbam_core::Model::parse(blob).unwrap();
        let mut arena = vec![0u8; model.arena_size()];
        (0..3)
            .map(|k| {
                let x: Vec<i8> = (0..64)
                    .map(|i| ((i * 37 + k * 101) % 256) as u8 as i8)
                    .collect();
                let mut y = vec![0i8; model.output().len()];
                model.run(&mut arena, &x, &mut y).unwrap();
                y
            })
            .collect()
    }

    fn stage(first: usize, end: usize, band_rows: usize) -> Stage {
        Stage {
            first,
            end,
            band_rows,
            lookahead: false,
        }
    }

    #[test]
    fn a_stage_holds_bands_with_cbam_in_place_between_them_and_gives_the_same_bytes() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let whole = plan_with(&m, false, &[]).unwrap();
        // Conv, CBAM, 2x2 max pool: one pooled row needs two rows of each 8-row map.
        let staged = plan_with(&m, true, &[stage(0, 3, 1)]).unwrap();
        let (conv_out, cbam_out) = (m.ops[0].output, m.ops[1].output);
        assert_eq!(staged.band_rows[conv_out], 2);
        assert_eq!(staged.band_rows[cbam_out], 2);
        assert_eq!(
            staged.band_rows[m.ops[2].output], 0,
            "the last output is whole"
        );
        assert_eq!(staged.in_place, vec![1]);
        assert_eq!(staged.offsets[conv_out], staged.offsets[cbam_out]);
        assert!(staged.arena_size < whole.arena_size, "{staged:?}");
        // The conv runs in all three passes (two rows per band, four bands each).
        assert_eq!(staged.extra_macs, 2 * op_macs(&m, 0));
        assert_eq!(run_core(&m, &staged), run_core(&m, &whole));
    }

    #[test]
    fn a_stage_ending_at_its_cbam_op_copies_the_band_into_the_whole_output() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let staged = plan_with(&m, true, &[stage(0, 2, 3)]).unwrap();
        assert!(staged.in_place.is_empty());
        assert_eq!(staged.band_rows[m.ops[1].output], 0);
        assert_eq!(run_core(&m, &staged), run_core(&m, &plan(&m).unwrap()));
    }

    fn lookahead(first: usize, end: usize, band_rows: usize) -> Stage {
        Stage {
            lookahead: true,
            ..stage(first, end, band_rows)
        }
    }

    #[test]
    fn a_lookahead_stage_drops_the_spatial_map_pass_and_gives_the_same_bytes() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let whole = run_core(&m, &plan(&m).unwrap());
        for band_rows in 1..=4 {
            let three = plan_with(&m, true, &[stage(0, 3, band_rows)]).unwrap();
            let ahead = plan_with(&m, true, &[lookahead(0, 3, band_rows)]).unwrap();
            assert_eq!(ahead.in_place, vec![1]);
            assert_eq!(run_core(&m, &ahead), whole, "bands of {band_rows} rows");
            // The conv's output (the CBAM input) holds the rows below the band too, unless
            // the band (two CBAM rows per pooled row) is the whole 8-row map.
            let conv_out = m.ops[0].output;
            let cbam_rows = ahead.band_rows[m.ops[1].output];
            assert_eq!(cbam_rows as usize, (2 * band_rows).min(8));
            assert_eq!(ahead.band_rows[conv_out] > cbam_rows, cbam_rows < 8);
            // One pass of the conv fewer, k/2 rows more per band.
            if band_rows >= 2 {
                assert!(ahead.extra_macs < three.extra_macs, "{ahead:?} {three:?}");
            }
        }
        // Ending at the CBAM op: the look-ahead rows go to the whole output.
        let last = plan_with(&m, true, &[lookahead(0, 2, 3)]).unwrap();
        assert!(last.in_place.is_empty());
        assert_eq!(run_core(&m, &last), whole);
    }

    #[test]
    fn a_version_2_stage_computes_every_row_it_holds_and_gives_the_same_bytes() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let p = plan_with(&m, true, &[stage(0, 3, 1)]).unwrap();
        let mut old = crate::blob::write(&m, &p, &crate::blob::BlobMeta::default()).unwrap();
        let mut header = cbam_core::format::HeaderFields::read(&old).unwrap();
        header.version = 2;
        old[..cbam_core::format::HeaderFields::LEN].copy_from_slice(&header.write());
        cbam_core::format::seal_crc(&mut old).unwrap();
        assert_eq!(run_blob(&old), run_core(&m, &plan(&m).unwrap()));
    }

    #[test]
    fn the_lookahead_needs_a_cbam_op_and_the_reader_refuses_unknown_stage_flags() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        assert!(matches!(
            plan_with(&m, true, &[lookahead(2, 3, 1)]),
            Err(PlanError::BadStage { .. })
        ));
        // Not in place and not the stage's last op: no room for the rows below the band.
        assert!(matches!(
            plan_with(&m, false, &[lookahead(0, 3, 1)]),
            Err(PlanError::BadStage { .. })
        ));
        let p = plan_with(&m, true, &[lookahead(0, 3, 2)]).unwrap();
        let mut blob = crate::blob::write(&m, &p, &crate::blob::BlobMeta::default()).unwrap();
        let header = cbam_core::format::HeaderFields::read(&blob).unwrap();
        let flags_at = header.schedule_off as usize + 4 + 6;
        assert_eq!(blob[flags_at], 1, "the look-ahead flag");
        blob[flags_at] = 3;
        cbam_core::format::seal_crc(&mut blob).unwrap();
        let err = cbam_core::Model::parse(&blob).unwrap_err().to_string();
        assert!(err.contains("unknown stage flags"), "{err}");
    }

    #[test]
    fn ops_that_need_the_whole_map_cannot_be_staged() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let fc = m.ops.len() - 1;
        assert!(matches!(
            plan_with(&m, true, &[stage(fc - 1, fc + 1, 1)]),
            Err(PlanError::BadStage { .. })
        ));
        assert!(matches!(
            plan_with(&m, true, &[stage(0, 3, 0)]),
            Err(PlanError::BadStage { .. })
        ));
    }
}
