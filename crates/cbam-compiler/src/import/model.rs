//! The walk over a whole ONNX model: metadata, the image input, dead-node removal and
//! per-op dispatch.

use std::collections::HashSet;
use std::path::Path;

use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::{type_proto, GraphProto, ModelProto, NodeProto, ValueInfoProto};

use super::builder::{Importer, NodeCtx, Value};
use super::constant::decode_tensor;
use super::guard;
use super::ops_act::{self, Arith};
use super::{ops_nn, ops_pad, ops_shape, ImportError};
use crate::data::normalisation_problem;
use crate::ir::{Batch, Graph, ModelMeta, Op};

pub(crate) fn import(proto: &ModelProto, model_dir: Option<&Path>) -> Result<Graph, ImportError> {
    guard::check_model(proto, model_dir)?;
    let graph = proto.graph.as_ref().ok_or_else(|| ImportError::BadGraph {
        why: "is missing".into(),
    })?;
    let opset = proto
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .unwrap_or(0);
    let mut meta = read_meta(proto)?;
    meta.opset = opset;
    meta.source_name = graph.name.clone();

    let input = image_input(graph)?;
    meta.batch = batch_of(input);
    let [output] = graph.output.as_slice() else {
        return Err(ImportError::BadGraph {
            why: format!("has {} outputs", graph.output.len()),
        });
    };

    let live = live_nodes(&graph.node, &output.name);
    let nodes: Vec<NodeCtx> = live
        .iter()
        .enumerate()
        .map(|(i, node)| NodeCtx {
            proto: node,
            name: guard::node_name(node, i),
        })
        .collect();
    // An op without a translation is named before any of its constants is decoded: the
    // constants of a QDQ model are int8, which says less about the problem than its ops.
    let translations = nodes
        .iter()
        .map(translator)
        .collect::<Result<Vec<_>, _>>()?;
    let mut imp = Importer::new(model_dir, opset, &live);
    let used: HashSet<&str> = live
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    for t in graph
        .initializer
        .iter()
        .filter(|t| used.contains(t.name.as_str()))
    {
        let c = decode_tensor(t, model_dir).map_err(|why| ImportError::BadTensor {
            name: t.name.clone(),
            why,
        })?;
        imp.define(&t.name, Value::Const(c));
    }
    let input_id = imp.new_tensor(&input.name, input_shape(input)?)?;
    for (n, translate) in nodes.iter().zip(translations) {
        translate(&mut imp, n)?;
    }
    let output_id = match imp.lookup(&output.name) {
        Some(Value::Tensor(id)) => *id,
        Some(Value::Const(_)) => {
            return Err(ImportError::BadGraph {
                why: "output is a constant".into(),
            })
        }
        Some(Value::Flat(_)) => return Err(ImportError::BadGraph {
            why: "output is a feature map flattened with its batch axis; only batch 1 is supported"
                .into(),
        }),
        None => {
            return Err(ImportError::MissingInput {
                node: "graph output".into(),
                input: output.name.clone(),
            })
        }
    };
    Ok(Graph {
        tensors: imp.tensors,
        nodes: imp.nodes,
        input: input_id,
        output: output_id,
        meta,
    })
}

/// The one run-time input (old exporters also list the initializers as graph inputs).
fn image_input(graph: &GraphProto) -> Result<&ValueInfoProto, ImportError> {
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    match inputs.as_slice() {
        [input] => Ok(input),
        _ => {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            Err(ImportError::BadGraph {
                why: format!("has {} run-time inputs {names:?}", names.len()),
            })
        }
    }
}

/// Name and full NCHW shape (batch 1) of the model's image input.
pub(crate) fn input_of(proto: &ModelProto) -> Result<(String, Vec<usize>), ImportError> {
    let graph = proto.graph.as_ref().ok_or_else(|| ImportError::BadGraph {
        why: "is missing".into(),
    })?;
    let input = image_input(graph)?;
    Ok((input.name.clone(), input_shape(input)?))
}

/// Nodes the output depends on, in graph order. Exporters leave dead nodes behind
/// (e.g. the ArgMax half of `torch.max(x, 1)`); they cannot change the result.
fn live_nodes<'a>(nodes: &'a [NodeProto], output: &str) -> Vec<&'a NodeProto> {
    let mut needed: HashSet<&str> = HashSet::from([output]);
    let mut live: Vec<&NodeProto> = Vec::new();
    for node in nodes.iter().rev() {
        if node.output.iter().any(|o| needed.contains(o.as_str())) {
            needed.extend(node.input.iter().map(String::as_str));
            live.push(node);
        }
    }
    live.reverse();
    live
}

/// The input's batch axis, as the QDQ writer keeps it ([`input_shape`] checks the rest).
fn batch_of(input: &ValueInfoProto) -> Batch {
    let first = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.shape.as_ref().and_then(|s| s.dim.first()),
        _ => None,
    };
    match first.and_then(|d| d.value.as_ref()) {
        Some(Dim::DimParam(name)) if !name.is_empty() => Batch::Symbolic(name.clone()),
        _ => Batch::One,
    }
}

/// The input's shape with the batch dimension (symbolic in dynamo exports) fixed to 1.
fn input_shape(input: &ValueInfoProto) -> Result<Vec<usize>, ImportError> {
    let bad = |why: String| ImportError::BadInput {
        input: input.name.clone(),
        why,
    };
    let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => return Err(bad("is not a tensor".into())),
    };
    if tensor.elem_type != 1 {
        return Err(bad(format!(
            "has element type {}; a float32 image input is expected",
            tensor.elem_type
        )));
    }
    let dims = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or(&[]);
    if dims.len() < 2 {
        return Err(bad(format!(
            "has rank {}; an NCHW image input is expected",
            dims.len()
        )));
    }
    dims.iter()
        .enumerate()
        .map(|(i, d)| match (i, &d.value) {
            (0, Some(Dim::DimValue(1 | 0)) | Some(Dim::DimParam(_)) | None) => Ok(1),
            (0, Some(Dim::DimValue(b))) => Err(bad(format!(
                "has a fixed batch of {b}; export with batch 1 or a dynamic batch axis"
            ))),
            (_, Some(Dim::DimValue(v))) if *v > 0 => Ok(*v as usize),
            (_, other) => Err(bad(format!(
                "dimension {i} is {other:?}, not a fixed size; export with a fixed image size"
            ))),
        })
        .collect()
}

fn floats(key: &str, value: &str) -> Result<Vec<f32>, ImportError> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .map_err(|e| ImportError::BadMetadata {
                    key: key.into(),
                    why: format!("{v:?}: {e}"),
                })
        })
        .collect()
}

/// `cbam.mean`, `cbam.std`, `cbam.labels` from `metadata_props`.
fn read_meta(proto: &ModelProto) -> Result<ModelMeta, ImportError> {
    let mut meta = ModelMeta::default();
    for prop in &proto.metadata_props {
        match prop.key.as_str() {
            "cbam.mean" => meta.mean = floats(&prop.key, &prop.value)?,
            "cbam.std" => meta.std = floats(&prop.key, &prop.value)?,
            "cbam.labels" => {
                meta.labels = prop
                    .value
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .collect()
            }
            _ => {}
        }
    }
    if let Some(why) = normalisation_problem(&meta.mean, &meta.std) {
        return Err(ImportError::BadMetadata {
            key: "cbam.mean/cbam.std".into(),
            why,
        });
    }
    Ok(meta)
}

/// What turns one ONNX op into IR.
type Translate = fn(&mut Importer, &NodeCtx) -> Result<(), ImportError>;

/// The translation of node `n`'s op, or why there is none.
fn translator(n: &NodeCtx) -> Result<Translate, ImportError> {
    if !(n.proto.domain.is_empty() || n.proto.domain == "ai.onnx") {
        return Err(n.unsupported(format!("custom domain {:?}", n.proto.domain)));
    }
    let f: Translate = match n.op_type() {
        "Conv" => ops_nn::conv,
        "Gemm" => ops_nn::gemm,
        "MatMul" => ops_nn::matmul,
        "BatchNormalization" => ops_nn::batch_norm,
        "Relu" => |imp, n| ops_nn::unary(imp, n, Op::Relu),
        "Sigmoid" => |imp, n| ops_nn::unary(imp, n, Op::Sigmoid),
        "Softmax" => |imp, n| ops_nn::unary(imp, n, Op::Softmax),
        "Clip" => ops_nn::clip,
        "Add" => |imp, n| ops_nn::binary(imp, n, Arith::Add),
        "Sub" => |imp, n| ops_nn::binary(imp, n, Arith::Sub),
        "Mul" => |imp, n| ops_nn::binary(imp, n, Arith::Mul),
        "Div" => |imp, n| ops_nn::binary(imp, n, Arith::Div),
        "HardSigmoid" | "HardSwish" | "LeakyRelu" | "Tanh" | "Elu" => ops_act::pointwise,
        "Pad" => ops_pad::pad,
        "ConstantOfShape" => ops_pad::constant_of_shape,
        "GlobalAveragePool" => |imp, n| ops_nn::global_pool(imp, n, false),
        "GlobalMaxPool" => |imp, n| ops_nn::global_pool(imp, n, true),
        "AveragePool" => |imp, n| ops_nn::pool(imp, n, false),
        "MaxPool" => |imp, n| ops_nn::pool(imp, n, true),
        "ReduceMean" => |imp, n| ops_nn::reduce(imp, n, false),
        "ReduceMax" => |imp, n| ops_nn::reduce(imp, n, true),
        "Concat" => ops_shape::concat,
        "Constant" => ops_shape::constant,
        "Shape" => ops_shape::shape,
        "Gather" => ops_shape::gather,
        "Slice" => ops_shape::slice,
        "Cast" => ops_shape::cast,
        "Transpose" => ops_shape::transpose,
        "Unsqueeze" => ops_shape::unsqueeze,
        "Squeeze" => ops_shape::squeeze,
        "Flatten" => ops_shape::flatten,
        "Reshape" => ops_shape::reshape,
        "Identity" | "Dropout" => ops_shape::identity,
        "Expand" => ops_shape::expand,
        _ => {
            return Err(n.unsupported(
                "no translation for this op (see import/model.rs for the supported set)",
            ))
        }
    };
    Ok(f)
}
