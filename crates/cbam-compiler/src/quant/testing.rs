//! Hand-built IR graphs for the quantization, planning and writer tests (the ONNX import
//! is tested separately; these do not depend on it), and the importer's synthetic ONNX
//! classifier with tract for the tests that measure the int8 model against float.

use crate::calib::{Calibrator, Range, Ranges};
use crate::float_run::FloatModel;
use crate::import::testing::{CbamStyle, OnnxBuilder};
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

/// input [1,8,8] -> Conv3x3+ReLU [4,8,8] -> CBAM -> MaxPool2 [4,4,4] -> Flatten -> Linear 64->3
/// -> Softmax, with plausible ranges for every value.
pub fn small_cbam_graph() -> (Graph, Ranges) {
    let tensors = vec![
        tensor("input", &[1, 8, 8]),
        tensor("conv1", &[4, 8, 8]),
        tensor("cbam1", &[4, 8, 8]),
        tensor("pool1", &[4, 4, 4]),
        tensor("flat", &[64]),
        tensor("logits", &[3]),
        tensor("probs", &[3]),
    ];
    let node = |name: &str, op: Op, inputs: Vec<usize>, output: usize| Node {
        name: name.into(),
        op,
        inputs,
        output,
    };
    let nodes = vec![
        node(
            "Conv_0",
            Op::Conv(conv(1, 4, 3, 1, Activation::Relu)),
            vec![0],
            1,
        ),
        node(
            "Cbam_1",
            Op::Cbam(Box::new(cbam_block(4, 2, 3, "cbam1"))),
            vec![1],
            2,
        ),
        node(
            "MaxPool_2",
            Op::MaxPool(Pool {
                kernel: [2, 2],
                stride: [2, 2],
                pads: [0; 4],
            }),
            vec![2],
            3,
        ),
        node("Flatten_3", Op::Flatten, vec![3], 4),
        node(
            "Gemm_4",
            Op::Linear(linear(64, 3, 5, Activation::None)),
            vec![4],
            5,
        ),
        node("Softmax_5", Op::Softmax, vec![5], 6),
    ];
    let graph = Graph {
        tensors,
        nodes,
        input: 0,
        output: 6,
        meta: ModelMeta {
            mean: vec![0.2860],
            std: vec![0.3530],
            labels: vec!["a".into(), "b".into(), "c".into()],
            source_name: "small.onnx".into(),
            opset: 13,
        },
    };
    let mut ranges = Ranges::new();
    for (name, min, max) in [
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
    ] {
        ranges.insert(name.into(), Range { min, max });
    }
    (graph, ranges)
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
