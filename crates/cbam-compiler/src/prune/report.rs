//! The JSON report `cbam prune --report` writes.

use serde::Serialize;

use super::cost::Cost;
use super::criteria::AttentionStats;
use super::reconstruct::ReconstructionReport;
use super::{GroupKind, Scope};

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub criterion: String,
    pub selection: String,
    pub min_channels: String,
    pub calibration_samples: usize,
    pub spatial_mean_compensated: bool,
    /// Which groups the selection took channels from.
    pub scope: Scope,
    /// Convs refitted on the calibration set after the cut (empty: plain cut).
    pub reconstruction: Vec<ReconstructionReport>,
    pub blocks: Vec<BlockReport>,
    pub before: Cost,
    pub after: Cost,
    pub macs_reduction_pct: f64,
    pub params_reduction_pct: f64,
    /// Float top-1 accuracy on `--data`, when given.
    pub accuracy: Option<AccuracyReport>,
    /// The other criterion at the same per-block channel counts.
    pub comparison: Option<ComparisonReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockReport {
    pub name: String,
    /// ONNX value whose channels were cut.
    pub feature: String,
    pub kind: GroupKind,
    pub channels: usize,
    pub kept: usize,
    pub removed_channels: Vec<usize>,
    pub kept_channels: Vec<usize>,
    /// A residual Add couples these channels (cut only under `--channels attended|all`).
    pub residual_coupled: bool,
    /// Residual Adds that receive this branch through a scatter conv.
    pub scattered_adds: Vec<String>,
    /// Why the block was left alone, if it was.
    pub skipped: Option<String>,
    pub attention: Option<AttentionStats>,
    /// Internal groups: attention propagated through the consumer conv (relative, 0..1).
    pub propagated_attention: Option<Vec<f32>>,
    pub l1: Vec<f32>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AccuracyReport {
    pub samples: usize,
    pub before_pct: f64,
    pub after_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparisonReport {
    pub criterion: String,
    pub after: Cost,
    pub accuracy_after_pct: Option<f64>,
    /// Per block, |A ∩ B| / |A ∪ B| of the two criteria's removed sets (1 when both empty).
    pub removed_overlap: Vec<f64>,
}

pub fn reduction_pct(before: u64, after: u64) -> f64 {
    if before == 0 {
        return 0.0;
    }
    100.0 * (before as f64 - after as f64) / before as f64
}

pub fn jaccard(a: &[usize], b: &[usize]) -> f64 {
    let inter = a.iter().filter(|x| b.contains(x)).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}
