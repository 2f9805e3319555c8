use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto, OperatorSetIdProto};

use super::compare::compare;
use super::emit::Emitter;
use super::exact::{rounded_mean, table_lookup, Sum};
use super::proto::value_info;
use super::*;
use crate::data::Sample;
use crate::float_run::FloatModel;
use crate::ir::{Batch, ModelMeta};
use crate::quant::{lower, testing::small_cbam_graph, LowerOptions};
use cbam_core::OpCode;

/// Pixels spread over 0..=255 and the float input the model's normalisation makes of them.
fn samples(n: u64, meta: &ModelMeta) -> Vec<Sample> {
    (0..n)
        .map(|seed| {
            let pixels: Vec<u8> = crate::quant::testing::weights(64, seed + 100, 1.0)
                .iter()
                .map(|v| ((v + 1.0) * 127.5) as u8)
                .collect();
            let input = pixels
                .iter()
                .map(|p| (f32::from(*p) / 255.0 - meta.mean[0]) / meta.std[0])
                .collect();
            Sample {
                input,
                pixels: Some(pixels),
                label: None,
            }
        })
        .collect()
}

/// The exact-form QDQ model of `graph` lowered with `ranges` against its blob in the
/// core, layer by layer, on `n` samples.
fn lowered_vs_core(graph: (Graph, crate::calib::Ranges), n: u64) -> compare::Agreement {
    form_vs_core(graph, QdqForm::Exact, n)
}

fn form_vs_core(
    (g, r): (Graph, crate::calib::Ranges),
    form: QdqForm,
    n: u64,
) -> compare::Agreement {
    let (qdq, blob) = qdq_and_blob(&g, &r, form);
    compare(&qdq, &blob, &samples(n, &g.meta)).unwrap()
}

/// The QDQ model in `form` and the blob compiled alongside it.
fn qdq_and_blob(g: &Graph, r: &crate::calib::Ranges, form: QdqForm) -> (Vec<u8>, Vec<u8>) {
    let m = lower(g, r, &LowerOptions::default()).unwrap();
    let qdq = write(g, &m, form).unwrap();
    let plan = crate::plan::plan(&m).unwrap();
    (
        qdq,
        crate::blob::write(&m, &plan, &Default::default()).unwrap(),
    )
}

#[test]
fn every_layer_matches_the_core_exactly_or_within_one_step() {
    let a = lowered_vs_core(small_cbam_graph(), 16);
    assert_eq!(a.samples, 16);
    // The affine in front of the QuantizeLinear reproduces `pixel - 128` (the zero point
    // 255 * 0.286 - 128 is not an integer, so without it inputs would differ).
    assert_eq!(a.input.differing, 0, "{a}");
    // conv, CBAM output, channel and spatial attention, max pool, FC.
    assert_eq!(a.layers.len(), 6, "{a}");
    for l in &a.layers {
        assert_eq!(l.isolated.samples, 16, "{a}");
        // Conv and FC keep the float-op QDQ pattern (one rounding, half to even); the
        // CBAM block and the pooling are written in the core's integer arithmetic.
        let bound = match l.code {
            OpCode::Conv2d | OpCode::FullyConnected => 1,
            _ => 0,
        };
        assert!(l.isolated.max <= bound, "{a}");
    }
    assert!(a.logits().max <= 1, "{a}");
}

#[test]
fn channel_pools_match_the_core_exactly() {
    let a = lowered_vs_core(crate::quant::testing::spatial_attention_graph(), 16);
    let pools: Vec<_> = a
        .layers
        .iter()
        .filter(|l| l.code == OpCode::ChannelPool)
        .collect();
    // The fused [max; mean] map and the light attention's mean and max.
    assert_eq!(pools.len(), 3, "{a}");
    for l in pools {
        assert_eq!(l.isolated.samples, 16, "{a}");
        assert_eq!(l.isolated.max, 0, "{a}");
    }
    assert!(a.logits().max <= 2, "{a}");
}

#[test]
fn a_gate_vector_scales_a_map_per_channel_in_the_qdq_model() {
    // Without the gate reshaped to [1, c, 1, 1], [1, c] broadcasts against the map's
    // width and tract refuses the model.
    let a = lowered_vs_core(crate::quant::testing::channel_gate_graph(), 8);
    let mul = a.layers.iter().find(|l| l.code == OpCode::Mul).unwrap();
    assert!(mul.isolated.max <= 1, "{a}");
    assert!(a.logits().max <= 2, "{a}");
}

#[test]
fn the_float_models_normalisation_and_labels_survive_into_the_qdq_model() {
    let (mut g, r) = small_cbam_graph();
    g.meta.mean = vec![0.286, 0.5];
    g.meta.std = vec![0.353, 0.25];
    g.meta.labels = vec!["a".into(), "b".into(), "c".into()];
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let proto = ModelProto::decode(write(&g, &m, QdqForm::Exact).unwrap().as_slice()).unwrap();
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
    // One op-map line per core op.
    assert_eq!(prop(compare::CORE_OPS_KEY).lines().count(), m.ops.len());

    g.meta = ModelMeta::default();
    let proto = ModelProto::decode(write(&g, &m, QdqForm::Exact).unwrap().as_slice()).unwrap();
    let keys: Vec<&str> = proto
        .metadata_props
        .iter()
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(keys, [compare::CORE_OPS_KEY]);
}

#[test]
fn a_model_without_its_lowering_is_an_error() {
    let (g, r) = small_cbam_graph();
    let mut m = lower(&g, &r, &LowerOptions::default()).unwrap();
    m.ops.retain(|op| op.node != "Gemm_4");
    assert!(matches!(
        write(&g, &m, QdqForm::Exact),
        Err(QdqError::Unquantized { node, .. }) if node == "Gemm_4"
    ));
}

/// Runs the exact-arithmetic pieces alone in tract on a `[1, 1, 2, 4]` input of levels.
fn run_piece(build: impl FnOnce(&mut Emitter<'_>, &str), input: &[f32]) -> Vec<f32> {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let mut e = Emitter::new(&g, &m, QdqForm::Exact);
    let unit = QParams {
        scale: 1.0,
        zero_point: 0,
    };
    let levels = e.levels_of("x", unit);
    build(&mut e, &levels);
    let proto = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        graph: Some(GraphProto {
            node: e.nodes,
            initializer: e.inits,
            input: vec![value_info("x", Some(&[1, 1, 2, 4]))],
            output: vec![value_info("y", None)],
            ..Default::default()
        }),
        ..Default::default()
    };
    FloatModel::from_proto(&proto, None)
        .unwrap()
        .run(input)
        .unwrap()
}

#[test]
fn means_round_half_away_from_zero_as_the_core_does() {
    // Rows sum (relative to zero point 3) to 10 and -10: 2.5 -> 3, -2.5 -> -3, where
    // QuantizeLinear's half-to-even would give 2 and -2.
    let q = QParams {
        scale: 0.5,
        zero_point: 3,
    };
    let input = [4.0, 5.0, 6.0, 7.0, 2.0, 1.0, 0.0, -1.0];
    let y = run_piece(
        |e, levels| rounded_mean(e, levels, q, Sum::Axes(&[3], 4), "y"),
        &input,
    );
    assert_eq!(y, vec![0.5 * 3.0, -0.5 * 3.0]);
    // 2x3 windows, stride 3, two padding columns on the right: the second window has
    // two in-bounds taps. Centred rows [1, 2, 3, 4] and [-1; 4]: 3/6 = 0.5 -> 1 (half to
    // even would give 0), 3/2 = 1.5 -> 2.
    let windows = Sum::Windows {
        channels: 1,
        kernel: [2, 3],
        stride: [2, 3],
        pads: [0, 0, 0, 2],
        input: (2, 4),
        output: (1, 2),
    };
    let input = [4.0, 5.0, 6.0, 7.0, 2.0, 2.0, 2.0, 2.0];
    let y = run_piece(|e, levels| rounded_mean(e, levels, q, windows, "y"), &input);
    assert_eq!(y, vec![0.5, 1.0]);
}

#[test]
fn table_lookup_indexes_by_level_plus_128() {
    let mut table = [0i8; 256];
    for (i, t) in table.iter_mut().enumerate() {
        *t = (255 - i) as u8 as i8;
    }
    let out = QParams {
        scale: 1.0,
        zero_point: 0,
    };
    let input = [-128.0, -1.0, 0.0, 127.0, 1.0, 2.0, -2.0, 5.0];
    let lookup = |e: &mut Emitter<'_>, levels: &str| {
        table_lookup(e, levels, &table, out, "y");
    };
    let y = run_piece(lookup, &input);
    let expected: Vec<f32> = input
        .iter()
        .map(|v| f32::from(table[(*v as i32 + 128) as usize]))
        .collect();
    assert_eq!(y, expected);
}

/// Op types of the encoded model.
fn op_types(qdq: &[u8]) -> Vec<String> {
    let proto = ModelProto::decode(qdq).unwrap();
    proto
        .graph
        .unwrap()
        .node
        .into_iter()
        .map(|n| n.op_type)
        .collect()
}

#[test]
fn the_standard_form_is_ordinary_ops_between_q_and_dq_and_stays_near_the_core() {
    let (g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let ops = op_types(&write(&g, &m, QdqForm::StandardS8).unwrap());
    // No integer emulation: no casts, floors, table gathers or float64 arithmetic.
    for op in ["Cast", "Floor", "Gather", "Sign"] {
        assert!(!ops.iter().any(|o| o == op), "{op} in {ops:?}");
    }
    for op in [
        "Sigmoid",
        "GlobalAveragePool",
        "ReduceMean",
        "ReduceMax",
        "Mul",
    ] {
        assert!(ops.iter().any(|o| o == op), "no {op} in {ops:?}");
    }
    let exact = op_types(&write(&g, &m, QdqForm::Exact).unwrap());
    assert!(exact.iter().any(|o| o == "Gather"), "{exact:?}");

    // Every op rounds once, half to even: within a couple of steps of the core per layer
    // on the core's own inputs (steep sigmoids widen a step of their input), and the
    // logits close.
    let a = form_vs_core((g.clone(), r.clone()), QdqForm::StandardS8, 16);
    assert_eq!(a.input.differing, 0, "{a}");
    for l in &a.layers {
        assert_eq!(l.isolated.samples, 16, "{a}");
        assert!(l.isolated.max <= 3, "{a}");
    }
    assert!(a.logits().max <= 3, "{a}");
    // The uint8 form holds the same values; the op-by-op comparison says it reads only int8.
    let (u8_model, blob) = qdq_and_blob(&g, &r, QdqForm::StandardU8);
    assert!(matches!(
        compare(&u8_model, &blob, &samples(1, &g.meta)),
        Err(compare::CompareError::Uint8Activations)
    ));
}

/// Input and output declarations of the encoded model: `(name, dims)` with a symbolic
/// axis as its name.
fn declared(qdq: &[u8]) -> Vec<Vec<String>> {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto};
    let graph = ModelProto::decode(qdq).unwrap().graph.unwrap();
    graph
        .input
        .iter()
        .chain(&graph.output)
        .map(|v| {
            let Some(type_proto::Value::TensorType(t)) =
                v.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                panic!("{} is not a tensor", v.name)
            };
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(Value::DimValue(v)) => v.to_string(),
                            Some(Value::DimParam(p)) => p.clone(),
                            None => "?".into(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn the_batch_axis_is_kept_and_the_output_declared() {
    let (mut g, r) = small_cbam_graph();
    let m = lower(&g, &r, &LowerOptions::default()).unwrap();
    let classes = g.tensors[g.output].shape[0].to_string();
    let input: Vec<String> = g.tensors[g.input]
        .shape
        .iter()
        .map(usize::to_string)
        .collect();
    for form in [QdqForm::StandardS8, QdqForm::StandardU8, QdqForm::Exact] {
        g.meta.batch = Batch::Symbolic("N".into());
        let qdq = write(&g, &m, form).unwrap();
        let with = |batch: &str, rest: &[String]| -> Vec<String> {
            std::iter::once(batch.to_string())
                .chain(rest.iter().cloned())
                .collect()
        };
        assert_eq!(
            declared(&qdq),
            [with("N", &input), with("N", std::slice::from_ref(&classes))],
            "{form:?}"
        );
        // tract runs it (at batch 1) as it runs the float model.
        let samples = samples(1, &g.meta);
        let logits = FloatModel::from_proto(&ModelProto::decode(qdq.as_slice()).unwrap(), None)
            .unwrap()
            .run(&samples[0].input)
            .unwrap();
        assert_eq!(logits.len().to_string(), classes);

        g.meta.batch = Batch::One;
        let qdq = write(&g, &m, form).unwrap();
        assert_eq!(
            declared(&qdq),
            [with("1", &input), with("1", std::slice::from_ref(&classes))],
            "{form:?}"
        );
    }
}
