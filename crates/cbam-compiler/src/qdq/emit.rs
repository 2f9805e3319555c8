//! The graph being written: nodes, initializers, and which QDQ value holds each IR tensor.

use std::collections::HashMap;

use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, NodeProto, TensorProto};

use super::proto::{int, tensor};
use super::{QdqError, QdqForm};
use crate::ir::{Graph, Node, TensorId};
use crate::quant::{Clamp, QModel, QOp, QParams};

pub struct Emitter<'a> {
    pub graph: &'a Graph,
    pub model: &'a QModel,
    pub form: QdqForm,
    /// The lowered op of each IR node, by node name.
    ops: HashMap<&'a str, &'a QOp>,
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
    /// The QDQ value currently holding each IR tensor.
    names: Vec<String>,
    /// DequantizeLinear outputs -> the int8 tensor they dequantize.
    levels: HashMap<String, String>,
}

impl<'a> Emitter<'a> {
    pub fn new(graph: &'a Graph, model: &'a QModel, form: QdqForm) -> Self {
        Emitter {
            graph,
            model,
            form,
            ops: model.ops.iter().map(|op| (op.node.as_str(), op)).collect(),
            nodes: Vec::new(),
            inits: Vec::new(),
            names: graph.tensors.iter().map(|t| t.name.clone()).collect(),
            levels: HashMap::new(),
        }
    }

    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            name: format!("{output}__{op}"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        });
    }

    pub fn f32s(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(tensor(name, dims, DataType::Float, raw));
        name.into()
    }

    pub fn f64s(&mut self, name: &str, dims: &[usize], v: &[f64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(tensor(name, dims, DataType::Double, raw));
        name.into()
    }

    pub fn i8s(&mut self, name: &str, dims: &[usize], v: &[i8]) -> String {
        let raw = v.iter().map(|x| *x as u8).collect();
        self.inits.push(tensor(name, dims, DataType::Int8, raw));
        name.into()
    }

    pub fn i32s(&mut self, name: &str, dims: &[usize], v: &[i32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(tensor(name, dims, DataType::Int32, raw));
        name.into()
    }

    pub fn i64s(&mut self, name: &str, dims: &[usize], v: &[i64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(tensor(name, dims, DataType::Int64, raw));
        name.into()
    }

    /// `x` -> QuantizeLinear -> DequantizeLinear -> `out`; returns `out`.
    pub fn qdq(&mut self, x: &str, q: QParams, out: &str) -> String {
        let (scale, zp) = self.quant_params(out, q);
        let quantized = format!("{out}__q");
        self.node("QuantizeLinear", &[x, &scale, &zp], &quantized, vec![]);
        self.node("DequantizeLinear", &[&quantized, &scale, &zp], out, vec![]);
        self.levels.insert(out.into(), quantized);
        out.into()
    }

    /// DequantizeLinear of an int8 tensor computed exactly (a table lookup, a rounded mean).
    pub fn dq(&mut self, levels: &str, q: QParams, out: &str) -> String {
        let (scale, zp) = self.quant_params(out, q);
        self.node("DequantizeLinear", &[levels, &scale, &zp], out, vec![]);
        self.levels.insert(out.into(), levels.into());
        out.into()
    }

    fn quant_params(&mut self, out: &str, q: QParams) -> (String, String) {
        let scale = self.f32s(&format!("{out}__scale"), &[], &[q.scale]);
        let zp = q.zero_point.clamp(-128, 127);
        let name = format!("{out}__zp");
        let zp = if self.form == QdqForm::StandardU8 {
            let raw = vec![(zp + 128) as u8];
            self.inits.push(tensor(&name, &[], DataType::Uint8, raw));
            name
        } else {
            self.i8s(&name, &[], &[zp as i8])
        };
        (scale, zp)
    }

    /// The int8 tensor behind a dequantized value `x` in quantization `q` (re-quantizing
    /// a dequantized value is exact, so a fresh QuantizeLinear is as good as the original).
    pub fn levels_of(&mut self, x: &str, q: QParams) -> String {
        if let Some(levels) = self.levels.get(x) {
            return levels.clone();
        }
        let (scale, zp) = self.quant_params(&format!("{x}__requant"), q);
        let out = format!("{x}__levels");
        self.node("QuantizeLinear", &[x, &scale, &zp], &out, vec![]);
        self.levels.insert(x.into(), out.clone());
        out
    }

    /// `Cast` to float of an int8 tensor: the levels as exact small integers.
    pub fn levels_as_float(&mut self, levels: &str, out: &str) -> String {
        self.node(
            "Cast",
            &[levels],
            out,
            vec![int("to", DataType::Float as i64)],
        );
        out.into()
    }

    /// Per-output-channel int8 weights `q` (`dims[0]` channels) behind DequantizeLinear.
    pub fn weight(&mut self, base: &str, q: &[i8], dims: &[usize], scales: &[f32]) -> String {
        let qn = self.i8s(&format!("{base}__w_q"), dims, q);
        let sn = self.f32s(&format!("{base}__w_scale"), &[scales.len()], scales);
        let zeros = vec![0; scales.len()];
        let zn = self.i8s(&format!("{base}__w_zp"), &[scales.len()], &zeros);
        let out = format!("{base}__w");
        let attrs = vec![int("axis", 0)];
        self.node("DequantizeLinear", &[&qn, &sn, &zn], &out, attrs);
        out
    }

    /// int32 bias `q` at scale `s_in * s_w[c]` behind DequantizeLinear.
    pub fn bias(&mut self, base: &str, q: &[i32], s_in: f32, scales: &[f32]) -> String {
        let s: Vec<f32> = scales.iter().map(|w| s_in * w).collect();
        let qn = self.i32s(&format!("{base}__b_q"), &[q.len()], q);
        let sn = self.f32s(&format!("{base}__b_scale"), &[s.len()], &s);
        let zn = self.i32s(&format!("{base}__b_zp"), &[s.len()], &vec![0; s.len()]);
        let out = format!("{base}__b");
        let attrs = vec![int("axis", 0)];
        self.node("DequantizeLinear", &[&qn, &sn, &zn], &out, attrs);
        out
    }

    /// The core's fused activation clamp in the output quantization `q`, as a float op
    /// before the QuantizeLinear: clamping at the dequantized bounds and then quantizing is
    /// the same as quantizing and then clamping the levels, because quantization is monotone
    /// and maps a dequantized level back onto itself.
    pub fn clamp(&mut self, x: &str, clamp: Clamp, q: QParams) -> String {
        if clamp == Clamp::NONE {
            return x.into();
        }
        if clamp.min == q.zero_point && clamp.max == 127 {
            let out = format!("{x}__relu");
            self.node("Relu", &[x], &out, vec![]);
            return out;
        }
        let level = |l: i32| q.dequantize(l.clamp(-128, 127) as i8);
        let lo = self.f32s(&format!("{x}__clip_lo"), &[], &[level(clamp.min)]);
        let hi = self.f32s(&format!("{x}__clip_hi"), &[], &[level(clamp.max)]);
        let out = format!("{x}__clip");
        self.node("Clip", &[x, &lo, &hi], &out, vec![]);
        out
    }

    /// The lowered op of `node`.
    pub fn qop(&self, node: &Node) -> Result<&'a QOp, QdqError> {
        self.ops
            .get(node.name.as_str())
            .copied()
            .ok_or_else(|| QdqError::Unquantized {
                node: node.name.clone(),
                tensor: self.out_name(node),
            })
    }

    pub fn q_of(&self, node: &str, id: TensorId) -> Result<QParams, QdqError> {
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

    /// Whether the lowering gave IR tensor `id` a tensor of its own.
    pub fn is_quantized(&self, id: TensorId) -> bool {
        self.model.tensor_map.get(id).copied().flatten().is_some()
    }

    pub fn set_name(&mut self, id: TensorId, name: String) {
        if let Some(slot) = self.names.get_mut(id) {
            *slot = name;
        }
    }

    pub fn name_of(&self, id: TensorId) -> String {
        self.names.get(id).cloned().unwrap_or_default()
    }

    /// The quantization of the node's input `i`.
    pub fn input_q(&self, node: &Node, i: usize) -> Result<QParams, QdqError> {
        let id = node.inputs.get(i).copied().unwrap_or(usize::MAX);
        self.q_of(&node.name, id)
    }

    pub fn input_name(&self, node: &Node, i: usize) -> String {
        node.inputs
            .get(i)
            .map(|t| self.name_of(*t))
            .unwrap_or_default()
    }

    /// The ONNX name of the node's output in the float model (kept for the QDQ value).
    pub fn out_name(&self, node: &Node) -> String {
        self.graph
            .tensors
            .get(node.output)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    }

    /// Quantizes `x` with the node output's quantization under the output's ONNX name.
    pub fn finish(&mut self, node: &Node, x: &str) -> Result<(), QdqError> {
        let q = self.q_of(&node.name, node.output)?;
        let out = self.out_name(node);
        let dq = self.qdq(x, q, &out);
        self.set_name(node.output, dq);
        Ok(())
    }
}
