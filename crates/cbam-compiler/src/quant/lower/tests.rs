use super::*;
use crate::quant::testing::{self, small_cbam_graph};
use cbam_core::OpCode;

#[test]
fn small_graph_lowers_to_core_ops() {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let codes: Vec<OpCode> = m.ops.iter().map(|o| o.kind.code()).collect();
    // Conv, CBAM, MaxPool, FC; Flatten aliases, Softmax is dropped.
    assert_eq!(
        codes,
        [
            OpCode::Conv2d,
            OpCode::Cbam,
            OpCode::MaxPool2d,
            OpCode::FullyConnected
        ]
    );
    assert_eq!(m.tensors[m.output].shape, [1, 1, 3]);
    assert_eq!(m.tensors[m.output].name, "logits");
    assert_eq!(m.tensor_map[6], Some(m.output));
    assert!(m.input_is_pixels);
    assert_eq!(m.tensors[m.input].shape, [8, 8, 1]);
    // Pixel normalisation: scale 1/(255*std), zero point round(255*mean) - 128.
    let iq = m.tensors[m.input].q;
    assert!((iq.scale - 1.0 / (255.0 * 0.353)).abs() < 1e-6);
    assert_eq!(iq.zero_point, (255.0f32 * 0.286).round() as i32 - 128);
}

#[test]
fn relu_clamp_and_pool_quantization() {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let QOpKind::Conv(conv) = &m.ops[0].kind else {
        panic!("first op is not a conv")
    };
    let out_q = m.tensors[m.ops[0].output].q;
    assert_eq!(out_q.zero_point, -128);
    assert_eq!(
        conv.clamp,
        Clamp {
            min: -128,
            max: 127
        }
    );
    // Pool output shares the CBAM output's quantization.
    assert_eq!(m.tensors[m.ops[2].output].q, m.tensors[m.ops[1].output].q);
}

#[test]
fn conv_weights_are_ohwi_and_requantizers_match_scales() {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let QOpKind::Conv(conv) = &m.ops[0].kind else {
        panic!("first op is not a conv")
    };
    let Op::Conv(float) = &g.nodes[0].op else {
        panic!()
    };
    // in_c = 1, so OHWI == OIHW; check the quantized weight dequantizes close to float.
    for (i, (q, f)) in conv.weights.iter().zip(&float.weight).enumerate() {
        let s = conv.weight_scales[i / 9];
        assert!((f32::from(*q) * s - f).abs() <= s / 2.0 + 1e-7);
    }
    let (s_in, s_out) = (
        m.tensors[m.input].q.scale,
        m.tensors[m.ops[0].output].q.scale,
    );
    for c in 0..4 {
        let real = math::multiplier_value(conv.mult[c], conv.shift[c]);
        let want = f64::from(s_in) * f64::from(conv.weight_scales[c]) / f64::from(s_out);
        assert!((real - want).abs() < want * 1e-8);
    }
}

#[test]
fn fc_after_spatial_tensor_permutes_to_nhwc() {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let QOpKind::FullyConnected(fc) = &m.ops[3].kind else {
        panic!("last op is not FC")
    };
    let Op::Linear(float) = &g.nodes[4].op else {
        panic!()
    };
    // Input [c=4,h=4,w=4]: ONNX column c*16 + y*4 + x sits at NHWC column (y*4 + x)*4 + c.
    let (c, y, x) = (3, 1, 2);
    let onnx_col = c * 16 + y * 4 + x;
    let nhwc_col = (y * 4 + x) * 4 + c;
    for row in 0..3 {
        let s = fc.weight_scales[row];
        let expected = math::quantize_weight(float.weight[row * 64 + onnx_col], s);
        assert_eq!(fc.weights[row * 64 + nhwc_col], expected);
    }
}

#[test]
fn cbam_params_follow_the_format() {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let QOpKind::Cbam(p) = &m.ops[1].kind else {
        panic!("second op is not CBAM")
    };
    assert_eq!((p.channels, p.hidden, p.kernel, p.order), (4, 2, 3, 1));
    assert_eq!(p.w1.len(), 8);
    assert_eq!(p.w2.len(), 8);
    assert_eq!(p.ws.len(), 18);
    assert_eq!(p.hidden_q.zero_point, -128);
    assert!(p.b2.iter().all(|b| b % 2 == 0));
    let s_in = m.tensors[m.ops[1].inputs[0]].q.scale;
    let want = f64::from(s_in) / 256.0 / f64::from(p.f1_q.scale);
    assert!((math::multiplier_value(p.f1.mult, p.f1.shift) - want).abs() < want * 1e-8);
    // Spatial weights HWI: tap (dy, dx), channel i of ONNX [1][i][dy][dx].
    let Op::Cbam(block) = &g.nodes[1].op else {
        panic!()
    };
    let (dy, dx, i) = (2, 1, 1);
    let f = block.spatial.weight[i * 9 + dy * 3 + dx];
    assert_eq!(
        p.ws[(dy * 3 + dx) * 2 + i],
        math::quantize_weight(f, p.ws_scale)
    );
}

#[test]
fn missing_range_names_tensor_and_node() {
    let (g, mut r) = small_cbam_graph();
    r.remove("cbam1.logit");
    let err = lower(&g, &r, &LowerOptions::default()).unwrap_err();
    assert_eq!(
        err,
        QuantError::MissingRange {
            node: "Cbam_1".into(),
            tensor: "cbam1.logit".into()
        }
    );
}

#[test]
fn unsupported_ops_are_named() {
    let (mut g, r) = small_cbam_graph();
    g.nodes[2].op = Op::ChannelMax;
    let err = lower(&g, &r, &LowerOptions::default()).unwrap_err();
    assert!(
        matches!(err, QuantError::Unsupported { ref node, .. } if node == "MaxPool_2"),
        "{err}"
    );
    assert!(err.to_string().contains("MaxPool_2"));
}

#[test]
fn grouped_conv_that_is_not_depthwise_is_rejected() {
    let (mut g, r) = small_cbam_graph();
    let mut c = testing::conv(1, 4, 3, 1, crate::ir::Activation::Relu);
    c.groups = 2;
    g.nodes[0].op = Op::Conv(c);
    assert!(matches!(
        lower(&g, &r, &LowerOptions::default()),
        Err(QuantError::Unsupported { .. })
    ));
}

#[test]
fn uniform_normalisation_offset_folds_into_the_first_conv_bias() {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let QOpKind::Conv(conv) = &m.ops[0].kind else {
        panic!()
    };
    let Op::Conv(float) = &g.nodes[0].op else {
        panic!()
    };
    let iq = m.tensors[m.input].q;
    let offset = (iq.zero_point as f32 - (255.0 * 0.286 - 128.0)) * iq.scale;
    for o in 0..4 {
        let wsum: f32 = float.weight[o * 9..o * 9 + 9].iter().sum();
        let want = float.bias[o] + offset * wsum;
        let got = conv.bias[o] as f32 * iq.scale * conv.weight_scales[o];
        assert!(
            (got - want).abs() < iq.scale * conv.weight_scales[o],
            "{o}: {got} vs {want}"
        );
    }
}

#[test]
fn add_uses_tflite_scheme() {
    let q1 = QParams {
        scale: 0.02,
        zero_point: 3,
    };
    let q2 = QParams {
        scale: 0.05,
        zero_point: -7,
    };
    let out = QParams {
        scale: 0.06,
        zero_point: 0,
    };
    let twice = 2.0 * 0.05f64;
    let in1 = Requant::from_real(f64::from(q1.scale) / twice);
    let real = math::multiplier_value(in1.mult, in1.shift);
    assert!((real - 0.2).abs() < 1e-6);
    let o = Requant::from_real(twice / ((1 << 20) as f64 * f64::from(out.scale)));
    assert!(math::multiplier_value(o.mult, o.shift) > 0.0);
    let _ = q2;
}

/// input [1,8,8] -> Conv3x3+ReLU `trunk` [4] -> Conv1x1 `branch` [2] -> `scatter` [4]
/// (weights `scatter_w`) -> Add with `trunk` (in the given order) -> GAP -> Linear 4->3.
fn residual_scatter_graph(scatter_w: Vec<f32>, scatter_first: bool) -> (Graph, Ranges) {
    let tensor = |name: &str, shape: &[usize]| ir::TensorDef {
        name: name.into(),
        shape: shape.to_vec(),
    };
    let node = |name: &str, op: Op, inputs: Vec<usize>, output: usize| Node {
        name: name.into(),
        op,
        inputs,
        output,
    };
    let mut scatter = testing::conv(2, 4, 1, 0, Activation::None);
    scatter.weight = scatter_w;
    scatter.bias = Vec::new();
    let add_inputs = if scatter_first {
        vec![3, 1]
    } else {
        vec![1, 3]
    };
    let graph = Graph {
        tensors: vec![
            tensor("input", &[1, 8, 8]),
            tensor("trunk", &[4, 8, 8]),
            tensor("branch", &[2, 8, 8]),
            tensor("scattered", &[4, 8, 8]),
            tensor("sum", &[4, 8, 8]),
            tensor("gap", &[4]),
            tensor("logits", &[3]),
        ],
        nodes: vec![
            node(
                "trunk",
                Op::Conv(testing::conv(1, 4, 3, 1, Activation::Relu)),
                vec![0],
                1,
            ),
            node(
                "branch",
                Op::Conv(testing::conv(4, 2, 1, 3, Activation::None)),
                vec![1],
                2,
            ),
            node("add/cbam_prune_scatter", Op::Conv(scatter), vec![2], 3),
            node(
                "add",
                Op::Add {
                    act: Activation::Relu,
                },
                add_inputs,
                4,
            ),
            node("gap", Op::GlobalAvgPool, vec![4], 5),
            node(
                "fc",
                Op::Linear(testing::linear(4, 3, 7, Activation::None)),
                vec![5],
                6,
            ),
        ],
        input: 0,
        output: 6,
        meta: ir::ModelMeta::default(),
    };
    let mut ranges = Ranges::new();
    for (name, min, max) in [
        ("input", -1.0, 1.0),
        ("trunk", 0.0, 3.0),
        ("branch", -2.0, 2.0),
        ("scattered", -2.0, 2.0),
        ("sum", 0.0, 4.0),
        ("gap", 0.0, 2.0),
        ("logits", -4.0, 4.0),
    ] {
        ranges.insert(name.into(), Range { min, max });
    }
    (graph, ranges)
}

/// `[4][2]` weights placing branch channels 0, 1 in channels 1, 3.
const SELECT_1_3: [f32; 8] = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];

#[test]
fn a_pruning_scatter_and_its_add_lower_to_one_add_with_a_kept_list() {
    for scatter_first in [false, true] {
        let (g, r) = residual_scatter_graph(SELECT_1_3.to_vec(), scatter_first);
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let codes: Vec<OpCode> = m.ops.iter().map(|o| o.kind.code()).collect();
        assert_eq!(
            codes,
            [
                OpCode::Conv2d,
                OpCode::Conv2d,
                OpCode::Add,
                OpCode::GlobalAvgPool,
                OpCode::FullyConnected
            ],
            "scatter first: {scatter_first}"
        );
        let add = &m.ops[2];
        let (trunk, branch) = (m.ops[0].output, m.ops[1].output);
        assert_eq!(add.inputs, vec![trunk, branch], "the pruned tensor is in2");
        let b = &m.tensors[branch];
        assert_eq!((b.shape, b.full_c), ([8, 8, 2], 4));
        assert_eq!(b.kept, Some(vec![1, 3]));
        // The branch keeps its own range; the scatter's range is not used.
        assert_eq!(b.q, QParams::from_range(-2.0, 2.0));
        assert_eq!(m.macs, 64 * 4 * 9 + 64 * 2 * 4 + 4 * 3);

        let plan = crate::plan::plan(&m).unwrap();
        let blob = crate::blob::write(&m, &plan, &Default::default()).unwrap();
        let core = cbam_core::Model::parse(&blob).unwrap();
        let mut arena = vec![0u8; core.arena_size()];
        let mut out = [0i8; 3];
        core.run(&mut arena, &[5i8; 64], &mut out).unwrap();
    }
}

/// The residual graph's ops when the branch stays a conv: trunk, branch, selection conv,
/// dense add, global average pool, FC.
const UNSCATTERED: [OpCode; 6] = [
    OpCode::Conv2d,
    OpCode::Conv2d,
    OpCode::Conv2d,
    OpCode::Add,
    OpCode::GlobalAvgPool,
    OpCode::FullyConnected,
];

#[test]
fn a_conv_that_is_not_a_pure_selection_stays_a_conv() {
    let mut scaled = SELECT_1_3;
    scaled[2] = 0.5;
    let (g, r) = residual_scatter_graph(scaled.to_vec(), false);
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let codes: Vec<OpCode> = m.ops.iter().map(|o| o.kind.code()).collect();
    assert_eq!(codes, UNSCATTERED);
    assert!(m.tensors.iter().all(|t| t.kept.is_none()));
}

#[test]
fn a_scatter_read_by_more_than_its_add_stays_a_conv() {
    let (mut g, r) = residual_scatter_graph(SELECT_1_3.to_vec(), false);
    // The Add sums the scattered value with itself: two readings, nothing to scatter onto.
    g.nodes[3].inputs = vec![3, 3];
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let codes: Vec<OpCode> = m.ops.iter().map(|o| o.kind.code()).collect();
    assert_eq!(codes, UNSCATTERED);
}
