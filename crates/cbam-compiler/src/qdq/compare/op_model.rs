//! One core op's share of the QDQ graph, cut out so it can be fed the core's own int8
//! inputs: what the op adds on bit-identical inputs, free of what earlier layers did.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tract_onnx::pb::{tensor_proto::DataType, type_proto, GraphProto, ModelProto, NodeProto};
use tract_onnx::prelude::*;

use super::CompareError;
use crate::qdq::proto::value_info;

/// The sub-graph from an op's int8 inputs to the values compared for it.
pub struct OpModel {
    plan: Arc<TypedRunnableModel>,
    /// NCHW dims of each int8 input, in graph-input order.
    dims: Vec<[usize; 4]>,
}

impl OpModel {
    /// `inputs`: the dequantized QDQ values the op reads with their `(c, h, w)`;
    /// `outputs`: the values to compute.
    pub fn cut(
        proto: &ModelProto,
        inputs: &[(String, (usize, usize, usize))],
        outputs: &[String],
    ) -> Result<Self, CompareError> {
        let graph = proto.graph.clone().unwrap_or_default();
        let mut levels = Vec::new();
        let mut dims = Vec::new();
        for (value, (c, h, w)) in inputs {
            let level = levels_feeding(&graph, value)?;
            if !levels.contains(&level) {
                levels.push(level);
                dims.push([1, *c, *h, *w]);
            }
        }
        let nodes = needed_nodes(&graph.node, &levels, outputs);
        let used: HashSet<&str> = nodes
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .collect();
        let initializer = graph
            .initializer
            .iter()
            .filter(|t| used.contains(t.name.as_str()))
            .cloned()
            .collect();
        let input = levels
            .iter()
            .zip(&dims)
            .map(|(name, d)| int8_input(name, d))
            .collect();
        let sub = ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer,
                input,
                output: outputs.iter().map(|o| value_info(o, None)).collect(),
                ..Default::default()
            }),
            ..proto.clone()
        };
        let fail = |e: TractError| CompareError::Cut {
            value: outputs.first().cloned().unwrap_or_default(),
            why: format!("{e:?}"),
        };
        let mut model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true)
            .parse(&sub, None)
            .map_err(fail)?
            .model;
        for (i, d) in dims.iter().enumerate() {
            model.set_input_fact(i, i8::fact(d).into()).map_err(fail)?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(fail)?;
        Ok(OpModel { plan, dims })
    }

    /// Runs on NHWC int8 inputs (one per distinct input); returns each output flattened NCHW.
    pub fn run(&self, inputs: &[&[i8]]) -> Result<Vec<Vec<f32>>, CompareError> {
        let fail = |e: TractError| CompareError::Cut {
            value: String::new(),
            why: format!("{e:?}"),
        };
        let tensors = inputs
            .iter()
            .zip(&self.dims)
            .map(|(nhwc, d)| {
                let nchw = nhwc_to_nchw(nhwc, d);
                Tensor::from_shape(d, &nchw).map(TValue::from)
            })
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(fail)?;
        let outputs = self.plan.run(tensors).map_err(fail)?;
        outputs
            .iter()
            .map(|v| {
                v.to_plain_array_view::<f32>()
                    .map(|a| a.iter().copied().collect())
                    .map_err(fail)
            })
            .collect()
    }
}

/// The int8 tensor the DequantizeLinear producing `value` reads.
fn levels_feeding(graph: &GraphProto, value: &str) -> Result<String, CompareError> {
    graph
        .node
        .iter()
        .find(|n| n.op_type == "DequantizeLinear" && n.output.iter().any(|o| o == value))
        .and_then(|n| n.input.first().cloned())
        .ok_or_else(|| CompareError::NoQuantization(value.to_string()))
}

/// The nodes `outputs` depend on, stopping at `cut` (which become graph inputs), in
/// their original (topological) order.
fn needed_nodes(nodes: &[NodeProto], cut: &[String], outputs: &[String]) -> Vec<NodeProto> {
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut keep = vec![false; nodes.len()];
    let mut todo: Vec<&str> = outputs.iter().map(String::as_str).collect();
    while let Some(name) = todo.pop() {
        if cut.iter().any(|c| c == name) {
            continue;
        }
        if let Some(&i) = producer.get(name) {
            if let (Some(slot), Some(node)) = (keep.get_mut(i), nodes.get(i)) {
                if !*slot {
                    *slot = true;
                    todo.extend(node.input.iter().map(String::as_str));
                }
            }
        }
    }
    nodes
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(n, _)| n.clone())
        .collect()
}

fn int8_input(name: &str, dims: &[usize; 4]) -> tract_onnx::pb::ValueInfoProto {
    let dims: Vec<i64> = dims.iter().map(|d| *d as i64).collect();
    let mut info = value_info(name, Some(&dims));
    if let Some(type_proto::Value::TensorType(t)) =
        info.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = DataType::Int8 as i32;
    }
    info
}

fn nhwc_to_nchw(nhwc: &[i8], [_, c, h, w]: &[usize; 4]) -> Vec<i8> {
    let mut out = vec![0i8; c * h * w];
    for y in 0..*h {
        for x in 0..*w {
            for k in 0..*c {
                if let (Some(v), Some(slot)) = (
                    nhwc.get((y * w + x) * c + k),
                    out.get_mut((k * h + y) * w + x),
                ) {
                    *slot = *v;
                }
            }
        }
    }
    out
}
