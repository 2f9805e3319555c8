//! Multiply-accumulates and parameter counts of an ONNX model, as the core executes it.
//!
//! MACs are computed from the current weights and the *original* output spatial sizes:
//! pruning changes only channel counts, so one shape inference on the unpruned model serves
//! every candidate cut (the MAC budget search evaluates many). Scatter convs inserted for
//! residual Adds are not counted: the core folds them into the Add's kept-channel list.

use tract_onnx::pb::ModelProto;

use super::proto_edit::{const_tensor, dims_usize, GraphIndex};
use super::shapes::ShapeMap;
use super::surgery::SCATTER_SUFFIX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Cost {
    pub macs: u64,
    pub params: u64,
}

fn is_scatter(name: &str) -> bool {
    name.ends_with(SCATTER_SUFFIX)
}

/// MACs of Conv / Gemm / MatMul nodes and the number of float weights they and the
/// normalisation layers hold.
pub fn model_cost(model: &ModelProto, original_shapes: &ShapeMap) -> Cost {
    let Some(g) = model.graph.as_ref() else {
        return Cost::default();
    };
    let idx = GraphIndex::new(g);
    let weight_dims = |name: &str| -> Option<Vec<usize>> {
        let slot = *idx.consts.get(name)?;
        const_tensor(g, slot).map(dims_usize)
    };
    let mut cost = Cost::default();
    for node in g.node.iter().filter(|n| !is_scatter(&n.name)) {
        let out_shape = node.output.first().and_then(|o| original_shapes.get(o));
        let weights = node.input.get(1).and_then(|w| weight_dims(w));
        let w_numel = weights.as_ref().map(|d| d.iter().product::<usize>() as u64);
        match (node.op_type.as_str(), out_shape, w_numel) {
            ("Conv", Some(out), Some(w)) => {
                let spatial: usize = out.iter().skip(2).product();
                cost.macs += w * spatial as u64;
            }
            ("Gemm", Some(_), Some(w)) => cost.macs += w,
            ("MatMul", Some(out), Some(w)) => {
                let rows: usize = out.iter().rev().skip(1).product();
                cost.macs += w * rows as u64;
            }
            _ => {}
        }
        let counts_params = matches!(
            node.op_type.as_str(),
            "Conv" | "Gemm" | "MatMul" | "BatchNormalization" | "InstanceNormalization" | "PRelu"
        );
        if counts_params {
            for name in node.input.iter().skip(1) {
                if let Some(d) = weight_dims(name) {
                    cost.params += d.iter().product::<usize>() as u64;
                }
            }
        }
    }
    cost
}
