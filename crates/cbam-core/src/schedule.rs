//! Patch-based execution of a stage: a run of ops computed band by band (full-width rows of
//! the stage's last output), each op's rows worked out backwards from the band through
//! every op's window (kernel, stride, dilation, padding) and recomputed where bands overlap.
//!
//! The rows live in per-tensor band buffers, so the stage's intermediate tensors never
//! exist whole. A CBAM block inside a stage takes three passes over its input rows: channel
//! statistics (O(C)), the channel-pooled spatial maps (O(hw)), then the scaling while the
//! final pass runs on; the passes before the last stop at the CBAM block.
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
}

/// What a pass computes at its target op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The CBAM op accumulates its input's per-channel sum and maximum.
    ChannelStats,
    /// The CBAM op scales its input by the channel attention and pools it per pixel.
    SpatialMaps,
    /// Every op runs to the end; the CBAM op applies both attentions.
    Final,
}

/// One band of one pass: the rows each stage op computes (empty: the op does not run).
pub struct Band<'a> {
    pub pass: Pass,
    /// The op the pass runs up to (the CBAM op, or the stage's last op).
    pub target: usize,
    pub rows: &'a [Rows],
}

/// Fills `rows` with the rows each op must compute for op `target` to yield `out`.
fn needs<G: StageGraph>(g: &G, target: usize, out: Rows, rows: &mut [Rows]) {
    rows.fill(Rows::EMPTY);
    if let Some(r) = rows.get_mut(target) {
        *r = out;
    }
    for op in (0..=target).rev() {
        let Some(&own) = rows.get(op) else { continue };
        if own.is_empty() {
            continue;
        }
        let input = g.window(op).input_rows(g.in_h(op), own);
        for p in g.producers(op).into_iter().flatten().filter(|&p| p < op) {
            if let Some(r) = rows.get_mut(p) {
                *r = r.union(input);
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
    let mut rows = [Rows::EMPTY; MAX_STAGE_OPS];
    let passes = g
        .cbam()
        .filter(|&c| c < n)
        .map(|c| [(Pass::ChannelStats, c), (Pass::SpatialMaps, c)]);
    let prefix = passes.iter().flatten().copied();
    for (pass, target) in prefix.chain([(Pass::Final, last)]) {
        let h = g.out_h(target);
        let mut y = 0;
        while y < h {
            let band = Rows::new(y, (y + step).min(h));
            let slice = rows.get_mut(..n).unwrap_or_default();
            needs(g, target, band, slice);
            f(&Band {
                pass,
                target,
                rows: slice,
            })?;
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
}

/// The walk's totals for bands of `band_rows` rows.
pub fn cost<G: StageGraph>(g: &G, band_rows: usize) -> StageCost {
    let mut cost = StageCost {
        max_rows: [0; MAX_STAGE_OPS],
        computed_rows: [0; MAX_STAGE_OPS],
    };
    let _ = walk::<G, ()>(g, band_rows, |band| {
        for (i, r) in band.rows.iter().enumerate() {
            if let (Some(m), Some(c)) = (cost.max_rows.get_mut(i), cost.computed_rows.get_mut(i)) {
                *m = (*m).max(r.len());
                *c += r.len();
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
    fn every_output_row_is_computed_once_per_pass_and_halos_are_recomputed() {
        let g = Chain {
            windows: &[S2, S1, RowWindow::Same],
            heights: &[16, 8, 8, 8],
            cbam: Some(2),
        };
        let c = cost(&g, 2);
        // Three passes over the CBAM op, one row each time.
        assert_eq!(c.computed_rows[2], 3 * 8);
        // The 3x3 conv before it needs one halo row on each inner band edge.
        assert_eq!(c.max_rows[0], 4);
        assert!(c.computed_rows[0] > 3 * 8);
        let mut finals = 0;
        walk::<_, ()>(&g, 3, |b| {
            finals += usize::from(b.pass == Pass::Final);
            Ok(())
        })
        .unwrap();
        assert_eq!(finals, 3, "8 rows in bands of 3");
    }
}
