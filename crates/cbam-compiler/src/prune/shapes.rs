//! Concrete shapes of every named ONNX value, from tract's type inference on a fixed input
//! shape. Pruning only changes channel counts, so spatial sizes read here stay valid for
//! the pruned model too (MAC counting relies on that).

use std::collections::HashMap;

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use super::PruneError;
use crate::float_run;

pub type ShapeMap = HashMap<String, Vec<usize>>;

/// Loads `proto` into tract with the input fixed to `[1, c, h, w]`.
pub fn load_typed(proto: &ModelProto, input_chw: &[usize]) -> Result<TypedModel, PruneError> {
    Ok(float_run::typed_model(proto, input_chw)?)
}

/// Shapes of all labelled outlets of a typed model, plus the shapes of constants
/// (initializers and `Constant` nodes, which tract folds away).
pub fn value_shapes(proto: &ModelProto, input_chw: &[usize]) -> Result<ShapeMap, PruneError> {
    let typed = load_typed(proto, input_chw)?;
    let mut map = ShapeMap::new();
    for (outlet, label) in &typed.outlet_labels {
        let fact = typed
            .outlet_fact(*outlet)
            .map_err(|e| PruneError::Tract(format!("{e:#}")))?;
        if let Some(dims) = fact.shape.as_concrete() {
            map.insert(label.clone(), dims.to_vec());
        }
    }
    if let Some(g) = proto.graph.as_ref() {
        let index = super::proto_edit::GraphIndex::new(g);
        for (name, &slot) in &index.consts {
            if let Some(t) = super::proto_edit::const_tensor(g, slot) {
                map.entry(name.clone())
                    .or_insert_with(|| super::proto_edit::dims_usize(t));
            }
        }
    }
    Ok(map)
}
