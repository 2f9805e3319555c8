//! Pruning's edits of the ONNX protobuf: writing constants and attributes, and an index of
//! who produces, reads and holds each value. Reading goes through the importer's decoders
//! ([`import::constant`], [`import::attrs`]), so both see the same bytes the same way.

use std::collections::HashMap;

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto, NodeProto,
    TensorProto,
};

use super::PruneError;
use crate::import::{
    attrs,
    constant::{decode_tensor, ConstData},
};

/// A FLOAT constant's elements: the only type a cut slices and writes back.
pub fn tensor_f32(t: &TensorProto) -> Result<Vec<f32>, PruneError> {
    let unsupported = |why: String| PruneError::Unsupported(format!("constant `{}` {why}", t.name));
    if DataType::try_from(t.data_type) != Ok(DataType::Float) {
        return Err(unsupported(format!(
            "has ONNX data type {}, pruning only slices FLOAT weights",
            t.data_type
        )));
    }
    match decode_tensor(t, None).map_err(unsupported)?.data {
        ConstData::F32(v) => Ok(v),
        ConstData::I64(_) => Err(unsupported("is not FLOAT".into())),
    }
}

/// An INT64 constant's elements (shapes, axes), the type reshape targets are written back in.
pub fn tensor_i64(t: &TensorProto) -> Option<Vec<i64>> {
    if DataType::try_from(t.data_type) != Ok(DataType::Int64) {
        return None;
    }
    match decode_tensor(t, None).ok()?.data {
        ConstData::I64(v) => Some(v),
        ConstData::F32(_) => None,
    }
}

/// Replaces a FLOAT tensor's contents and dims; data goes to `raw_data` (little-endian).
pub fn set_tensor_f32(t: &mut TensorProto, dims: &[usize], values: &[f32]) {
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.float_data.clear();
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
}

/// Replaces an INT64 tensor's contents (dims unchanged).
pub fn set_tensor_i64(t: &mut TensorProto, values: &[i64]) {
    t.int64_data.clear();
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
}

/// Builds a FLOAT tensor proto.
pub fn new_tensor_f32(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let mut t = TensorProto {
        name: name.to_string(),
        data_type: DataType::Float as i32,
        ..Default::default()
    };
    set_tensor_f32(&mut t, dims, values);
    t
}

pub fn dims_usize(t: &TensorProto) -> Vec<usize> {
    t.dims.iter().map(|&d| d.max(0) as usize).collect()
}

/// Sets (or adds) an INT attribute.
pub fn set_attr_i(node: &mut NodeProto, name: &str, value: i64) {
    if let Some(a) = node.attribute.iter_mut().find(|a| a.name == name) {
        a.i = value;
        return;
    }
    node.attribute.push(AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    });
}

/// Where a constant lives: a graph initializer or a `Constant` node's `value` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstSlot {
    Initializer(usize),
    ConstantNode(usize),
}

/// Index of the graph: producers, consumers and constants by value name. Built once per
/// surgery step; node indices stay valid because pruning only appends nodes.
pub struct GraphIndex {
    pub producer: HashMap<String, usize>,
    pub consumers: HashMap<String, Vec<usize>>,
    pub consts: HashMap<String, ConstSlot>,
}

impl GraphIndex {
    pub fn new(g: &GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        let mut consts = HashMap::new();
        for (i, t) in g.initializer.iter().enumerate() {
            consts.insert(t.name.clone(), ConstSlot::Initializer(i));
        }
        for (i, n) in g.node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(o.clone(), i);
                if n.op_type == "Constant" && attrs::tensor(n, "value").is_some() {
                    consts.insert(o.clone(), ConstSlot::ConstantNode(i));
                }
            }
            for inp in n.input.iter().filter(|v| !v.is_empty()) {
                let users = consumers.entry(inp.clone()).or_default();
                if !users.contains(&i) {
                    users.push(i);
                }
            }
        }
        GraphIndex {
            producer,
            consumers,
            consts,
        }
    }

    pub fn consumers_of(&self, value: &str) -> &[usize] {
        self.consumers.get(value).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn is_const(&self, value: &str) -> bool {
        self.consts.contains_key(value)
    }
}

pub fn const_tensor(g: &GraphProto, slot: ConstSlot) -> Option<&TensorProto> {
    match slot {
        ConstSlot::Initializer(i) => g.initializer.get(i),
        ConstSlot::ConstantNode(i) => g.node.get(i).and_then(|n| attrs::tensor(n, "value")),
    }
}

pub fn const_tensor_mut(g: &mut GraphProto, slot: ConstSlot) -> Option<&mut TensorProto> {
    match slot {
        ConstSlot::Initializer(i) => g.initializer.get_mut(i),
        ConstSlot::ConstantNode(i) => g
            .node
            .get_mut(i)
            .and_then(|n| n.attribute.iter_mut().find(|a| a.name == "value"))
            .and_then(|a| a.t.as_mut()),
    }
}

/// The axes a Reduce* node reduces over: the `axes` attribute (opset < 18) or its second
/// input (opset >= 18). `None` means all axes.
pub fn reduce_axes(
    g: &GraphProto,
    idx: &GraphIndex,
    node: &NodeProto,
    rank: usize,
) -> Option<Vec<usize>> {
    let raw = attrs::ints(node, "axes").or_else(|| {
        let name = node.input.get(1)?;
        let slot = *idx.consts.get(name)?;
        tensor_i64(const_tensor(g, slot)?)
    })?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.iter()
            .map(|&a| {
                if a < 0 {
                    (a + rank as i64).max(0) as usize
                } else {
                    a as usize
                }
            })
            .collect(),
    )
}

/// Sets (or adds) an INTS attribute.
pub fn set_attr_ints(node: &mut NodeProto, name: &str, values: &[i64]) {
    node.attribute.retain(|a| a.name != name);
    node.attribute.push(AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    });
}

/// Replaces `Identity` nodes whose input is an initializer by an initializer of their own
/// (the legacy exporter deduplicates equal constants that way). Each weight then belongs to
/// one name, so slicing it for one conv cannot silently change another.
pub fn materialize_constant_identities(g: &mut GraphProto) {
    let inits: HashMap<String, usize> = g
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut copies = Vec::new();
    g.node.retain(|n| {
        let source = (n.op_type == "Identity").then(|| n.input.first()).flatten();
        let (Some(src), Some(out)) = (source, n.output.first()) else {
            return true;
        };
        let Some(t) = inits.get(src).and_then(|&i| g.initializer.get(i)) else {
            return true;
        };
        let mut copy = t.clone();
        copy.name = out.clone();
        copies.push(copy);
        false
    });
    g.initializer.extend(copies);
}
