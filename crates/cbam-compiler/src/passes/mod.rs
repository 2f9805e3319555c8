//! Graph passes: each a function `Graph -> Result<Graph, PassError>` that can be run and
//! tested alone; [`optimize`] runs them in the order the quantizer expects.
//!
//! After [`optimize`]: no Identity, no BatchNorm that followed a Conv/Linear, no layout-free
//! reshape (vector-like shapes `[n]`, `[n, 1, 1]` are interchangeable, consumers accept
//! either), ReLU/Clip fused into Conv/Linear/Add where they were the sole consumer, every
//! 1x1 Conv on a pooled vector is a Linear, every recognised CBAM block is one
//! [`Op::Cbam`](crate::ir::Op::Cbam), and the tensor list holds only used tensors.

mod cbam;
mod conv_to_linear;
mod edit;
mod fold_bn;
mod fuse_act;
mod simplify;

pub use cbam::match_cbam;
pub use conv_to_linear::conv1x1_to_linear;
pub use fold_bn::fold_batchnorm;
pub use fuse_act::fuse_activations;
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
    let g = fold_batchnorm(g)?;
    let g = conv1x1_to_linear(g)?;
    let g = fuse_activations(g)?;
    let g = match_cbam(g)?;
    compact(g)
}

#[cfg(test)]
mod tests;
