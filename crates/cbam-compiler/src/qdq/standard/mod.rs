//! The standard QDQ form of the ops the exact form writes in the core's integer
//! arithmetic: the ordinary float op between DequantizeLinear and QuantizeLinear, in the
//! quantization the lowering chose, so that runtimes fuse it into their own int8 kernels
//! (onnxruntime: QLinearAveragePool, QLinearGlobalAveragePool, QLinearSigmoid) or run it in
//! float on dequantized values. Each rounds once, half to even, where the core rounds half
//! away from zero or twice through a Q31 multiplier, so values sit within a step of the core's.

pub mod cbam;

use super::emit::Emitter;
use super::proto::{float, int, ints};
use super::QdqError;
use crate::ir::{Node, Op, Pointwise};
use crate::quant::{PoolParams, QParams};

/// Average pooling over in-bounds taps only, as the core divides.
pub fn avg_pool(
    e: &mut Emitter<'_>,
    node: &Node,
    x: &str,
    raw: &str,
    p: &PoolParams,
) -> Result<(), QdqError> {
    let q = e.input_q(node, 0)?;
    let attrs = vec![
        ints("kernel_shape", &p.kernel),
        ints("strides", &p.stride),
        ints("pads", &p.pads),
        int("count_include_pad", 0),
    ];
    e.node("AveragePool", &[x], raw, attrs);
    let y = e.clamp(raw, p.clamp, q);
    e.finish(node, &y)
}

pub fn global_avg_pool(
    e: &mut Emitter<'_>,
    node: &Node,
    x: &str,
    raw: &str,
) -> Result<(), QdqError> {
    e.node("GlobalAveragePool", &[x], raw, vec![]);
    e.finish(node, raw)
}

/// A channel mean or max per pixel, in its input's quantization (the core keeps it).
pub fn channel_stat(e: &mut Emitter<'_>, node: &Node, x: &str, raw: &str) -> Result<(), QdqError> {
    let q = e.input_q(node, 0)?;
    let op = if node.op == Op::ChannelMean {
        "ReduceMean"
    } else {
        "ReduceMax"
    };
    e.node(op, &[x], raw, reduce_axes(&[1]));
    let out = e.out_name(node);
    let dq = e.qdq(raw, q, &out);
    e.set_name(node.output, dq);
    Ok(())
}

/// `Sigmoid` into `q` (the core's table output, scale 1/256, zero point -128).
pub fn sigmoid(e: &mut Emitter<'_>, x: &str, q: QParams, out: &str) -> String {
    let raw = format!("{out}__float");
    e.node("Sigmoid", &[x], &raw, vec![]);
    e.qdq(&raw, q, out)
}

/// The float function of a pointwise op the core runs as a table (opset 13 has no
/// HardSwish, and no op has SiLU: both are `x` times a gate).
pub fn pointwise(e: &mut Emitter<'_>, x: &str, raw: &str, f: &Pointwise) -> String {
    let gate = format!("{raw}__gate");
    match *f {
        Pointwise::HardSigmoid { alpha, beta } => {
            let attrs = vec![float("alpha", alpha), float("beta", beta)];
            e.node("HardSigmoid", &[x], raw, attrs);
        }
        Pointwise::HardSwish => {
            let attrs = vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)];
            e.node("HardSigmoid", &[x], &gate, attrs);
            e.node("Mul", &[x, &gate], raw, vec![]);
        }
        Pointwise::LeakyRelu { alpha } => {
            e.node("LeakyRelu", &[x], raw, vec![float("alpha", alpha)]);
        }
        Pointwise::Tanh => e.node("Tanh", &[x], raw, vec![]),
        Pointwise::Silu => {
            e.node("Sigmoid", &[x], &gate, vec![]);
            e.node("Mul", &[x, &gate], raw, vec![]);
        }
        Pointwise::Elu { alpha } => e.node("Elu", &[x], raw, vec![float("alpha", alpha)]),
    }
    raw.into()
}

/// Opset 13's reductions take their axes as an attribute (ReduceSum alone as an input).
fn reduce_axes(axes: &[usize]) -> Vec<tract_onnx::pb::AttributeProto> {
    vec![ints("axes", axes), int("keepdims", 1)]
}
