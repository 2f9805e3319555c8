//! Hand-built IR graphs for the quantization, planning and writer tests (the ONNX import
//! is tested separately; these do not depend on it), and the importer's synthetic ONNX
//! classifier with tract for the tests that measure the int8 model against float.

use crate::calib::{Calibrator, Range, Ranges};
use crate::float_run::FloatModel;
use crate::import::testing::{int, CbamStyle, OnnxBuilder};
use crate::ir::*;

/// Deterministic weights in [-scale, scale).
pub fn weights(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn tensor(name: &str, shape: &[usize]) -> TensorDef {
    TensorDef {
        name: name.into(),
        shape: shape.to_vec(),
    }
}

pub fn conv(in_c: usize, out_c: usize, k: usize, seed: u64, act: Activation) -> Conv {
    Conv {
        weight: weights(out_c * in_c * k * k, seed, 0.5),
        bias: weights(out_c, seed + 1, 0.1),
        out_c,
        in_c,
        kernel: [k, k],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [k / 2; 4],
        groups: 1,
        act,
    }
}

pub fn linear(n_in: usize, n_out: usize, seed: u64, act: Activation) -> Linear {
    Linear {
        weight: weights(n_in * n_out, seed, 0.5),
        bias: weights(n_out, seed + 1, 0.1),
        out_features: n_out,
        in_features: n_in,
        act,
    }
}

pub fn cbam_block(channels: usize, hidden: usize, k: usize, prefix: &str) -> Cbam {
    let name = |s: &str| format!("{prefix}.{s}");
    Cbam {
        channels,
        hidden,
        mlp1: linear(channels, hidden, 11, Activation::Relu),
        mlp2: linear(hidden, channels, 13, Activation::None),
        spatial: conv(2, 1, k, 17, Activation::None),
        order: SpatialOrder::MaxMean,
        values: CbamValues {
            avg_pooled: name("avg"),
            max_pooled: name("max"),
            hidden_avg: name("hid_avg"),
            hidden_max: name("hid_max"),
            channel_logit: name("logit"),
            channel_attention: name("mc"),
            channel_scaled: name("f1"),
            pooled_map: name("map"),
            spatial_logit: name("slogit"),
        },
    }
}

fn node(name: &str, op: Op, inputs: Vec<usize>, output: usize) -> Node {
    Node {
        name: name.into(),
        op,
        inputs,
        output,
    }
}

/// A hand-built classifier of 8x8 grayscale images with three labels and the example
/// models' normalisation: `tensors` by name and shape, the first the input, the last the
/// output.
fn classifier(source: &str, tensors: &[(&str, &[usize])], nodes: Vec<Node>) -> Graph {
    Graph {
        tensors: tensors.iter().map(|(n, s)| tensor(n, s)).collect(),
        nodes,
        input: 0,
        output: tensors.len() - 1,
        meta: ModelMeta {
            mean: vec![0.2860],
            std: vec![0.3530],
            labels: vec!["a".into(), "b".into(), "c".into()],
            source_name: source.into(),
            opset: 13,
            ..Default::default()
        },
    }
}

/// Calibrated ranges, `(value, min, max)`.
fn ranges(values: &[(&str, f32, f32)]) -> Ranges {
    values
        .iter()
        .map(|&(name, min, max)| (name.to_string(), Range { min, max }))
        .collect()
}

fn max_pool_2x2() -> Op {
    Op::MaxPool(Pool {
        kernel: [2, 2],
        stride: [2, 2],
        pads: [0; 4],
    })
}

/// input [1,8,8] -> Conv3x3+ReLU [4,8,8] -> CBAM -> MaxPool2 [4,4,4] -> Flatten -> Linear 64->3
/// -> Softmax, with plausible ranges for every value.
pub fn small_cbam_graph() -> (Graph, Ranges) {
    let tensors: [(&str, &[usize]); 7] = [
        ("input", &[1, 8, 8]),
        ("conv1", &[4, 8, 8]),
        ("cbam1", &[4, 8, 8]),
        ("pool1", &[4, 4, 4]),
        ("flat", &[64]),
        ("logits", &[3]),
        ("probs", &[3]),
    ];
    let relu = Activation::Relu;
    let nodes = vec![
        node("Conv_0", Op::Conv(conv(1, 4, 3, 1, relu)), vec![0], 1),
        node(
            "Cbam_1",
            Op::Cbam(Box::new(cbam_block(4, 2, 3, "cbam1"))),
            vec![1],
            2,
        ),
        node("MaxPool_2", max_pool_2x2(), vec![2], 3),
        node("Flatten_3", Op::Flatten, vec![3], 4),
        node(
            "Gemm_4",
            Op::Linear(linear(64, 3, 5, Activation::None)),
            vec![4],
            5,
        ),
        node("Softmax_5", Op::Softmax, vec![5], 6),
    ];
    let ranges = ranges(&[
        ("input", -0.81, 2.02),
        ("conv1", 0.0, 3.0),
        ("cbam1", -0.1, 2.5),
        ("pool1", -0.1, 2.5),
        ("logits", -6.0, 8.0),
        ("cbam1.hid_avg", 0.0, 1.0),
        ("cbam1.hid_max", 0.0, 1.5),
        ("cbam1.logit", -3.0, 3.0),
        ("cbam1.f1", 0.0, 2.8),
        ("cbam1.slogit", -4.0, 4.0),
    ]);
    (classifier("small.onnx", &tensors, nodes), ranges)
}

/// Spatial attention run from its pieces, twice: input [1,8,8] -> Conv3x3+ReLU `conv1`
/// [4,8,8] -> `[max; mean]` over channels -> Concat `map` [2,8,8] -> Conv7x7 `slogit` ->
/// Sigmoid -> Mul `attended` [4,8,8]; then timm's light form: mean and max over channels
/// -> `0.5 * mean + 0.5 * max` `lsum` [1,8,8] -> Sigmoid -> Mul `out2` -> MaxPool2 ->
/// Flatten -> Linear 64->3, with plausible ranges for every value whose range the
/// lowering reads.
pub fn spatial_attention_graph() -> (Graph, Ranges) {
    let tensors: [(&str, &[usize]); 16] = [
        ("input", &[1, 8, 8]),
        ("conv1", &[4, 8, 8]),
        ("cmax", &[1, 8, 8]),
        ("cmean", &[1, 8, 8]),
        ("map", &[2, 8, 8]),
        ("slogit", &[1, 8, 8]),
        ("satt", &[1, 8, 8]),
        ("attended", &[4, 8, 8]),
        ("lmean", &[1, 8, 8]),
        ("lmax", &[1, 8, 8]),
        ("lsum", &[1, 8, 8]),
        ("latt", &[1, 8, 8]),
        ("out2", &[4, 8, 8]),
        ("pool", &[4, 4, 4]),
        ("flat", &[64]),
        ("logits", &[3]),
    ];
    let (none, relu) = (Activation::None, Activation::Relu);
    let halves = Op::Add {
        act: none,
        scales: [0.5; 2],
    };
    let nodes = vec![
        node("conv", Op::Conv(conv(1, 4, 3, 1, relu)), vec![0], 1),
        node("max", Op::ChannelMax, vec![1], 2),
        node("mean", Op::ChannelMean, vec![1], 3),
        node("concat", Op::Concat, vec![2, 3], 4),
        node("sconv", Op::Conv(conv(2, 1, 7, 21, none)), vec![4], 5),
        node("sgate", Op::Sigmoid, vec![5], 6),
        node("smul", Op::Mul, vec![1, 6], 7),
        node("lmean", Op::ChannelMean, vec![7], 8),
        node("lmax", Op::ChannelMax, vec![7], 9),
        node("ladd", halves, vec![8, 9], 10),
        node("lgate", Op::Sigmoid, vec![10], 11),
        node("lmul", Op::Mul, vec![7, 11], 12),
        node("pool", max_pool_2x2(), vec![12], 13),
        node("flatten", Op::Flatten, vec![13], 14),
        node("fc", Op::Linear(linear(64, 3, 5, none)), vec![14], 15),
    ];
    let ranges = ranges(&[
        ("input", -0.81, 2.02),
        ("conv1", 0.0, 3.0),
        ("slogit", -4.0, 4.0),
        ("attended", 0.0, 2.9),
        ("lsum", 0.0, 2.5),
        ("out2", 0.0, 2.8),
        ("logits", -6.0, 8.0),
    ]);
    (classifier("spatial.onnx", &tensors, nodes), ranges)
}

/// A squeeze-and-excitation gate made by Linear layers (`[n]` vectors, which ONNX writes as
/// Gemm's `[1, n]`) scaling a map: input [1,8,8] -> Conv3x3+ReLU `conv1` [4,8,8] ->
/// GlobalAvgPool `squeezed` [4] -> Linear 4->4 `excite` -> Sigmoid `gate` -> Mul `gated`
/// [4,8,8] -> GlobalAvgPool `pooled` [4] -> Linear 4->3 `logits`.
pub fn channel_gate_graph() -> (Graph, Ranges) {
    let tensors: [(&str, &[usize]); 8] = [
        ("input", &[1, 8, 8]),
        ("conv1", &[4, 8, 8]),
        ("squeezed", &[4]),
        ("excite", &[4]),
        ("gate", &[4]),
        ("gated", &[4, 8, 8]),
        ("pooled", &[4]),
        ("logits", &[3]),
    ];
    let (none, relu) = (Activation::None, Activation::Relu);
    let nodes = vec![
        node("conv", Op::Conv(conv(1, 4, 3, 1, relu)), vec![0], 1),
        node("squeeze", Op::GlobalAvgPool, vec![1], 2),
        node("fc1", Op::Linear(linear(4, 4, 7, none)), vec![2], 3),
        node("sigmoid", Op::Sigmoid, vec![3], 4),
        node("scale", Op::Mul, vec![1, 4], 5),
        node("pool", Op::GlobalAvgPool, vec![5], 6),
        node("fc2", Op::Linear(linear(4, 3, 5, none)), vec![6], 7),
    ];
    let ranges = ranges(&[
        ("input", -0.81, 2.02),
        ("conv1", 0.0, 3.0),
        ("squeezed", 0.0, 1.5),
        ("excite", -2.0, 2.0),
        ("gated", 0.0, 2.5),
        ("pooled", 0.0, 1.2),
        ("logits", -3.0, 3.0),
    ]);
    (classifier("gate.onnx", &tensors, nodes), ranges)
}

/// The importer's synthetic CBAM classifier as graph and tract model, with 24 inputs.
pub fn synthetic_classifier() -> (Graph, FloatModel, Vec<Vec<f32>>) {
    let (b, out) = OnnxBuilder::cbam_classifier(&CbamStyle::default(), 13);
    let proto = b.build(&out);
    let graph = crate::import::import_model(&proto, None).unwrap();
    let graph = crate::passes::optimize(graph).unwrap();
    let float = FloatModel::from_proto(&proto, None).unwrap();
    let images = (0..24u64)
        .map(|s| crate::quant::testing::weights(64, s + 1, 1.5))
        .collect();
    (graph, float, images)
}

/// A deeper RGB classifier for the passes that walk the layers one by one: conv relu, a
/// residual pair of convs (two tensors live across them), CBAM, a strided conv, global
/// pool and gemm; with 24 inputs.
pub fn synthetic_deep_classifier() -> (Graph, FloatModel, Vec<Vec<f32>>) {
    let mut b = OnnxBuilder::new(&[1, 3, 8, 8], 13).seeded(7);
    let c = b.conv("x", 3, 8, 3, true);
    let c = b.node("Relu", &[&c], vec![]);
    let r = b.conv(&c, 8, 8, 3, true);
    let r = b.node("Relu", &[&r], vec![]);
    let r = b.conv(&r, 8, 8, 3, true);
    let s = b.node("Add", &[&c, &r], vec![]);
    let s = b.node("Relu", &[&s], vec![]);
    let a = b.cbam(&s, 8, 2, [8, 8], &CbamStyle::default());
    let d = b.conv_strided(&a, 8, 16, 3, 2, true);
    let d = b.node("Relu", &[&d], vec![]);
    let p = b.node("GlobalAveragePool", &[&d], vec![]);
    let f = b.node("Flatten", &[&p], vec![int("axis", 1)]);
    let out = b.gemm(&f, 16, 4, true);
    let proto = b.build(&out);
    let graph = crate::import::import_model(&proto, None).unwrap();
    let graph = crate::passes::optimize(graph).unwrap();
    let float = FloatModel::from_proto(&proto, None).unwrap();
    let images = (0..24u64)
        .map(|s| crate::quant::testing::weights(3 * 64, s + 1, 1.5))
        .collect();
    (graph, float, images)
}

/// Histograms of every value the lowering quantizes, from tract runs over `images`.
pub fn calibrate_synthetic(graph: &Graph, float: &FloatModel, images: &[Vec<f32>]) -> Calibrator {
    let mut names: Vec<String> = graph.tensors.iter().map(|t| t.name.clone()).collect();
    for node in &graph.nodes {
        if let Op::Cbam(c) = &node.op {
            let v = &c.values;
            names.extend([
                v.hidden_avg.clone(),
                v.hidden_max.clone(),
                v.channel_logit.clone(),
                v.channel_scaled.clone(),
                v.spatial_logit.clone(),
            ]);
        }
    }
    let input = graph.tensors[graph.input].name.clone();
    names.retain(|n| {
        *n != input
            && float
                .run_with_values(&images[0], std::slice::from_ref(n))
                .is_ok()
    });
    let mut calib = Calibrator::default();
    for image in images {
        calib.observe(&input, image);
        for (name, v) in float.run_with_values(image, &names).unwrap() {
            calib.observe(&name, &v);
        }
    }
    calib
}
