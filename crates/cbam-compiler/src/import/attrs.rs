//! Typed access to ONNX node attributes.

use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

fn find<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(crate) fn int(node: &NodeProto, name: &str) -> Option<i64> {
    find(node, name).map(|a| a.i)
}

pub(crate) fn float(node: &NodeProto, name: &str) -> Option<f32> {
    find(node, name).map(|a| a.f)
}

pub(crate) fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    find(node, name).map(|a| a.ints.clone())
}

pub(crate) fn string(node: &NodeProto, name: &str) -> Option<String> {
    find(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

pub(crate) fn tensor<'a>(node: &'a NodeProto, name: &str) -> Option<&'a TensorProto> {
    find(node, name).and_then(|a| a.t.as_ref())
}
