//! The QDQ ONNX writer: the float graph (NCHW, after the passes) with QuantizeLinear /
//! DequantizeLinear pairs on every activation the int8 core quantizes, per-channel int8
//! weights and int32 biases behind DequantizeLinear, all with the blob's scales. tract and
//! onnxruntime run it as a reference for the int8 core.
//!
//! The fused CBAM op is written back as standard ONNX ops with a Q/DQ pair on each value
//! the core quantizes, in the core's arithmetic order (both pooled branches summed before
//! the shared second MLP layer, whose bias is doubled). A final Softmax is dropped, as in
//! the blob: the output is the dequantized logits.

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

use crate::ir::{
    Activation, Cbam, Conv, Graph, Linear, ModelMeta, Node, Op, Pool, SpatialOrder, TensorId,
};
use crate::quant::math::{quantize_per_channel, quantize_weight, QParams};
use crate::quant::scatter::selection_kept;
use crate::quant::{CbamParams, QModel, QOpKind};

const OPSET: i64 = 13;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QdqError {
    #[error("node `{node}`: tensor `{tensor}` has no quantization in the lowered model; lower this graph first")]
    Unquantized { node: String, tensor: String },
    #[error("node `{node}` ({op}) has no QDQ form")]
    Unsupported { node: String, op: String },
}

/// Encodes the QDQ model of `graph` with the quantization of `model` (lowered from it).
pub fn write(graph: &Graph, model: &QModel) -> Result<Vec<u8>, QdqError> {
    let mut e = Emitter {
        graph,
        model,
        nodes: Vec::new(),
        inits: Vec::new(),
        names: graph.tensors.iter().map(|t| t.name.clone()).collect(),
    };
    let input = graph
        .tensors
        .get(graph.input)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let input_q = e.q_of("(model input)", graph.input)?;
    // The graph input keeps its ONNX name; consumers read its dequantized copy.
    let input_float = format!("{input}__dq");
    let dq = e.qdq(&input, input_q, &input_float);
    e.set_name(graph.input, dq);
    for node in &graph.nodes {
        e.lower(node)?;
    }
    let output = e.model_output_name();
    let input_dims: Vec<i64> = std::iter::once(1)
        .chain(
            graph
                .tensors
                .get(graph.input)
                .map(|t| t.shape.clone())
                .unwrap_or_default()
                .iter()
                .map(|d| *d as i64),
        )
        .collect();
    let proto = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata_props(&graph.meta),
        producer_name: "cbam-compiler".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            name: "cbam_qdq".into(),
            node: e.nodes,
            initializer: e.inits,
            input: vec![value_info(&input, Some(&input_dims))],
            output: vec![value_info(&output, None)],
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(proto.encode_to_vec())
}

/// The float model's pixel convention and labels, in the `cbam.*` keys import reads, so
/// tools running the QDQ model normalise and name classes as for the float one.
fn metadata_props(meta: &ModelMeta) -> Vec<StringStringEntryProto> {
    let join = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
    [
        ("cbam.mean", join(&meta.mean)),
        ("cbam.std", join(&meta.std)),
        ("cbam.labels", meta.labels.join(",")),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(key, value)| StringStringEntryProto {
        key: key.into(),
        value,
    })
    .collect()
}

fn value_info(name: &str, dims: Option<&[i64]>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: dims.map(|d| TensorShapeProto {
                    dim: d
                        .iter()
                        .map(|v| Dimension {
                            denotation: String::new(),
                            value: Some(dimension::Value::DimValue(*v)),
                        })
                        .collect(),
                }),
            })),
        }),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.iter().map(|x| *x as i64).collect(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|d| *d as i64).collect(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

struct Emitter<'a> {
    graph: &'a Graph,
    model: &'a QModel,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// The QDQ-model value currently holding each IR tensor.
    names: Vec<String>,
}

impl Emitter<'_> {
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            name: format!("{output}__{op}"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
    }

    fn f32s(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(tensor(name, dims, DataType::Float, raw));
        name.into()
    }

    fn i8s(&mut self, name: &str, dims: &[usize], v: &[i8]) -> String {
        self.inits.push(tensor(
            name,
            dims,
            DataType::Int8,
            v.iter().map(|x| *x as u8).collect(),
        ));
        name.into()
    }

    fn i32s(&mut self, name: &str, dims: &[usize], v: &[i32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(tensor(name, dims, DataType::Int32, raw));
        name.into()
    }

    /// `x` -> QuantizeLinear -> DequantizeLinear -> `out`; returns `out`.
    fn qdq(&mut self, x: &str, q: QParams, out: &str) -> String {
        let scale = self.f32s(&format!("{out}__scale"), &[], &[q.scale]);
        let zp = self.i8s(
            &format!("{out}__zp"),
            &[],
            &[q.zero_point.clamp(-128, 127) as i8],
        );
        let quantized = format!("{out}__q");
        self.node("QuantizeLinear", &[x, &scale, &zp], &quantized, vec![]);
        self.node("DequantizeLinear", &[&quantized, &scale, &zp], out, vec![]);
        out.into()
    }

    /// Per-output-channel int8 weights (`dims[0]` channels) behind DequantizeLinear.
    fn weight(&mut self, base: &str, w: &[f32], dims: &[usize], scales: &[f32]) -> String {
        let per = w.len() / scales.len().max(1);
        let q: Vec<i8> = w
            .iter()
            .enumerate()
            .map(|(i, v)| quantize_weight(*v, scales.get(i / per.max(1)).copied().unwrap_or(1.0)))
            .collect();
        let qn = self.i8s(&format!("{base}__w_q"), dims, &q);
        let sn = self.f32s(&format!("{base}__w_scale"), &[scales.len()], scales);
        let zn = self.i8s(
            &format!("{base}__w_zp"),
            &[scales.len()],
            &vec![0; scales.len()],
        );
        let out = format!("{base}__w");
        self.node(
            "DequantizeLinear",
            &[&qn, &sn, &zn],
            &out,
            vec![int("axis", 0)],
        );
        out
    }

    /// int32 bias at `s_in * s_w[c]` behind DequantizeLinear.
    fn bias(&mut self, base: &str, q: &[i32], s_in: f32, scales: &[f32]) -> String {
        let s: Vec<f32> = scales.iter().map(|w| s_in * w).collect();
        let qn = self.i32s(&format!("{base}__b_q"), &[q.len()], q);
        let sn = self.f32s(&format!("{base}__b_scale"), &[s.len()], &s);
        let zn = self.i32s(&format!("{base}__b_zp"), &[s.len()], &vec![0; s.len()]);
        let out = format!("{base}__b");
        self.node(
            "DequantizeLinear",
            &[&qn, &sn, &zn],
            &out,
            vec![int("axis", 0)],
        );
        out
    }

    fn q_of(&self, node: &str, id: TensorId) -> Result<QParams, QdqError> {
        self.model
            .tensor_map
            .get(id)
            .copied()
            .flatten()
            .and_then(|t| self.model.tensors.get(t))
            .map(|t| t.q)
            .ok_or_else(|| QdqError::Unquantized {
                node: node.into(),
                tensor: self
                    .graph
                    .tensors
                    .get(id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
            })
    }

    /// A pruning scatter the lowering folded into its Add (so it has no quantized output).
    fn folded_scatter(&self, node: &Node, c: &Conv) -> bool {
        let unquantized = self
            .model
            .tensor_map
            .get(node.output)
            .copied()
            .flatten()
            .is_none();
        unquantized && selection_kept(c).is_some()
    }

    fn set_name(&mut self, id: TensorId, name: String) {
        if let Some(slot) = self.names.get_mut(id) {
            *slot = name;
        }
    }

    /// The quantization of the node's first input.
    fn input_q(&self, node: &Node) -> Result<QParams, QdqError> {
        let id = node.inputs.first().copied().unwrap_or(usize::MAX);
        self.q_of(&node.name, id)
    }

    fn input_name(&self, node: &Node, i: usize) -> String {
        node.inputs
            .get(i)
            .and_then(|t| self.names.get(*t))
            .cloned()
            .unwrap_or_default()
    }

    fn out_name(&self, node: &Node) -> String {
        self.graph
            .tensors
            .get(node.output)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    }

    fn model_output_name(&self) -> String {
        self.names
            .get(self.graph.output)
            .cloned()
            .unwrap_or_default()
    }

    /// Applies a fused activation to `x`; returns the activated value's name.
    fn activation(&mut self, x: &str, act: Activation) -> String {
        match act {
            Activation::None => x.into(),
            Activation::Relu => {
                let out = format!("{x}__relu");
                self.node("Relu", &[x], &out, vec![]);
                out
            }
            Activation::Clip(lo, hi) => {
                let lo_n = self.f32s(&format!("{x}__clip_lo"), &[], &[lo]);
                let hi_n = self.f32s(&format!("{x}__clip_hi"), &[], &[hi]);
                let out = format!("{x}__clip");
                self.node("Clip", &[x, &lo_n, &hi_n], &out, vec![]);
                out
            }
        }
    }

    /// Quantizes `x` with the node output's quantization under the output's ONNX name.
    fn finish(&mut self, node: &Node, x: &str) -> Result<(), QdqError> {
        let q = self.q_of(&node.name, node.output)?;
        let out = self.out_name(node);
        let dq = self.qdq(x, q, &out);
        self.set_name(node.output, dq);
        Ok(())
    }

    fn lower(&mut self, node: &Node) -> Result<(), QdqError> {
        let x = self.input_name(node, 0);
        let raw = format!("{}__float", self.out_name(node));
        match &node.op {
            Op::Conv(c) if self.folded_scatter(node, c) => {
                // The core adds the branch straight from its kept list; the 0/1 float conv
                // does the same exactly, so the branch keeps its own quantization.
                let w = self.f32s(&format!("{raw}__w"), &[c.out_c, c.in_c, 1, 1], &c.weight);
                self.node("Conv", &[&x, &w], &raw, vec![ints("kernel_shape", &[1, 1])]);
                self.set_name(node.output, raw);
                Ok(())
            }
            Op::Conv(c) => {
                let s_in = self.input_q(node)?.scale;
                let y = self.conv(&raw, &x, c, s_in);
                let y = self.activation(&y, c.act);
                self.finish(node, &y)
            }
            Op::Linear(l) => {
                let s_in = self.input_q(node)?.scale;
                let y = self.gemm(&raw, &x, l, s_in);
                let y = self.activation(&y, l.act);
                self.finish(node, &y)
            }
            Op::MaxPool(p) => {
                self.pool("MaxPool", &raw, &x, p, vec![]);
                self.finish(node, &raw)
            }
            Op::AvgPool(p) => {
                self.pool(
                    "AveragePool",
                    &raw,
                    &x,
                    p,
                    vec![int("count_include_pad", 0)],
                );
                self.finish(node, &raw)
            }
            Op::GlobalAvgPool | Op::GlobalMaxPool | Op::Sigmoid => {
                let op = match node.op {
                    Op::GlobalAvgPool => "GlobalAveragePool",
                    Op::GlobalMaxPool => "GlobalMaxPool",
                    _ => "Sigmoid",
                };
                self.node(op, &[&x], &raw, vec![]);
                self.finish(node, &raw)
            }
            Op::Add { act } => {
                let b = self.input_name(node, 1);
                self.node("Add", &[&x, &b], &raw, vec![]);
                let y = self.activation(&raw, *act);
                self.finish(node, &y)
            }
            Op::Mul => {
                let b = self.input_name(node, 1);
                self.node("Mul", &[&x, &b], &raw, vec![]);
                self.finish(node, &raw)
            }
            Op::Concat => {
                let inputs: Vec<String> = (0..node.inputs.len())
                    .map(|i| self.input_name(node, i))
                    .collect();
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                self.node("Concat", &refs, &raw, vec![int("axis", 1)]);
                self.finish(node, &raw)
            }
            Op::Flatten => {
                let out = self.out_name(node);
                self.node("Flatten", &[&x], &out, vec![int("axis", 1)]);
                self.set_name(node.output, out);
                Ok(())
            }
            Op::Identity => {
                self.set_name(node.output, x);
                Ok(())
            }
            Op::Softmax if node.output == self.graph.output => {
                self.set_name(node.output, x);
                Ok(())
            }
            Op::Cbam(c) => self.cbam(node, &x, c),
            other => Err(QdqError::Unsupported {
                node: node.name.clone(),
                op: format!("{other:?}").chars().take(40).collect(),
            }),
        }
    }

    fn conv(&mut self, out: &str, x: &str, c: &Conv, s_in: f32) -> String {
        let qw = quantize_per_channel(&c.weight, c.out_c);
        let in_per_group = c.in_c / c.groups.max(1);
        let w = self.weight(
            out,
            &c.weight,
            &[c.out_c, in_per_group, c.kernel[0], c.kernel[1]],
            &qw.scales,
        );
        let qb = crate::quant::math::quantize_bias(&c.bias, s_in, &qw.scales);
        let b = self.bias(out, &qb, s_in, &qw.scales);
        let attrs = vec![
            ints("kernel_shape", &c.kernel),
            ints("strides", &c.stride),
            ints("dilations", &c.dilation),
            ints("pads", &c.pads),
            int("group", c.groups as i64),
        ];
        self.node("Conv", &[x, &w, &b], out, attrs);
        out.into()
    }

    fn gemm(&mut self, out: &str, x: &str, l: &Linear, s_in: f32) -> String {
        let flat = format!("{out}__flat");
        self.node("Flatten", &[x], &flat, vec![int("axis", 1)]);
        let qw = quantize_per_channel(&l.weight, l.out_features);
        let w = self.weight(out, &l.weight, &[l.out_features, l.in_features], &qw.scales);
        let qb = crate::quant::math::quantize_bias(&l.bias, s_in, &qw.scales);
        let b = self.bias(out, &qb, s_in, &qw.scales);
        self.node("Gemm", &[&flat, &w, &b], out, vec![int("transB", 1)]);
        out.into()
    }

    fn pool(&mut self, op: &str, out: &str, x: &str, p: &Pool, mut attrs: Vec<AttributeProto>) {
        attrs.extend([
            ints("kernel_shape", &p.kernel),
            ints("strides", &p.stride),
            ints("pads", &p.pads),
        ]);
        self.node(op, &[x], out, attrs);
    }

    /// The CBAM block as ONNX ops, quantized where the fused op quantizes.
    fn cbam(&mut self, node: &Node, x: &str, c: &Cbam) -> Result<(), QdqError> {
        let in_q = self.input_q(node)?;
        let p = self.cbam_params(node)?;
        let base = self.out_name(node);
        let n = |s: &str| format!("{base}__{s}");
        let (ch, hid, k) = (c.channels, c.hidden, p.kernel);

        self.node("GlobalAveragePool", &[x], &n("avg_f"), vec![]);
        let avg = self.qdq(&n("avg_f"), in_q, &n("avg"));
        self.node("GlobalMaxPool", &[x], &n("max"), vec![]);
        let w1 = self.weight(&n("mlp1"), &c.mlp1.weight, &[hid, ch, 1, 1], &p.w1_scales);
        let b1 = self.bias(&n("mlp1"), &p.b1, in_q.scale, &p.w1_scales);
        let mut hidden = Vec::new();
        let max = n("max");
        for (branch, pooled) in [("ha", avg.as_str()), ("hm", max.as_str())] {
            let pre = n(&format!("{branch}_pre"));
            self.node("Conv", &[pooled, &w1, &b1], &pre, vec![]);
            let act = self.activation(&pre, Activation::Relu);
            hidden.push(self.qdq(&act, p.hidden_q, &n(branch)));
        }
        self.node("Add", &[&hidden[0], &hidden[1]], &n("hsum"), vec![]);
        let w2 = self.weight(&n("mlp2"), &c.mlp2.weight, &[ch, hid, 1, 1], &p.w2_scales);
        let b2 = self.bias(&n("mlp2"), &p.b2, p.hidden_q.scale, &p.w2_scales);
        self.node("Conv", &[&n("hsum"), &w2, &b2], &n("z_f"), vec![]);
        let z = self.qdq(&n("z_f"), p.logit_q, &n("z"));
        self.node("Sigmoid", &[&z], &n("a_f"), vec![]);
        let a = self.qdq(&n("a_f"), QParams::SIGMOID_OUT, &n("a"));
        self.node("Mul", &[x, &a], &n("f1_f"), vec![]);
        let f1 = self.qdq(&n("f1_f"), p.f1_q, &n("f1"));

        self.node(
            "ReduceMean",
            &[&f1],
            &n("mean_f"),
            vec![ints("axes", &[1]), int("keepdims", 1)],
        );
        let mean = self.qdq(&n("mean_f"), p.f1_q, &n("mean"));
        self.node(
            "ReduceMax",
            &[&f1],
            &n("cmax"),
            vec![ints("axes", &[1]), int("keepdims", 1)],
        );
        let (first, second) = match c.order {
            SpatialOrder::MeanMax => (mean, n("cmax")),
            SpatialOrder::MaxMean => (n("cmax"), mean),
        };
        self.node(
            "Concat",
            &[&first, &second],
            &n("map"),
            vec![int("axis", 1)],
        );
        let ws = self.weight(
            &n("spatial"),
            &c.spatial.weight,
            &[1, 2, k, k],
            &[p.ws_scale],
        );
        let bs = self.bias(&n("spatial"), &[p.bs], p.f1_q.scale, &[p.ws_scale]);
        let attrs = vec![ints("kernel_shape", &[k, k]), ints("pads", &[k / 2; 4])];
        self.node("Conv", &[&n("map"), &ws, &bs], &n("s_f"), attrs);
        let s = self.qdq(&n("s_f"), p.spatial_q, &n("s"));
        self.node("Sigmoid", &[&s], &n("as_f"), vec![]);
        let attention = self.qdq(&n("as_f"), QParams::SIGMOID_OUT, &n("as"));
        self.node("Mul", &[&f1, &attention], &n("out_f"), vec![]);
        self.finish(node, &n("out_f"))
    }

    fn cbam_params(&self, node: &Node) -> Result<CbamParams, QdqError> {
        self.model
            .ops
            .iter()
            .find_map(|op| match &op.kind {
                QOpKind::Cbam(p) if op.node == node.name => Some((**p).clone()),
                _ => None,
            })
            .ok_or_else(|| QdqError::Unquantized {
                node: node.name.clone(),
                tensor: self.out_name(node),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{lower, testing::small_cbam_graph, LowerOptions};

    #[test]
    fn tract_runs_the_qdq_model_and_matches_the_core() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let bytes = write(&g, &m).unwrap();
        let proto = ModelProto::decode(bytes.as_slice()).unwrap();
        let model = crate::float_run::FloatModel::from_proto(&proto, None).unwrap();
        let plan = crate::plan::plan(&m).unwrap();
        let blob = crate::blob::write(&m, &plan, &Default::default()).unwrap();
        let core = cbam_core::Model::parse(&blob).unwrap();
        let mut arena = vec![0u8; core.arena_size()];
        let iq = m.tensors[m.input].q;
        let oq = m.tensors[m.output].q;
        let mut worst = 0;
        for seed in 0..8u64 {
            let pixels: Vec<u8> = crate::quant::testing::weights(64, seed + 100, 1.0)
                .iter()
                .map(|v| ((v + 1.0) * 127.5) as u8)
                .collect();
            let x: Vec<f32> = pixels
                .iter()
                .map(|p| (f32::from(*p) / 255.0 - 0.286) / 0.353)
                .collect();
            let out = model.run(&x).unwrap();
            let qdq_logits: Vec<i8> = out.iter().map(|v| oq.quantize(*v)).collect();
            let device_in: Vec<i8> = x.iter().map(|v| iq.quantize(*v)).collect();
            let mut core_out = [0i8; 3];
            core.run(&mut arena, &device_in, &mut core_out).unwrap();
            for (a, b) in qdq_logits.iter().zip(core_out) {
                worst = worst.max((i32::from(*a) - i32::from(b)).abs());
            }
        }
        // Same scales; the core's integer rounding differs from float QDQ by at most a
        // couple of steps after several layers.
        assert!(worst <= 2, "QDQ vs core differ by {worst} steps");
    }

    #[test]
    fn the_float_models_normalisation_and_labels_survive_into_the_qdq_model() {
        let (mut g, r) = small_cbam_graph();
        g.meta.mean = vec![0.286, 0.5];
        g.meta.std = vec![0.353, 0.25];
        g.meta.labels = vec!["a".into(), "b".into(), "c".into()];
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let proto = ModelProto::decode(write(&g, &m).unwrap().as_slice()).unwrap();
        let prop = |key: &str| {
            proto
                .metadata_props
                .iter()
                .find(|p| p.key == key)
                .map(|p| p.value.clone())
                .unwrap_or_default()
        };
        let floats =
            |key: &str| -> Vec<f32> { prop(key).split(',').map(|v| v.parse().unwrap()).collect() };
        assert_eq!(floats("cbam.mean"), g.meta.mean);
        assert_eq!(floats("cbam.std"), g.meta.std);
        assert_eq!(prop("cbam.labels"), "a,b,c");

        g.meta = ModelMeta::default();
        let proto = ModelProto::decode(write(&g, &m).unwrap().as_slice()).unwrap();
        assert!(
            proto.metadata_props.is_empty(),
            "{:?}",
            proto.metadata_props
        );
    }
}
