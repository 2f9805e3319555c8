//! The fused CBAM op as the float ops of the paper between Q/DQ pairs, each value in the
//! quantization the core gives it (FORMAT.md op 12, steps 1-7) and every weight and bias
//! the blob's own int8/int32 numbers behind DequantizeLinear:
//!
//! - pooled vectors: GlobalAveragePool / GlobalMaxPool, in the input's quantization;
//! - shared MLP: two 1x1 Convs (one per branch) with ReLU into the hidden quantization, then
//!   the core's one shared second layer on the sum of both branches, written as a Concat of
//!   the two hidden vectors into a 1x1 Conv whose weights are the second layer's twice
//!   over (the same integer sum, with the blob's doubled bias) so that runtimes keep it in
//!   int8 (an Add of two dequantized values would stay a float op), into the logit
//!   quantization;
//! - Sigmoid into scale 1/256, zero point -128 (the core's table output); `F' = F * a`;
//! - ReduceMean / ReduceMax over channels and their Concat in `F'`'s quantization, the
//!   k x k Conv, Sigmoid, and `F'' = F' * as` in the block's output quantization.
//!
//! The attention values keep the names the exact form gives them (`<block>__a`,
//! `<block>__as`), so tools reading the attention find them in either form.

use super::super::emit::Emitter;
use super::super::layout;
use super::super::proto::{int, ints};
use super::super::QdqError;
use super::{reduce_axes, sigmoid};
use crate::ir::{Cbam, Node};
use crate::quant::{Clamp, QParams};

pub fn lower(e: &mut Emitter<'_>, node: &Node, x: &str, c: &Cbam) -> Result<(), QdqError> {
    let in_q = e.input_q(node, 0)?;
    let p = super::super::cbam::params(e, node)?;
    let base = e.out_name(node);
    let n = |s: &str| format!("{base}__{s}");
    let (ch, hid, k) = (c.channels, c.hidden, p.kernel);

    // Step 1: pooled vectors.
    e.node("GlobalAveragePool", &[x], &n("avg_f"), vec![]);
    let avg = e.qdq(&n("avg_f"), in_q, &n("avg"));
    e.node("GlobalMaxPool", &[x], &n("max_f"), vec![]);
    let max = e.qdq(&n("max_f"), in_q, &n("max"));

    // Step 2: the first layer on each branch (its own weight DequantizeLinear, so a
    // runtime sees two ordinary QDQ convs), ReLU at the hidden zero point.
    let relu = Clamp {
        min: p.hidden_q.zero_point,
        max: 127,
    };
    let mut hidden = Vec::new();
    for (branch, pooled) in [("ha", &avg), ("hm", &max)] {
        let raw = n(&format!("{branch}_f"));
        let w = e.weight(&raw, &p.w1, &[hid, ch, 1, 1], &p.w1_scales);
        let b = e.bias(&raw, &p.b1, in_q.scale, &p.w1_scales);
        e.node("Conv", &[pooled, &w, &b], &raw, vec![]);
        let y = e.clamp(&raw, relu, p.hidden_q);
        hidden.push(e.qdq(&y, p.hidden_q, &n(branch)));
    }

    // Step 3: the shared second layer on the sum of both branches (bias doubled in the
    // blob): W2 h_avg + W2 h_max is [W2 W2] applied to [h_avg; h_max].
    e.node(
        "Concat",
        &[&hidden[0], &hidden[1]],
        &n("hcat_f"),
        vec![int("axis", 1)],
    );
    let hcat = e.qdq(&n("hcat_f"), p.hidden_q, &n("hcat"));
    let raw = n("z_f");
    let w2_twice: Vec<i8> =
        p.w2.chunks(hid)
            .flat_map(|row| row.iter().chain(row).copied())
            .collect();
    let w = e.weight(&raw, &w2_twice, &[ch, 2 * hid, 1, 1], &p.w2_scales);
    let b = e.bias(&raw, &p.b2, p.hidden_q.scale, &p.w2_scales);
    e.node("Conv", &[&hcat, &w, &b], &raw, vec![]);
    let z = e.qdq(&raw, p.logit_q, &n("z"));

    // Step 4: channel attention and F'.
    let a = sigmoid(e, &z, QParams::SIGMOID_OUT, &n("a"));
    e.node("Mul", &[x, &a], &n("f1_f"), vec![]);
    let f1 = e.qdq(&n("f1_f"), p.f1_q, &n("f1"));

    // Step 5: per-pixel mean and max over channels, concatenated in the blob's order.
    e.node("ReduceMean", &[&f1], &n("mean_f"), reduce_axes(&[1]));
    let mean = e.qdq(&n("mean_f"), p.f1_q, &n("mean"));
    e.node("ReduceMax", &[&f1], &n("cmax_f"), reduce_axes(&[1]));
    let cmax = e.qdq(&n("cmax_f"), p.f1_q, &n("cmax"));
    let pair = if p.order == 0 {
        [&mean, &cmax]
    } else {
        [&cmax, &mean]
    };
    e.node(
        "Concat",
        &[pair[0], pair[1]],
        &n("map_f"),
        vec![int("axis", 1)],
    );
    let map = e.qdq(&n("map_f"), p.f1_q, &n("map"));

    // Steps 6-7: spatial logit, spatial attention, F''.
    let raw = n("s_f");
    let ws = layout::ohwi_to_oihw(&p.ws, 1, 2, k * k);
    let w = e.weight(&raw, &ws, &[1, 2, k, k], &[p.ws_scale]);
    let b = e.bias(&raw, &[p.bs], p.f1_q.scale, &[p.ws_scale]);
    let attrs = vec![ints("kernel_shape", &[k, k]), ints("pads", &[k / 2; 4])];
    e.node("Conv", &[&map, &w, &b], &raw, attrs);
    let s = e.qdq(&raw, p.spatial_q, &n("s"));
    let att = sigmoid(e, &s, QParams::SIGMOID_OUT, &n("as"));
    e.node("Mul", &[&f1, &att], &n("out_f"), vec![]);
    e.finish(node, &n("out_f"))
}
