//! The fused CBAM op (FORMAT.md op 12) written back as ONNX ops that compute the core's
//! integer arithmetic exactly, step by step (the numbered steps of FORMAT.md).
//!
//! No QDQ runtime fuses a CBAM block into int8 kernels, so nothing is gained by writing it
//! as float ops between Q/DQ pairs, and much is lost: every requantization would round
//! once, half to even, where the core rounds twice, and a one-step difference in `F'` or
//! a logit moves the steep sigmoid tables by several steps. Instead every value is an
//! int8 level (or an exact integer in a float tensor), the accumulators are convolutions
//! of levels with the blob's integer weights (exact in float32 below 2^24), and the
//! requantizations, means and sigmoids are [`exact`]'s. The values the core exposes keep a
//! DequantizeLinear under the usual names: `<block>__a` (channel attention), `<block>__as`
//! (spatial attention) and the block output.

use super::emit::Emitter;
use super::exact::{self, centered, requantize, Sum};
use super::layout;
use super::proto::{int, ints};
use super::QdqError;
use crate::ir::{Cbam, Node};
use crate::quant::{CbamParams, QOpKind, QParams, Requant};
use tract_onnx::pb::tensor_proto::DataType;

pub fn lower(e: &mut Emitter<'_>, node: &Node, x: &str, c: &Cbam) -> Result<(), QdqError> {
    let in_q = e.input_q(node, 0)?;
    let out_q = e.q_of(&node.name, node.output)?;
    let p = params(e, node)?;
    let base = e.out_name(node);
    let n = |s: &str| format!("{base}__{s}");
    let (ch, hid, k) = (c.channels, c.hidden, p.kernel);
    let area = spatial_area(e, node);
    let full = (-128, 127);

    // Step 1: pooled vectors, centred on the input's zero point.
    let f_levels = e.levels_of(x, in_q);
    let f = centered(e, &f_levels, in_q.zero_point, &n("f_c"));
    let avg = exact::centered_mean(e, &f, Sum::Axes(&[2, 3], area), &n("avg"));
    let axes = vec![ints("axes", &[2, 3]), int("keepdims", 1)];
    e.node("ReduceMax", &[&f], &n("max"), axes);

    // Step 2: the first MLP layer on each, clamped at the hidden zero point (ReLU).
    let w1 = integer_weights(e, &n("w1"), &p.w1, &[hid, ch, 1, 1]);
    let hz = p.hidden_q.zero_point;
    let mut hidden = Vec::new();
    for (branch, pooled) in [("ha", avg), ("hm", n("max"))] {
        let acc = accumulate(e, &n(branch), &pooled, &w1, &p.b1, vec![]);
        let level = requantize(e, &acc, (&p.m1, &p.s1), hz, (hz, 127), &n(branch));
        hidden.push(centered(e, &level, hz, &n(&format!("{branch}_c"))));
    }
    // Step 3: both branches through the shared second layer (bias doubled in the blob).
    e.node("Add", &[&hidden[0], &hidden[1]], &n("hsum"), vec![]);
    let w2 = integer_weights(e, &n("w2"), &p.w2, &[ch, hid, 1, 1]);
    let acc = accumulate(e, &n("z"), &n("hsum"), &w2, &p.b2, vec![]);
    let z = requantize(e, &acc, (&p.m2, &p.s2), p.logit_q.zero_point, full, &n("z"));

    // Step 4: channel attention from the table, F' = rq((F - zp) * (a + 128)).
    let a = exact::table_lookup(e, &z, &p.lut_c, QParams::SIGMOID_OUT, &n("a"));
    let a = centered(e, &a, -128, &n("a_c"));
    e.node("Mul", &[&f, &a], &n("f1_acc"), vec![]);
    let f1 = requantize_one(e, &n("f1_acc"), p.f1, p.f1_q.zero_point, &n("f1"));
    let f1 = centered(e, &f1, p.f1_q.zero_point, &n("f1_c"));

    // Step 5: per-pixel rounded mean and max over channels.
    let mean = exact::centered_mean(e, &f1, Sum::Axes(&[1], ch), &n("mean"));
    let axes = vec![ints("axes", &[1]), int("keepdims", 1)];
    e.node("ReduceMax", &[&f1], &n("cmax"), axes);
    let (first, second) = if p.order == 0 {
        (mean, n("cmax"))
    } else {
        (n("cmax"), mean)
    };
    e.node(
        "Concat",
        &[&first, &second],
        &n("map"),
        vec![int("axis", 1)],
    );

    // Steps 6-7: spatial logit, spatial attention, F'' = rq((F' - zp) * (as + 128)).
    let ws = layout::ohwi_to_oihw(&p.ws, 1, 2, k * k);
    let ws = integer_weights(e, &n("ws"), &ws, &[1, 2, k, k]);
    let attrs = vec![ints("kernel_shape", &[k, k]), ints("pads", &[k / 2; 4])];
    let acc = accumulate(e, &n("s"), &n("map"), &ws, &[p.bs], attrs);
    let (ms, ss) = ([p.ms.mult], [p.ms.shift]);
    let s = requantize(e, &acc, (&ms, &ss), p.spatial_q.zero_point, full, &n("s"));
    let att = exact::table_lookup(e, &s, &p.lut_s, QParams::SIGMOID_OUT, &n("as"));
    let att = centered(e, &att, -128, &n("as_c"));
    e.node("Mul", &[&f1, &att], &n("out_acc"), vec![]);
    let out = requantize_one(e, &n("out_acc"), p.out, out_q.zero_point, &n("out"));
    let name = e.out_name(node);
    let dq = e.dq(&out, out_q, &name);
    e.set_name(node.output, dq);
    Ok(())
}

/// The blob's int8 weights as float32 integers (no scale: the accumulator is integer).
fn integer_weights(e: &mut Emitter<'_>, name: &str, w: &[i8], dims: &[usize]) -> String {
    let values: Vec<f32> = w.iter().map(|v| f32::from(*v)).collect();
    e.f32s(name, dims, &values)
}

/// `bias + conv(x, w)` on integers: the conv in float32 (exact), the int32 bias added
/// in float64 where it cannot round.
fn accumulate(
    e: &mut Emitter<'_>,
    base: &str,
    x: &str,
    w: &str,
    bias: &[i32],
    attrs: Vec<tract_onnx::pb::AttributeProto>,
) -> String {
    let conv = format!("{base}__conv");
    e.node("Conv", &[x, w], &conv, attrs);
    let to_double = vec![int("to", DataType::Double as i64)];
    e.node("Cast", &[&conv], &format!("{conv}_d"), to_double);
    let b: Vec<f64> = bias.iter().map(|v| f64::from(*v)).collect();
    let b = e.f64s(&format!("{base}__bias"), &[1, b.len(), 1, 1], &b);
    let acc = format!("{base}__acc");
    e.node("Add", &[&format!("{conv}_d"), &b], &acc, vec![]);
    acc
}

fn requantize_one(e: &mut Emitter<'_>, acc: &str, r: Requant, zp: i32, out: &str) -> String {
    requantize(e, acc, (&[r.mult], &[r.shift]), zp, (-128, 127), out)
}

pub(super) fn params<'a>(e: &Emitter<'a>, node: &Node) -> Result<&'a CbamParams, QdqError> {
    match &e.qop(node)?.kind {
        QOpKind::Cbam(p) => Ok(p),
        other => Err(QdqError::Unsupported {
            node: node.name.clone(),
            op: format!("CBAM lowered to core op {}", other.code()),
        }),
    }
}

/// `h * w` of the block's input, the count of the channel average.
fn spatial_area(e: &Emitter<'_>, node: &Node) -> usize {
    node.inputs
        .first()
        .and_then(|id| e.model.tensor_map.get(*id).copied().flatten())
        .and_then(|t| e.model.tensors.get(t))
        .map(|t| t.shape[0] * t.shape[1])
        .unwrap_or(1)
}
