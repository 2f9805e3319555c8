//! Patch-based execution of a stage: a run of ops computed band by band (full-width rows of
//! the stage's last output), each op's rows worked out backwards from the band through
//! every op's window (kernel, stride, dilation, padding).
//!
//! The rows live in per-tensor band buffers, so the stage's intermediate tensors never
//! exist whole. Bands move down the map, so where a window makes two bands read the same
//! rows of a tensor, its buffer keeps them from the band before (they move up to the
//! buffer's start) and its op computes only the rows below: every row is computed once per
//! pass, and an op needs of its inputs only what its new rows read.
//!
//! A CBAM block inside a stage first takes a pass over its input rows for the channel
//! statistics (O(C)); the spatial attention then needs the channel-pooled maps around each
//! pixel. Either a second pass pools the whole maps (O(hw)) before the final pass scales,
//! or (a look-ahead stage) the final pass pools them as it goes: the CBAM op reads `k/2`
//! rows beyond its band, so the spatial conv's window is pooled before the band is scaled,
//! and the maps shrink to a window of rows. The ops before the CBAM op then run twice
//! instead of three times, for `k/2` more rows in their buffers.
//!
//! The interpreter, the reader's checks and the compiler's planner all walk a stage through
//! [`walk`], so the rows the planner sizes a buffer for are the rows the core computes.

use crate::format::OpParams;

/// The most ops one stage holds (the walk's working arrays are on the stack).
pub const MAX_STAGE_OPS: usize = 32;

/// A half-open range of rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rows {
    pub start: usize,
    pub end: usize,
}

impl Rows {
    pub const EMPTY: Rows = Rows { start: 0, end: 0 };

    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn union(self, other: Rows) -> Rows {
        if self.is_empty() {
            other
        } else if other.is_empty() {
            self
        } else {
            Rows::new(self.start.min(other.start), self.end.max(other.end))
        }
    }
}

/// How an op's output rows depend on its input rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowWindow {
    /// Row `y` from row `y` (element-wise ops, CBAM once its attention is known).
    Same,
    /// A vertical window: output row `y` reads rows `y*stride - pad_top + k*dil`, `k < kh`.
    Window {
        kh: usize,
        stride: usize,
        dil: usize,
        pad_top: usize,
    },
}

impl RowWindow {
    /// The window of an op that can run on bands, `None` for one that cannot (fully
    /// connected, global pools, concat, channel pool, broadcast multiply).
    pub fn of(params: &OpParams) -> Option<RowWindow> {
        let window = |kh: i32, stride: i32, dil: i32, pad: i32| {
            Some(RowWindow::Window {
                kh: usize::try_from(kh).ok().filter(|&k| k > 0)?,
                stride: usize::try_from(stride).ok().filter(|&s| s > 0)?,
                dil: usize::try_from(dil).ok().filter(|&d| d > 0)?,
                pad_top: usize::try_from(pad).ok()?,
            })
        };
        match params {
            OpParams::Conv2d(c) => window(c.kh, c.stride_h, c.dil_h, c.pad_top),
            OpParams::DepthwiseConv2d(d) => {
                let c = &d.conv;
                window(c.kh, c.stride_h, c.dil_h, c.pad_top)
            }
            OpParams::MaxPool2d(p) | OpParams::AvgPool2d(p) => {
                window(p.kh, p.stride_h, 1, p.pad_top)
            }
            OpParams::Add(_) | OpParams::Sigmoid(_) | OpParams::Lut(_) | OpParams::Cbam(_) => {
                Some(RowWindow::Same)
            }
            _ => None,
        }
    }

    /// The input rows (of `in_h`) that output rows `out` read.
    pub fn input_rows(&self, in_h: usize, out: Rows) -> Rows {
        if out.is_empty() {
            return Rows::EMPTY;
        }
        match *self {
            RowWindow::Same => Rows::new(out.start.min(in_h), out.end.min(in_h)),
            RowWindow::Window {
                kh,
                stride,
                dil,
                pad_top,
            } => {
                let span = dil.saturating_mul(kh.saturating_sub(1)).saturating_add(1);
                let first = out.start.saturating_mul(stride);
                let last = (out.end - 1).saturating_mul(stride).saturating_add(span);
                let start = first.saturating_sub(pad_top).min(in_h);
                let end = last.saturating_sub(pad_top).min(in_h).max(start);
                Rows::new(start, end)
            }
        }
    }
}

/// A stage as the walk sees it; op `i` is the stage's `i`-th op (table order).
pub trait StageGraph {
    /// Ops in the stage (at most [`MAX_STAGE_OPS`]).
    fn n_ops(&self) -> usize;
    fn window(&self, op: usize) -> RowWindow;
    /// Rows of op `op`'s output.
    fn out_h(&self, op: usize) -> usize;
    /// Rows of op `op`'s inputs (all its inputs have the same height).
    fn in_h(&self, op: usize) -> usize;
    /// For each input slot: the stage op that writes it, `None` for a tensor written
    /// before the stage (or an unused slot).
    fn producers(&self, op: usize) -> [Option<usize>; 4];
    /// The stage's CBAM op, if it has one (a stage holds at most one).
    fn cbam(&self) -> Option<usize>;
    /// For a look-ahead stage, the rows below its band the CBAM op reads in the final pass
    /// (half its spatial kernel); `None` for a stage with a separate spatial-map pass.
    fn cbam_lookahead(&self) -> Option<usize> {
        None
    }
    /// Whether ops keep the rows two bands share (format version 3); without, every band
    /// computes all the rows it holds.
    fn keeps_rows(&self) -> bool {
        true
    }
}

/// What a pass computes at its target op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The CBAM op accumulates its input's per-channel sum and maximum.
    ChannelStats,
    /// The CBAM op scales its input by the channel attention and pools it per pixel.
    SpatialMaps,
    /// Every op runs to the end; the CBAM op applies both attentions (in a look-ahead
    /// stage, after pooling the spatial maps of its band and the rows below it).
    Final,
}

/// One band of one pass. Per stage op: the rows its buffer holds during the band (empty:
/// the op is not needed), the rows it computes, and how far the rows it keeps from the
/// previous band move up in its buffer.
pub struct Band<'a> {
    pub pass: Pass,
    /// The op the pass runs up to (the CBAM op, or the stage's last op).
    pub target: usize,
    /// Rows each op's buffer holds: kept from the previous band, then computed.
    pub rows: &'a [Rows],
    /// Rows each op computes in this band (the end of its `rows`).
    pub fresh: &'a [Rows],
    /// Per op: the buffer's first row was this many rows further down in the previous band
    /// (its kept rows move up by as many rows before the op computes).
    pub shift: &'a [usize],
    /// In the final pass of a look-ahead stage: the CBAM op and the rows below its band
    /// it reads.
    pub lookahead: Option<(usize, usize)>,
}

impl Band<'_> {
    /// How op `op`'s output rows depend on its input rows in this band.
    pub fn window<G: StageGraph>(&self, g: &G, op: usize) -> RowWindow {
        window_in(g, self.lookahead, op)
    }

    /// Rows of op `op`'s buffer kept from the previous band (the start of its `rows`).
    pub fn kept(&self, op: usize) -> Rows {
        let held = self.rows.get(op).copied().unwrap_or(Rows::EMPTY);
        let fresh = self.fresh.get(op).copied().unwrap_or(Rows::EMPTY);
        Rows::new(held.start, fresh.start.max(held.start).min(held.end))
    }
}

fn window_in<G: StageGraph>(g: &G, lookahead: Option<(usize, usize)>, op: usize) -> RowWindow {
    match lookahead {
        Some((cbam, rows)) if cbam == op => RowWindow::Window {
            kh: rows + 1,
            stride: 1,
            dil: 1,
            pad_top: 0,
        },
        _ => g.window(op),
    }
}

/// The look-ahead of a band of `pass` (see [`Band::lookahead`]).
fn lookahead_of<G: StageGraph>(g: &G, pass: Pass) -> Option<(usize, usize)> {
    match pass {
        Pass::Final => g.cbam().zip(g.cbam_lookahead()),
        _ => None,
    }
}

/// Where a band's rows start from.
#[derive(Clone, Copy)]
enum Seed {
    /// These rows of the target op.
    Output(Rows),
    /// These rows of the target's inputs, the target not running.
    Inputs(Rows),
}

/// The working arrays of a pass: per op, the rows held now and in the previous band.
struct Rolling {
    held: [Rows; MAX_STAGE_OPS],
    fresh: [Rows; MAX_STAGE_OPS],
    shift: [usize; MAX_STAGE_OPS],
    prev: [Rows; MAX_STAGE_OPS],
}

impl Rolling {
    fn new() -> Self {
        Self {
            held: [Rows::EMPTY; MAX_STAGE_OPS],
            fresh: [Rows::EMPTY; MAX_STAGE_OPS],
            shift: [0; MAX_STAGE_OPS],
            prev: [Rows::EMPTY; MAX_STAGE_OPS],
        }
    }

    /// Works out, backwards from op `target` yielding `out`, the rows each op holds and
    /// computes. An op keeps the rows it computed before that it still needs (rows only
    /// move down the map as the bands do); it computes the rest, and needs of its inputs
    /// only what those rows read.
    fn band<G: StageGraph>(
        &mut self,
        g: &G,
        n: usize,
        target: usize,
        lookahead: Option<(usize, usize)>,
        seed: Seed,
    ) {
        self.held.fill(Rows::EMPTY);
        self.fresh.fill(Rows::EMPTY);
        self.shift.fill(0);
        match seed {
            Seed::Output(out) => {
                if let Some(r) = self.held.get_mut(target) {
                    *r = out;
                }
            }
            Seed::Inputs(rows) => {
                for p in g.producers(target).into_iter().flatten() {
                    if let Some(r) = self.held.get_mut(p) {
                        *r = rows;
                    }
                }
            }
        }
        for op in (0..=target.min(n.saturating_sub(1))).rev() {
            let held = self.held[op];
            if held.is_empty() {
                continue;
            }
            let prev = self.prev[op];
            let keeps = g.keeps_rows()
                && !prev.is_empty()
                && held.start >= prev.start
                && held.start < prev.end
                && held.end >= prev.end;
            self.fresh[op] = if keeps {
                self.shift[op] = held.start - prev.start;
                Rows::new(prev.end, held.end)
            } else {
                held
            };
            self.prev[op] = held;
            let input = window_in(g, lookahead, op).input_rows(g.in_h(op), self.fresh[op]);
            for p in g.producers(op).into_iter().flatten().filter(|&p| p < op) {
                if let Some(r) = self.held.get_mut(p) {
                    *r = r.union(input);
                }
            }
        }
    }
}

/// Calls `f` for every band of every pass of the stage, in execution order, with bands of
/// `band_rows` rows of each pass's target. Stops at `f`'s first error.
pub fn walk<G: StageGraph, E>(
    g: &G,
    band_rows: usize,
    mut f: impl FnMut(&Band) -> Result<(), E>,
) -> Result<(), E> {
    let n = g.n_ops().min(MAX_STAGE_OPS);
    let Some(last) = n.checked_sub(1) else {
        return Ok(());
    };
    let step = band_rows.max(1);
    let mut state = Rolling::new();
    let cbam = g.cbam().filter(|&c| c < n);
    let stats = cbam.map(|c| (Pass::ChannelStats, c));
    let maps = cbam
        .filter(|_| g.cbam_lookahead().is_none())
        .map(|c| (Pass::SpatialMaps, c));
    for (pass, target) in stats.into_iter().chain(maps).chain([(Pass::Final, last)]) {
        let lookahead = lookahead_of(g, pass).filter(|&(c, _)| c < n);
        state.prev.fill(Rows::EMPTY);
        let mut emit = |state: &Rolling, target: usize| {
            f(&Band {
                pass,
                target,
                rows: state.held.get(..n).unwrap_or_default(),
                fresh: state.fresh.get(..n).unwrap_or_default(),
                shift: state.shift.get(..n).unwrap_or_default(),
                lookahead,
            })
        };
        // A look-ahead CBAM op's first band reads rows below it: the ops before it compute
        // those first, a row at a time, so no buffer holds more than its steady band.
        if let Some((cbam, rows)) = lookahead {
            for y in 0..rows.min(g.in_h(cbam)) {
                state.band(g, n, cbam, lookahead, Seed::Inputs(Rows::new(0, y + 1)));
                emit(&state, cbam)?;
            }
        }
        let h = g.out_h(target);
        let mut y = 0;
        while y < h {
            let band = Rows::new(y, (y + step).min(h));
            state.band(g, n, target, lookahead, Seed::Output(band));
            emit(&state, target)?;
            y = band.end;
        }
    }
    Ok(())
}

/// What a stage costs: per op, the most rows a band holds and the rows computed per run.
#[derive(Clone, Copy, Debug)]
pub struct StageCost {
    pub max_rows: [usize; MAX_STAGE_OPS],
    pub computed_rows: [usize; MAX_STAGE_OPS],
    /// Whether the op's buffer keeps rows from one band to the next (an op running in
    /// place must not: its output rows would not line up with its input's).
    pub keeps: [bool; MAX_STAGE_OPS],
}

/// The walk's totals for bands of `band_rows` rows.
pub fn cost<G: StageGraph>(g: &G, band_rows: usize) -> StageCost {
    let mut cost = StageCost {
        max_rows: [0; MAX_STAGE_OPS],
        computed_rows: [0; MAX_STAGE_OPS],
        keeps: [false; MAX_STAGE_OPS],
    };
    let _ = walk::<G, ()>(g, band_rows, |band| {
        for (i, (r, fresh)) in band.rows.iter().zip(band.fresh).enumerate() {
            if let (Some(m), Some(c)) = (cost.max_rows.get_mut(i), cost.computed_rows.get_mut(i)) {
                *m = (*m).max(r.len());
                *c += fresh.len();
            }
            if let Some(k) = cost.keeps.get_mut(i) {
                *k |= !band.kept(i).is_empty();
            }
        }
        Ok(())
    });
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of ops with the given windows over rows of the given heights.
    struct Chain {
        windows: &'static [RowWindow],
        heights: &'static [usize],
        cbam: Option<usize>,
    }

    impl StageGraph for Chain {
        fn n_ops(&self) -> usize {
            self.windows.len()
        }
        fn window(&self, op: usize) -> RowWindow {
            self.windows[op]
        }
        fn out_h(&self, op: usize) -> usize {
            self.heights[op + 1]
        }
        fn in_h(&self, op: usize) -> usize {
            self.heights[op]
        }
        fn producers(&self, op: usize) -> [Option<usize>; 4] {
            [op.checked_sub(1), None, None, None]
        }
        fn cbam(&self) -> Option<usize> {
            self.cbam
        }
    }

    const S2: RowWindow = RowWindow::Window {
        kh: 3,
        stride: 2,
        dil: 1,
        pad_top: 1,
    };
    const S1: RowWindow = RowWindow::Window {
        kh: 3,
        stride: 1,
        dil: 1,
        pad_top: 1,
    };

    #[test]
    fn windows_clip_at_the_edges() {
        assert_eq!(S1.input_rows(10, Rows::new(0, 1)), Rows::new(0, 2));
        assert_eq!(S1.input_rows(10, Rows::new(9, 10)), Rows::new(8, 10));
        assert_eq!(S2.input_rows(20, Rows::new(3, 5)), Rows::new(5, 10));
        assert_eq!(
            RowWindow::Same.input_rows(4, Rows::new(2, 3)),
            Rows::new(2, 3)
        );
    }

    #[test]
    fn every_output_row_is_computed_once_per_pass_and_halo_rows_are_kept() {
        let g = Chain {
            windows: &[S2, S1, RowWindow::Same],
            heights: &[16, 8, 8, 8],
            cbam: Some(2),
        };
        let c = cost(&g, 2);
        // Three passes over the CBAM op, one row each time.
        assert_eq!(c.computed_rows[2], 3 * 8);
        // The 3x3 conv before it reads one row above and below its band: the row above
        // was computed by the band before and is kept, not computed again.
        assert_eq!(c.max_rows[0], 4);
        assert_eq!(c.computed_rows[0], 3 * 8);
        let mut second = None;
        walk::<_, ()>(&g, 2, |b| {
            if b.pass == Pass::ChannelStats && b.rows[2] == Rows::new(2, 4) {
                second = Some((b.rows[0], b.fresh[0], b.kept(0), b.shift[0]));
            }
            Ok(())
        })
        .unwrap();
        // Band 0 held rows 0..3 of op 0; band 1 holds 1..5, keeps 1..3 (moved up one row).
        assert_eq!(
            second,
            Some((Rows::new(1, 5), Rows::new(3, 5), Rows::new(1, 3), 1))
        );
        let mut finals = 0;
        walk::<_, ()>(&g, 3, |b| {
            finals += usize::from(b.pass == Pass::Final);
            Ok(())
        })
        .unwrap();
        assert_eq!(finals, 3, "8 rows in bands of 3");
    }

    /// [`Chain`] whose CBAM op reads rows below its band in the final pass.
    struct Ahead(Chain, usize);

    impl StageGraph for Ahead {
        fn n_ops(&self) -> usize {
            self.0.n_ops()
        }
        fn window(&self, op: usize) -> RowWindow {
            self.0.window(op)
        }
        fn out_h(&self, op: usize) -> usize {
            self.0.out_h(op)
        }
        fn in_h(&self, op: usize) -> usize {
            self.0.in_h(op)
        }
        fn producers(&self, op: usize) -> [Option<usize>; 4] {
            self.0.producers(op)
        }
        fn cbam(&self) -> Option<usize> {
            self.0.cbam()
        }
        fn cbam_lookahead(&self) -> Option<usize> {
            Some(self.1)
        }
    }

    #[test]
    fn a_lookahead_stage_has_two_passes_and_its_cbam_op_reads_below_its_band() {
        let chain = || Chain {
            windows: &[S1, RowWindow::Same, RowWindow::Same],
            heights: &[16, 16, 16, 16],
            cbam: Some(1),
        };
        let g = Ahead(chain(), 3);
        let mut seen = Vec::new();
        walk::<_, ()>(&g, 4, |b| {
            let cbam_in = b.window(&g, 1).input_rows(16, b.fresh[1]);
            seen.push((b.pass, b.rows[1], cbam_in, b.rows[0], b.fresh[0]));
            Ok(())
        })
        .unwrap();
        let passes: Vec<Pass> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            passes,
            [&[Pass::ChannelStats; 4][..], &[Pass::Final; 3 + 4]].concat()
        );
        // First the conv computes the three rows below the first band, one at a time,
        // without the CBAM op.
        for (y, band) in seen[4..7].iter().enumerate() {
            assert_eq!(
                (band.1, band.3, band.4),
                (Rows::EMPTY, Rows::new(0, y + 1), Rows::new(y, y + 1))
            );
        }
        // The second band: CBAM rows 4..8 read rows 4..11; the conv keeps 4..7 and
        // computes 7..11.
        assert_eq!(seen[8].1, Rows::new(4, 8));
        assert_eq!(seen[8].2, Rows::new(4, 11));
        assert_eq!((seen[8].3, seen[8].4), (Rows::new(4, 11), Rows::new(7, 11)));
        // The last band stops at the map's edge.
        assert_eq!(seen[10].2, Rows::new(12, 16));
        // The conv's rows once per pass: two passes, against three without look-ahead; its
        // buffer holds the band and the three rows below it.
        let (ahead, three) = (cost(&g, 4), cost(&chain(), 4));
        assert_eq!(ahead.computed_rows[0], 2 * 16);
        assert_eq!(three.computed_rows[0], 3 * 16);
        assert_eq!((ahead.max_rows[0], three.max_rows[0]), (4 + 3, 4));
    }
}
