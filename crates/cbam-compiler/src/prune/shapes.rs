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

/// Shapes of all labelled outlets of a typed model, plus the shapes of constants.
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
        for t in &g.initializer {
            map.entry(t.name.clone())
                .or_insert_with(|| super::onnx_util::dims_usize(t));
        }
    }
    Ok(map)
}

/// The model's declared input shape without the batch dimension, if fully known.
pub fn declared_input_chw(proto: &ModelProto) -> Option<Vec<usize>> {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto::Value as TypeValue};
    let g = proto.graph.as_ref()?;
    let init: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = g.input.iter().find(|i| !init.contains(i.name.as_str()))?;
    let TypeValue::TensorType(tt) = input.r#type.as_ref()?.value.as_ref()?;
    let dims = &tt.shape.as_ref()?.dim;
    let mut out = Vec::new();
    for d in dims.iter().skip(1) {
        match d.value.as_ref()? {
            Value::DimValue(v) if *v > 0 => out.push(*v as usize),
            _ => return None,
        }
    }
    Some(out)
}
