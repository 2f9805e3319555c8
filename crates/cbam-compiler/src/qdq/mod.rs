//! The QDQ ONNX writer: the float graph (NCHW, after the passes) with QuantizeLinear /
//! DequantizeLinear pairs on every activation the int8 core quantizes, and the blob's own
//! int8 weights, int32 biases, multipliers and sigmoid tables (taken from the lowered
//! [`QModel`], never re-derived from the float weights, so whatever the quantizer chose is
//! what the QDQ model runs). tract and onnxruntime load and run it as a reference for the
//! int8 core. A final Softmax is dropped, as in the blob: the output is the dequantized
//! logits. The `cbam.core_ops` metadata maps each core op to its QDQ value ([`compare`]).
//! The graph input and output keep the source model's batch axis (a symbolic one stays
//! symbolic) and declare their shapes.
//!
//! # Two forms
//!
//! [`QdqForm::StandardU8`] (the default) and [`QdqForm::StandardS8`] write every op, the
//! CBAM blocks included, as the ordinary float op between DequantizeLinear and QuantizeLinear
//! (see `standard/`), with uint8 or int8 activations (the same values): the
//! pattern onnxruntime's QDQ transformer turns into QLinearConv, QLinearMul, QLinearSigmoid
//! and friends, and that TensorRT and TFLite converters take. Each op rounds once, half to
//! even, so values sit a step or so from the core's and top-1 agrees with it on nearly every
//! image (`tests.rs` bounds it; `tools/qdq_speed.py` measures it on the example models).
//!
//! [`QdqForm::Exact`] is the reference for bit-level comparison with the core, described
//! below; it costs speed in every runtime.
//!
//! # The exact form: bit for bit or within one step, and why
//!
//! Given the same int8 inputs, every op is bit-exact except the ones a QDQ runtime fuses
//! into int8 kernels, which are within one quantization step. [`compare`] measures it op
//! by op, feeding each op's share of the QDQ graph the core's own int8 inputs;
//! `tests/tests/qdq_layers.rs` asserts it for every example model.
//!
//! - **Bit-exact** (written in the core's integer arithmetic with ops that are exact in
//!   float): the input (an affine in front of the first QuantizeLinear maps the float model
//!   input onto the device's `pixel - 128`); max pooling; average pooling and the CBAM
//!   means (integer sums, a correctly rounded division, `sign(m) * floor(|m| + 0.5)` for the
//!   core's half-away-from-zero where QuantizeLinear would round half to even); global
//!   average pooling and every step of the fused CBAM op (integer accumulators requantized
//!   by TFLite's `MultiplyByQuantizedMultiplier` in float64, see `qdq/exact.rs`); the sigmoids
//!   (a Gather over the blob's 256-entry table indexed by level + 128). Bounds: accumulators
//!   below 2^22 (a CBAM block's are for fewer than ~500 channels).
//! - **Within one step**: Conv, depthwise Conv, Gemm, Add, Mul, Concat keep the standard
//!   DequantizeLinear -> float op -> QuantizeLinear pattern. tract and onnxruntime compute
//!   the float op in f32 and round `x / s_out` once, half to even; the core applies a Q31
//!   multiplier with two roundings (to 2^-31, then half away from zero after the shift).
//!   They disagree when the exact value is within about 2^(shift-1) of a half level, on
//!   about 0.02-0.16% of a conv's outputs in the example models, by one step.
//!
//! End to end those rare one-step differences are widened by later layers: on the example
//! models 12-23% of the logits differ by one step, at most 3 steps, and at most 1% by more
//! than one (100-1000 test images per model). Making the convs exact too would mean writing them as
//! integer arithmetic, and the model would no longer be a QDQ model a runtime executes
//! with its int8 kernels.

mod cbam;
pub mod compare;
mod emit;
mod exact;
mod layout;
mod ops;
mod proto;
mod standard;

use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto, OperatorSetIdProto};

use crate::ir::{Batch, Graph};
use crate::quant::{QModel, QParams};
use emit::Emitter;
use proto::{input_value, metadata_props, shaped_value_info, Axis};

const OPSET: i64 = 13;

/// Which QDQ model to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QdqForm {
    /// Ordinary float ops between QuantizeLinear/DequantizeLinear pairs, the pattern
    /// runtimes fuse into their int8 kernels, with int8 activations; close to the core, not
    /// bit for bit.
    StandardS8,
    /// [`QdqForm::StandardS8`] with every activation as uint8 (the same levels shifted by
    /// 128, zero points with them: the same real values). The default: it is the pairing
    /// onnxruntime's x86 int8 kernels are fast with (uint8 activations, int8 weights), where
    /// int8 activations run slower than the float model (`tools/qdq_speed.py`).
    #[default]
    StandardU8,
    /// The core's integer arithmetic written exactly in float ops: bit for bit with the
    /// core except Conv/Gemm/Add/Mul/Concat (within a step), slow in every runtime.
    Exact,
}

impl QdqForm {
    /// Ordinary ops between Q/DQ pairs (either activation type).
    pub fn is_standard(self) -> bool {
        self != QdqForm::Exact
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QdqError {
    #[error("node `{node}`: tensor `{tensor}` has no quantization in the lowered model; lower this graph first")]
    Unquantized { node: String, tensor: String },
    #[error("node `{node}` ({op}) has no QDQ form")]
    Unsupported { node: String, op: String },
}

/// Encodes the QDQ model of `graph` with the quantization of `model` (lowered from it).
pub fn write(graph: &Graph, model: &QModel, form: QdqForm) -> Result<Vec<u8>, QdqError> {
    let mut e = Emitter::new(graph, model, form);
    let input = graph
        .tensors
        .get(graph.input)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let input_q = e.q_of("(model input)", graph.input)?;
    let device_input = device_input(&mut e, &input, input_q);
    let dq = e.qdq(&device_input, input_q, &input_value(&input));
    e.set_name(graph.input, dq);
    for node in &graph.nodes {
        ops::lower(&mut e, node)?;
    }
    let output = e.name_of(graph.output);
    let input_axes = with_batch(graph, graph.input);
    let output_axes = with_batch(graph, graph.output);
    let proto = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata_props(&graph.meta, model),
        producer_name: "cbam-compiler".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            name: "cbam_qdq".into(),
            node: e.nodes,
            initializer: e.inits,
            input: vec![shaped_value_info(&input, Some(&input_axes))],
            output: vec![shaped_value_info(&output, Some(&output_axes))],
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(proto.encode_to_vec())
}

/// The source model's batch axis followed by the IR shape of tensor `id`.
fn with_batch(graph: &Graph, id: usize) -> Vec<Axis> {
    let batch = match &graph.meta.batch {
        Batch::One => Axis::Fixed(1),
        Batch::Symbolic(name) => Axis::Named(name.clone()),
    };
    let shape = graph
        .tensors
        .get(id)
        .map(|t| t.shape.as_slice())
        .unwrap_or(&[]);
    std::iter::once(batch)
        .chain(shape.iter().map(|d| Axis::Fixed(*d as i64)))
        .collect()
}

/// The real value the device's input tensor represents, from the float model's input.
///
/// When the blob takes raw pixels (`q = pixel - 128`), the lowering chose the input
/// quantization from the model's mean/std and folded whatever it could not represent
/// (a half-level zero point offset, or a per-channel affine) into the first conv. The
/// QDQ model feeds that conv the same levels: with `x = (pixel/255 - mean_c) / std_c`,
/// `v = s * (255 * (x * std_c + mean_c) - 128 - zp)` quantizes to `pixel - 128`.
fn device_input(e: &mut Emitter<'_>, input: &str, q: QParams) -> String {
    let meta = &e.graph.meta;
    let channels = e
        .graph
        .tensors
        .get(e.graph.input)
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1);
    let per_channel = |v: &[f32], c: usize| v.get(c).or(v.first()).copied().map(f64::from);
    let coefficients: Option<Vec<(f32, f32)>> = (0..channels)
        .map(|c| {
            let (mean, std) = (per_channel(&meta.mean, c)?, per_channel(&meta.std, c)?);
            let s = f64::from(q.scale);
            let a = s * 255.0 * std;
            let b = s * (255.0 * mean - 128.0 - f64::from(q.zero_point));
            Some((a as f32, b as f32))
        })
        .collect();
    let coefficients = match coefficients {
        Some(c) if e.model.input_is_pixels && !c.is_empty() => c,
        _ => return input.into(),
    };
    let (a, b): (Vec<f32>, Vec<f32>) = coefficients.into_iter().unzip();
    let dims = [1, channels, 1, 1];
    let a = e.f32s(&format!("{input}__to_device_a"), &dims, &a);
    let b = e.f32s(&format!("{input}__to_device_b"), &dims, &b);
    let scaled = format!("{input}__to_device_scaled");
    e.node("Mul", &[input, &a], &scaled, vec![]);
    let out = format!("{input}__to_device");
    e.node("Add", &[&scaled, &b], &out, vec![]);
    out
}

#[cfg(test)]
mod tests;
