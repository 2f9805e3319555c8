//! Small builders for the ONNX protobuf pieces the QDQ writer emits.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::compare::CORE_OPS_KEY;
use crate::ir::ModelMeta;
use crate::quant::QModel;

/// The float model's pixel convention and labels, in the `cbam.*` keys import reads, so
/// tools running the QDQ model normalise and name classes as for the float one; and the
/// op map that lines the QDQ values up with the blob's ops (see [`super::compare`]).
pub fn metadata_props(meta: &ModelMeta, model: &QModel) -> Vec<StringStringEntryProto> {
    let join = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
    [
        ("cbam.mean", join(&meta.mean)),
        ("cbam.std", join(&meta.std)),
        ("cbam.labels", meta.labels.join(",")),
        (CORE_OPS_KEY, op_map(model)),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(key, value)| StringStringEntryProto {
        key: key.into(),
        value,
    })
    .collect()
}

/// One line per core op: the QDQ value holding its output, then those holding its inputs.
fn op_map(model: &QModel) -> String {
    let name = |t: usize| -> String {
        let n = model
            .tensors
            .get(t)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        if t == model.input {
            input_value(&n)
        } else {
            n
        }
    };
    model
        .ops
        .iter()
        .map(|op| {
            std::iter::once(op.output)
                .chain(op.inputs.iter().copied())
                .map(name)
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The dequantized copy of the graph input that every consumer reads.
pub fn input_value(graph_input: &str) -> String {
    format!("{graph_input}__dq")
}

/// One axis of a declared shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Axis {
    Fixed(i64),
    Named(String),
}

pub fn value_info(name: &str, dims: Option<&[i64]>) -> ValueInfoProto {
    let axes: Option<Vec<Axis>> = dims.map(|d| d.iter().map(|v| Axis::Fixed(*v)).collect());
    shaped_value_info(name, axes.as_deref())
}

/// A float tensor's declaration, with its shape when known.
pub fn shaped_value_info(name: &str, axes: Option<&[Axis]>) -> ValueInfoProto {
    let dim = |a: &Axis| Dimension {
        denotation: String::new(),
        value: Some(match a {
            Axis::Fixed(v) => dimension::Value::DimValue(*v),
            Axis::Named(n) => dimension::Value::DimParam(n.clone()),
        }),
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: axes.map(|a| TensorShapeProto {
                    dim: a.iter().map(dim).collect(),
                }),
            })),
        }),
        ..Default::default()
    }
}

pub fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.iter().map(|x| *x as i64).collect(),
        ..Default::default()
    }
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

pub fn tensor(name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|d| *d as i64).collect(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}
