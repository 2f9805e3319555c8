//! Graph passes: each a function `Graph -> Result<Graph, PassError>` that can be run and
//! tested alone; [`optimize`] runs them in the order the quantizer expects.
//!
//! After [`optimize`]: no Identity, no BatchNorm, no Affine (folded into the Conv/Linear
//! before it, or a depthwise 1x1 Conv), no Pad before a Conv or average pool, no layout-free
//! reshape (vector-like shapes `[n]`, `[n, 1, 1]` are interchangeable, consumers accept
//! either), ReLU/Clip fused into Conv/Linear/Add where they were the sole consumer, every
//! 1x1 Conv on a pooled vector is a Linear, every recognised CBAM block is one
//! [`Op::Cbam`](crate::ir::Op::Cbam), and the tensor list holds only used tensors.

mod affine;
mod cbam;
mod channel_sites;
mod conv_to_linear;
mod edit;
mod fold_bn;
mod fold_pad;
mod fuse_act;
mod self_gate;
mod simplify;

pub use affine::{affine_to_conv, batchnorm_to_affine, fold_affine};
pub use cbam::match_cbam;
pub use channel_sites::{channel_sites, ChannelSite, GateKind};
pub use conv_to_linear::conv1x1_to_linear;
pub use fold_bn::fold_batchnorm;
pub use fold_pad::fold_pad;
pub use fuse_act::fuse_activations;
pub use self_gate::fuse_self_gates;
pub use simplify::{compact, remove_identities};

use crate::ir::Graph;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("the graph is malformed: {why} (import it with import::load_onnx)")]
    Malformed { why: String },
    #[error("node {node:?}: {why}")]
    BadNode { node: String, why: String },
}

/// All passes, in order: simplification first so the later patterns see one form.
pub fn optimize(graph: Graph) -> Result<Graph, PassError> {
    let g = remove_identities(graph)?;
    let g = fold_pad(g)?;
    let g = fold_batchnorm(g)?;
    let g = batchnorm_to_affine(g)?;
    let g = fuse_self_gates(g)?;
    let g = fold_affine(g)?;
    let g = conv1x1_to_linear(g)?;
    let g = fuse_activations(g)?;
    let g = match_cbam(g)?;
    let g = affine_to_conv(g)?;
    compact(g)
}

#[cfg(test)]
mod tests;
