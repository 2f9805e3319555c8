//! One IR node at a time, written with the parameters of the op the lowering made of it.

use super::emit::Emitter;
use super::exact::{self, Sum};
use super::layout;
use super::proto::{int, ints};
use super::{standard, QdqError};
use crate::ir::{Conv, Node, Op};
use crate::quant::scatter::selection_kept;
use crate::quant::{ConvParams, FcParams, PoolParams, QOpKind, Requant};

pub fn lower(e: &mut Emitter<'_>, node: &Node) -> Result<(), QdqError> {
    let x = e.input_name(node, 0);
    let raw = format!("{}__float", e.out_name(node));
    match &node.op {
        Op::Conv(c) if folded_scatter(e, node, c) => {
            // The core adds the branch straight from its kept list; the 0/1 float conv
            // does the same exactly, so the branch keeps its own quantization.
            let w = e.f32s(&format!("{raw}__w"), &[c.out_c, c.in_c, 1, 1], &c.weight);
            e.node("Conv", &[&x, &w], &raw, vec![ints("kernel_shape", &[1, 1])]);
            e.set_name(node.output, raw);
            Ok(())
        }
        Op::Flatten => {
            let out = e.out_name(node);
            e.node("Flatten", &[&x], &out, vec![int("axis", 1)]);
            e.set_name(node.output, out);
            Ok(())
        }
        Op::Identity => {
            e.set_name(node.output, x);
            Ok(())
        }
        Op::Softmax if node.output == e.graph.output => {
            e.set_name(node.output, x);
            Ok(())
        }
        Op::Cbam(c) if e.form.is_standard() => standard::cbam::lower(e, node, &x, c),
        Op::Cbam(c) => super::cbam::lower(e, node, &x, c),
        Op::ChannelMean | Op::ChannelMax if e.form.is_standard() => {
            standard::channel_stat(e, node, &x, &raw)
        }
        Op::ChannelMean | Op::ChannelMax => channel_stat(e, node, &x, &raw),
        _ => lower_op(e, node, &x, &raw),
    }
}

/// A pruning scatter the lowering folded into its Add (so it has no quantized output).
fn folded_scatter(e: &Emitter<'_>, node: &Node, c: &Conv) -> bool {
    !e.is_quantized(node.output) && selection_kept(c).is_some()
}

/// Nodes that became one core op of their own.
fn lower_op(e: &mut Emitter<'_>, node: &Node, x: &str, raw: &str) -> Result<(), QdqError> {
    let op = e.qop(node)?;
    let out_q = e.q_of(&node.name, node.output)?;
    let standard = e.form.is_standard();
    match (&node.op, &op.kind) {
        (Op::Conv(c), QOpKind::Conv(p)) => {
            let taps = c.kernel[0] * c.kernel[1];
            let w = layout::ohwi_to_oihw(&p.weights, c.out_c, c.in_c, taps);
            conv(e, node, x, raw, c, p, &w)
        }
        (Op::Conv(c), QOpKind::Depthwise { conv: p, .. }) => {
            let w = layout::hwo_to_oihw(&p.weights, c.out_c, c.kernel[0] * c.kernel[1]);
            conv(e, node, x, raw, c, p, &w)
        }
        (Op::Linear(_), QOpKind::FullyConnected(p)) => fully_connected(e, node, x, raw, p),
        (Op::MaxPool(_), QOpKind::MaxPool(p)) => {
            pool(e, "MaxPool", raw, x, p, vec![]);
            let y = e.clamp(raw, p.clamp, out_q);
            e.finish(node, &y)
        }
        (Op::AvgPool(_), QOpKind::AvgPool(p)) if standard => standard::avg_pool(e, node, x, raw, p),
        (Op::AvgPool(_), QOpKind::AvgPool(p)) => avg_pool(e, node, x, p),
        (Op::GlobalAvgPool, QOpKind::GlobalAvgPool(_)) if standard => {
            standard::global_avg_pool(e, node, x, raw)
        }
        (Op::GlobalAvgPool, QOpKind::GlobalAvgPool(r)) => global_avg_pool(e, node, x, *r),
        (Op::Sigmoid, QOpKind::Sigmoid(_)) if standard => {
            let out = e.out_name(node);
            let dq = standard::sigmoid(e, x, out_q, &out);
            e.set_name(node.output, dq);
            Ok(())
        }
        (Op::Pointwise(f), QOpKind::Lut(_)) if standard => {
            let y = standard::pointwise(e, x, raw, f);
            e.finish(node, &y)
        }
        (Op::GlobalMaxPool, QOpKind::GlobalMaxPool) => {
            e.node("GlobalMaxPool", &[x], raw, vec![]);
            e.finish(node, raw)
        }
        (Op::Sigmoid, QOpKind::Sigmoid(table)) | (Op::Pointwise(_), QOpKind::Lut(table)) => {
            let levels = e.levels_of(x, e.input_q(node, 0)?);
            let out = e.out_name(node);
            exact::table_lookup(e, &levels, table, out_q, &out);
            e.set_name(node.output, out);
            Ok(())
        }
        (Op::Add { scales, .. }, QOpKind::Add(p)) => {
            let a = per_channel_map(e, node, 0, x.to_string());
            let a = scaled_input(e, raw, a, scales[0], 0);
            let b = per_channel_map(e, node, 1, e.input_name(node, 1));
            let b = scaled_input(e, raw, b, scales[1], 1);
            e.node("Add", &[&a, &b], raw, vec![]);
            let y = e.clamp(raw, p.clamp, out_q);
            e.finish(node, &y)
        }
        (Op::Mul, QOpKind::Mul(p)) => {
            let a = per_channel_map(e, node, 0, x.to_string());
            let b = per_channel_map(e, node, 1, e.input_name(node, 1));
            e.node("Mul", &[&a, &b], raw, vec![]);
            let y = e.clamp(raw, p.clamp, out_q);
            e.finish(node, &y)
        }
        // A CHANNEL_POOL writing both statistics is this concat's op: the statistics
        // before it kept their input's quantization, so the concat is a copy.
        (Op::Concat, QOpKind::Concat(_) | QOpKind::ChannelPool(_)) => {
            let inputs: Vec<String> = (0..node.inputs.len())
                .map(|i| per_channel_map(e, node, i, e.input_name(node, i)))
                .collect();
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            e.node("Concat", &refs, raw, vec![int("axis", 1)]);
            e.finish(node, raw)
        }
        (other, kind) => Err(QdqError::Unsupported {
            node: node.name.clone(),
            op: format!("{other:?} lowered to core op {}", kind.code())
                .chars()
                .take(60)
                .collect(),
        }),
    }
}

/// Input `i` of an Add times its constant scale `k` (a Mul, unless `k` is 1).
fn scaled_input(e: &mut Emitter<'_>, raw: &str, x: String, k: f32, i: usize) -> String {
    if k == 1.0 {
        return x;
    }
    let k = e.f32s(&format!("{raw}__scale{i}"), &[], &[k]);
    let scaled = format!("{raw}__scaled{i}");
    e.node("Mul", &[&x, &k], &scaled, vec![]);
    scaled
}

/// A channel mean (rounded as the core rounds) or max in its input's quantization, exact.
/// Written the same whether the statistic is a CHANNEL_POOL of its own or half of one that
/// a concat's op writes: either way it keeps the input's quantization.
fn channel_stat(e: &mut Emitter<'_>, node: &Node, x: &str, raw: &str) -> Result<(), QdqError> {
    let q = e.input_q(node, 0)?;
    let out = e.out_name(node);
    if node.op == Op::ChannelMean {
        let [_, _, c] = input_shape(e, node);
        let levels = e.levels_of(x, q);
        exact::rounded_mean(e, &levels, q, Sum::Axes(&[1], c), &out);
    } else {
        let attrs = vec![ints("axes", &[1]), int("keepdims", 1)];
        e.node("ReduceMax", &[x], raw, attrs);
        // The largest of dequantized levels is a dequantized level: re-quantizing is exact.
        e.qdq(raw, q, &out);
    }
    e.set_name(node.output, out);
    Ok(())
}

/// The core sums the centred levels and requantizes the sum once (the `1/(h*w)` folded
/// into the multiplier); GlobalAveragePool + QuantizeLinear would round a float mean
/// once, half to even, and disagree on about one value in 2^(1 - shift).
fn global_avg_pool(e: &mut Emitter<'_>, node: &Node, x: &str, r: Requant) -> Result<(), QdqError> {
    let in_q = e.input_q(node, 0)?;
    let out_q = e.q_of(&node.name, node.output)?;
    let out = e.out_name(node);
    let levels = e.levels_of(x, in_q);
    let c = exact::centered(e, &levels, in_q.zero_point, &format!("{out}__centered"));
    let axes = e.i64s(&format!("{out}__axes"), &[2], &[2, 3]);
    let sum = format!("{out}__sum");
    e.node("ReduceSum", &[&c, &axes], &sum, vec![int("keepdims", 1)]);
    let rq = (&[r.mult][..], &[r.shift][..]);
    let level = exact::requantize(e, &sum, rq, out_q.zero_point, (-128, 127), &out);
    let dq = e.dq(&level, out_q, &out);
    e.set_name(node.output, dq);
    Ok(())
}

/// Conv or depthwise conv with the blob's weights (`oihw`), bias and clamp.
fn conv(
    e: &mut Emitter<'_>,
    node: &Node,
    x: &str,
    raw: &str,
    c: &Conv,
    p: &ConvParams,
    oihw: &[i8],
) -> Result<(), QdqError> {
    let s_in = e.input_q(node, 0)?.scale;
    let out_q = e.q_of(&node.name, node.output)?;
    let in_per_group = c.in_c / c.groups.max(1);
    let dims = [c.out_c, in_per_group, c.kernel[0], c.kernel[1]];
    let w = e.weight(raw, oihw, &dims, &p.weight_scales);
    let b = e.bias(raw, &p.bias, s_in, &p.weight_scales);
    let attrs = vec![
        ints("kernel_shape", &c.kernel),
        ints("strides", &p.stride),
        ints("dilations", &p.dilation),
        ints("pads", &p.pads),
        int("group", c.groups as i64),
    ];
    e.node("Conv", &[x, &w, &b], raw, attrs);
    let y = e.clamp(raw, p.clamp, out_q);
    e.finish(node, &y)
}

fn fully_connected(
    e: &mut Emitter<'_>,
    node: &Node,
    x: &str,
    raw: &str,
    p: &FcParams,
) -> Result<(), QdqError> {
    let in_q = e.input_q(node, 0)?;
    let out_q = e.q_of(&node.name, node.output)?;
    let rows = p.weight_scales.len();
    let hwc = input_shape(e, node);
    let n_in = hwc.iter().product::<usize>();
    let w = if hwc[0] * hwc[1] > 1 {
        layout::nhwc_columns_to_nchw(&p.weights, rows, hwc)
    } else {
        p.weights.clone()
    };
    let flat = format!("{raw}__flat");
    e.node("Flatten", &[x], &flat, vec![int("axis", 1)]);
    let w = e.weight(raw, &w, &[rows, n_in], &p.weight_scales);
    let b = e.bias(raw, &p.bias, in_q.scale, &p.weight_scales);
    e.node("Gemm", &[&flat, &w, &b], raw, vec![int("transB", 1)]);
    let y = e.clamp(raw, p.clamp, out_q);
    e.finish(node, &y)
}

/// `[h, w, c]` of the core tensor the node reads first.
fn input_shape(e: &Emitter<'_>, node: &Node) -> [usize; 3] {
    core_shape(e, node, 0).unwrap_or([1, 1, 1])
}

/// `[h, w, c]` of the core tensor of the node's input `i`, if the lowering made one.
fn core_shape(e: &Emitter<'_>, node: &Node, i: usize) -> Option<[usize; 3]> {
    node.inputs
        .get(i)
        .and_then(|id| e.model.tensor_map.get(*id).copied().flatten())
        .and_then(|t| e.model.tensors.get(t))
        .map(|t| t.shape)
}

/// Input `i` of an element-wise op as an NCHW map. The IR takes `[n]` and `[n, 1, 1]` as
/// one shape, but ONNX does not: a Gemm's `[batch, c]` would broadcast against a map's width
/// or a pool's `[batch, c, 1, 1]`, so every `1x1xc` input is reshaped to `[batch, c, 1, 1]`.
fn per_channel_map(e: &mut Emitter<'_>, node: &Node, i: usize, x: String) -> String {
    let Some([1, 1, c]) = core_shape(e, node, i) else {
        return x;
    };
    let dims = e.i64s(&format!("{x}__nchw_dims"), &[4], &[-1, c as i64, 1, 1]);
    let out = format!("{x}__nchw");
    e.node("Reshape", &[&x, &dims], &out, vec![]);
    out
}

fn pool(
    e: &mut Emitter<'_>,
    op: &str,
    out: &str,
    x: &str,
    p: &PoolParams,
    mut attrs: Vec<tract_onnx::pb::AttributeProto>,
) {
    attrs.extend([
        ints("kernel_shape", &p.kernel),
        ints("strides", &p.stride),
        ints("pads", &p.pads),
    ]);
    e.node(op, &[x], out, attrs);
}

/// The core's average pool rounds each window's mean half away from zero in the input's
/// quantization; AveragePool + QuantizeLinear would round half to even.
fn avg_pool(e: &mut Emitter<'_>, node: &Node, x: &str, p: &PoolParams) -> Result<(), QdqError> {
    let q = e.input_q(node, 0)?;
    let [h, w, c] = input_shape(e, node);
    let out_shape = e
        .model
        .tensor_map
        .get(node.output)
        .copied()
        .flatten()
        .and_then(|t| e.model.tensors.get(t))
        .map(|t| t.shape)
        .unwrap_or([1, 1, 1]);
    let levels = e.levels_of(x, q);
    let mean = format!("{}__mean", e.out_name(node));
    let sum = Sum::Windows {
        channels: c,
        kernel: p.kernel,
        stride: p.stride,
        pads: p.pads,
        input: (h, w),
        output: (out_shape[0], out_shape[1]),
    };
    exact::rounded_mean(e, &levels, q, sum, &mean);
    let y = e.clamp(&mean, p.clamp, q);
    e.finish(node, &y)
}
