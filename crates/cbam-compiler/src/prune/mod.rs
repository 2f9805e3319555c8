//! `cbam prune`: remove the channels that CBAM's channel attention rarely attends to.
//!
//! 1. [`analyze`]: find the channel groups and gather their statistics on the calibration
//!    set. *Attended* groups are the feature maps a channel-attention gate scales, as the
//!    compiler recognises them ([`passes::channel_sites`](crate::passes::channel_sites): CBAM
//!    blocks, SE-style sigmoid or hard-sigmoid gates): each channel's gate value (mean and
//!    10th percentile, [`criteria`]). *Internal* groups are conv outputs used
//!    only inside a block, such as a residual block's `conv1` ([`internal`]): attention
//!    propagated through the conv that reads them. Both also carry the L1 norm of the
//!    producing filters, the classic baseline.
//! 2. [`select_channels`]: ratio (per block or global), threshold or MAC budget, never below a
//!    per-block floor ([`select`]), over the groups [`Scope`] admits (by default every group
//!    that can be removed outright, not the residual-coupled ones); a MAC budget is spent
//!    where the measured damage per MAC saved is least ([`sensitivity`]).
//! 3. [`apply_cuts`]: structural removal on the ONNX protobuf ([`surgery`]); the result is an
//!    ordinary float ONNX model that tract, onnxruntime and PyTorch load.
//! 4. [`reconstruct()`]: refit each conv that lost input channels by ridge least squares on
//!    the calibration images, so that its output matches the unpruned model's
//!    ([`reconstruct`](mod@reconstruct)), then the next conv down ([`downstream`]); this is
//!    what makes a cut usable without fine-tuning.
//!
//! "The same channels zeroed" (the reference the tests compare against) is the original
//! model with the removed channels' producer filters, biases and BatchNorm shift set to
//! zero. The pruned model equals it except for the spatial attention's channel mean, which
//! averages over `K` instead of `N` channels: [`SurgeryOptions::compensate_spatial_mean`]
//! (on by default) rescales the spatial conv's weights on that input by `K/N`, which makes
//! the two equal wherever the channel max is unaffected (a ReLU before the block keeps all
//! values >= 0, so zeros never win the max).

pub mod activations;
pub mod cost;
pub mod criteria;
pub mod downstream;
pub mod internal;
pub mod lstsq;
pub mod plot;
pub mod proto_edit;
pub mod reconstruct;
pub mod select;
pub mod sensitivity;
pub mod shapes;
pub mod surgery;

pub mod report;
mod run;

pub use cost::Cost;
pub use criteria::AttentionStats;
pub use reconstruct::{ReconstructOptions, ReconstructionReport};
pub use run::{
    analyze, apply_cuts, prune, reconstruct, select_channels, zero_channels, Analysis, Group,
    PruneOutcome,
};
pub use select::{MinChannels, Selection};
pub use surgery::{scatter_kept_list, CutOutcome, SurgeryOptions, SCATTER_SUFFIX};
/// tract-onnx's ONNX protobuf types, re-exported for callers of this module.
pub use tract_onnx::pb as onnx_pb;

use std::path::Path;

use tract_onnx::pb::ModelProto;

use crate::float_run::FloatRunError;
use crate::import::{self, ImportError};
use crate::passes::PassError;

/// What ranks channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Mean CBAM channel attention over the calibration set.
    Attention,
    /// L1 norm of the producer conv's filters.
    L1,
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Criterion::Attention => "attention",
            Criterion::L1 => "l1",
        })
    }
}

/// Where a group of channels sits, which decides how it can be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A CBAM block's feature map: the channels attention scales (residual-coupled in a
    /// ResNet block, then scattered back before the Add).
    Attended,
    /// A conv output used only inside a block (a residual block's `conv1`), removed outright.
    Internal,
}

/// Which groups a selection may take channels from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every group that can be removed outright: internal groups, and CBAM feature maps no
    /// residual Add couples (a plain CNN's). Coupled channels are left alone because the
    /// Add still receives the skip path's value there, which no refit can compensate.
    #[default]
    Auto,
    /// CBAM feature maps only, residual-coupled ones included (scattered before the Add).
    Attended,
    /// Internal groups only.
    Internal,
    /// Every group, residual-coupled ones included.
    All,
}

impl Scope {
    /// Whether a group of `kind` may lose channels; `residual_coupled` says a residual Add
    /// couples its channels (they would have to be scattered back).
    pub fn includes(self, kind: GroupKind, residual_coupled: bool) -> bool {
        match self {
            Scope::All => true,
            Scope::Auto => kind == GroupKind::Internal || !residual_coupled,
            Scope::Attended => kind == GroupKind::Attended,
            Scope::Internal => kind == GroupKind::Internal,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Auto => "auto",
            Scope::Attended => "attended",
            Scope::Internal => "internal",
            Scope::All => "all",
        })
    }
}

/// Everything `cbam prune` needs besides the model and the data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneOptions {
    pub criterion: Criterion,
    pub selection: Selection,
    pub min_channels: MinChannels,
    pub surgery: SurgeryOptions,
    pub scope: Scope,
    /// Refit the convs that lost input channels on the calibration set (`None`: plain cut).
    pub reconstruct: Option<ReconstructOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("cannot read ONNX model `{path}`: {reason}")]
    Load { path: String, reason: String },
    #[error("tract failed: {0}")]
    Tract(String),
    #[error(transparent)]
    FloatRun(#[from] FloatRunError),
    #[error("cannot prune this graph: {0}")]
    Unsupported(String),
    #[error("channels are coupled outside the block: {0}")]
    Coupled(String),
    #[error("a sample has {got} values but the model input is {expected:?} (C, H, W) = {} values; use data of the model's input shape", expected.iter().product::<usize>())]
    InputShape { expected: Vec<usize>, got: usize },
    #[error("the {0} set is empty; give at least one sample")]
    EmptyData(&'static str),
    #[error(
        "--ratio must be strictly between 0 and 1 (the fraction of channels to remove), got {0}"
    )]
    BadRatio(f64),
    #[error("--threshold must be a finite number, got {0}")]
    BadThreshold(f32),
    #[error("threshold {threshold} would remove every channel of block `{block}` (its best channel scores {best}); use a threshold below {best}")]
    ThresholdRemovesAll {
        threshold: f32,
        block: String,
        best: f32,
    },
    #[error("a MAC budget of {budget} cannot be met{}; raise --macs-budget or lower --min-channels", best.map(|b| format!(" (the floors allow at best {b} MACs)")).unwrap_or_default())]
    BudgetUnreachable { budget: u64, best: Option<u64> },
    #[error("a MAC budget in percent must be strictly between 0% and 100% of the model's MACs, got {}%", .0 * 100.0)]
    BadBudgetFraction(f64),
    #[error("no channel attention found: the compiler recognises no CBAM block and no channel gate (a feature map multiplied by a per-channel sigmoid or hard-sigmoid gate) in this model, so there is nothing to rank channels by; use --criterion l1 to rank by the L1 norm of conv filters")]
    NoAttention,
    #[error("the compiler cannot import this model (pruning finds its attention through the import): {0}")]
    Import(#[source] ImportError),
    #[error("the compiler's passes failed on this model: {0}")]
    Passes(#[source] PassError),
    #[error("no prunable channel group found: {0}")]
    NothingPrunable(String),
}

/// Reads an ONNX file into tract-onnx's protobuf types, checked as the importer checks
/// every model, with any external data read in (the pruned model is written whole).
pub fn load_proto(path: &Path) -> Result<ModelProto, PruneError> {
    let load = |e: ImportError| PruneError::Load {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let bytes = import::read_model_file(path).map_err(load)?;
    let mut proto = import::decode_model(&bytes, path).map_err(load)?;
    import::inline_external_data(&mut proto, path.parent()).map_err(load)?;
    Ok(proto)
}

/// Serialises a model to ONNX bytes (write them with [`crate::write_atomic`]).
pub fn encode_proto(model: &ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_scope_takes_everything_removable_outright() {
        assert!(Scope::Auto.includes(GroupKind::Internal, false));
        assert!(Scope::Auto.includes(GroupKind::Attended, false));
        assert!(!Scope::Auto.includes(GroupKind::Attended, true));
        assert!(Scope::All.includes(GroupKind::Attended, true));
        assert!(Scope::Attended.includes(GroupKind::Attended, true));
        assert!(!Scope::Internal.includes(GroupKind::Attended, false));
        assert_eq!(Scope::default(), Scope::Auto);
    }
}
