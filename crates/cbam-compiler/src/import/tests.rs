use std::path::Path;

use super::testing::{int, ints, CbamStyle, OnnxBuilder};
use super::{decode_model, import_model, load_onnx, ImportError};
use crate::ir::{Activation, Graph, Op};

fn import(b: &OnnxBuilder, out: &str) -> Result<Graph, ImportError> {
    import_model(&b.build(out), None)
}

fn ops(g: &Graph) -> Vec<&'static str> {
    g.nodes
        .iter()
        .map(|n| match n.op {
            Op::Conv(_) => "Conv",
            Op::Linear(_) => "Linear",
            Op::BatchNorm(_) => "BatchNorm",
            Op::MaxPool(_) => "MaxPool",
            Op::AvgPool(_) => "AvgPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::ChannelMean => "ChannelMean",
            Op::ChannelMax => "ChannelMax",
            Op::Add { .. } => "Add",
            Op::Mul => "Mul",
            Op::Concat => "Concat",
            Op::Sigmoid => "Sigmoid",
            Op::Relu => "Relu",
            Op::Clip(..) => "Clip",
            Op::Flatten => "Flatten",
            Op::Identity => "Identity",
            Op::Softmax => "Softmax",
            Op::Cbam(_) => "Cbam",
            Op::Pointwise(f) => f.name(),
            Op::Affine { .. } => "Affine",
            Op::Pad(_) => "Pad",
        })
        .collect()
}

#[test]
fn imports_a_small_classifier_with_shapes() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 1, 28, 28], 13);
    let c = b.conv("x", 1, 4, 3, true);
    let r = b.node("Relu", &[&c], vec![]);
    let p = b.node(
        "MaxPool",
        &[&r],
        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
    );
    let f = b.node("Flatten", &[&p], vec![int("axis", 1)]);
    let out = b.gemm(&f, 4 * 14 * 14, 10, true);
    let g = import(&b, &out)?;
    assert_eq!(ops(&g), ["Conv", "Relu", "MaxPool", "Flatten", "Linear"]);
    let shapes: Vec<&[usize]> = g
        .nodes
        .iter()
        .map(|n| g.tensors[n.output].shape.as_slice())
        .collect();
    assert_eq!(
        shapes,
        [&[4, 28, 28][..], &[4, 28, 28], &[4, 14, 14], &[784], &[10]]
    );
    assert_eq!(g.tensors[g.input].shape, [1, 28, 28]);
    assert_eq!(g.tensors[g.output].name, out);
    Ok(())
}

#[test]
fn same_upper_padding_and_strides() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 2, 7, 7], 13);
    let w = b.rand(&[3, 2, 3, 3]);
    let attrs = vec![
        ints("strides", &[2, 2]),
        super::testing::string("auto_pad", "SAME_UPPER"),
    ];
    let out = b.node("Conv", &["x", &w], attrs);
    let g = import(&b, &out)?;
    assert_eq!(g.tensors[g.output].shape, [3, 4, 4]);
    let Op::Conv(conv) = &g.nodes[0].op else {
        panic!("expected a conv")
    };
    // 7 -> 4 with stride 2 and k 3 needs 2 pixels of padding in total, split evenly.
    assert_eq!(conv.pads, [1, 1, 1, 1]);
    assert_eq!(conv.bias, vec![0.0; 3]);
    Ok(())
}

#[test]
fn folds_the_legacy_view_chain() -> Result<(), ImportError> {
    // x.view(x.size(0), -1) in the legacy exporter: Shape -> Gather(0) -> Unsqueeze -> Concat -> Reshape.
    let mut b = OnnxBuilder::new(&[-1, 2, 3, 3], 13);
    let shape = b.node("Shape", &["x"], vec![]);
    let zero = b.init_i64(&[0]);
    let batch = b.node("Gather", &[&shape, &zero], vec![int("axis", 0)]);
    let minus_one = b.init_i64(&[-1]);
    let target = b.node("Concat", &[&batch, &minus_one], vec![int("axis", 0)]);
    let flat = b.node("Reshape", &["x", &target], vec![]);
    let out = b.gemm(&flat, 18, 5, false);
    let g = import(&b, &out)?;
    assert_eq!(ops(&g), ["Flatten", "Linear"]);
    assert_eq!(g.tensors[g.nodes[0].output].shape, [18]);
    Ok(())
}

#[test]
fn reduce_axes_as_attribute_and_as_input() -> Result<(), ImportError> {
    for opset in [13, 17, 18] {
        let mut b = OnnxBuilder::new(&[1, 4, 5, 5], opset);
        let spatial = b.reduce("ReduceMean", "x", &[2, 3], 1);
        let channel = b.reduce("ReduceMax", &spatial, &[1], 0);
        let g = import(&b, &channel)?;
        assert_eq!(ops(&g), ["GlobalAvgPool", "ChannelMax"], "opset {opset}");
        assert_eq!(g.tensors[g.output].shape, [1, 1], "opset {opset}");
    }
    Ok(())
}

#[test]
fn matmul_then_add_is_one_linear() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 3], 17);
    let w = b.init(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let bias = b.init(&[2], vec![0.5, -0.5]);
    let m = b.node("MatMul", &["x", &w], vec![]);
    let out = b.node("Add", &[&m, &bias], vec![]);
    let g = import(&b, &out)?;
    let Op::Linear(l) = &g.nodes[0].op else {
        panic!("expected a linear")
    };
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(l.weight, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    assert_eq!(l.bias, vec![0.5, -0.5]);
    assert_eq!(g.tensors[g.output].name, out);
    Ok(())
}

#[test]
fn clip_bounds_from_attributes_or_inputs() -> Result<(), ImportError> {
    let mut old = OnnxBuilder::new(&[1, 3], 9);
    let out = old.node(
        "Clip",
        &["x"],
        vec![
            super::testing::float("min", 0.0),
            super::testing::float("max", 6.0),
        ],
    );
    assert_eq!(import(&old, &out)?.nodes[0].op, Op::Clip(0.0, 6.0));
    let mut new = OnnxBuilder::new(&[1, 3], 13);
    let lo = new.init(&[], vec![0.0]);
    let out = new.node("Clip", &["x", &lo, ""], vec![]);
    assert_eq!(
        import(&new, &out)?.nodes[0].op,
        Op::Clip(0.0, f32::INFINITY)
    );
    Ok(())
}

#[test]
fn unsupported_op_is_named() {
    let mut b = OnnxBuilder::new(&[1, 3, 4, 4], 13);
    let out = b.node("Erf", &["x"], vec![]);
    match import(&b, &out) {
        Err(ImportError::Unsupported { op_type, node, .. }) => {
            assert_eq!(op_type, "Erf");
            assert_eq!(node, "/Erf_0");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn an_unsupported_op_is_named_before_its_int8_constants_are_decoded() {
    // A QDQ model's zero points are int8, which the importer does not read: the op that
    // takes them is the problem to report.
    let mut b = OnnxBuilder::new(&[1, 3, 4, 4], 13);
    let scale = b.init(&[], vec![0.1]);
    b.inits.push(tract_onnx::pb::TensorProto {
        name: "zp".into(),
        data_type: tract_onnx::pb::tensor_proto::DataType::Int8 as i32,
        raw_data: vec![0],
        ..Default::default()
    });
    let out = b.node("QuantizeLinear", &["x", &scale, "zp"], vec![]);
    match import(&b, &out) {
        Err(ImportError::Unsupported { op_type, .. }) => assert_eq!(op_type, "QuantizeLinear"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn dead_argmax_of_torch_max_is_dropped() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 3, 4, 4], 13);
    let max = b.reduce("ReduceMax", "x", &[1], 1);
    b.node("ArgMax", &["x"], vec![int("axis", 1)]);
    let g = import(&b, &max)?;
    assert_eq!(ops(&g), ["ChannelMax"]);
    Ok(())
}

#[test]
fn batch_dimension_rules() {
    let symbolic = OnnxBuilder::new(&[-1, 3, 4, 4], 18);
    let out = "x".to_string();
    assert!(matches!(import(&symbolic, &out), Ok(g) if g.tensors[g.input].shape == [3, 4, 4]));
    let fixed = OnnxBuilder::new(&[2, 3, 4, 4], 18);
    assert!(matches!(
        import(&fixed, &out),
        Err(ImportError::BadInput { .. })
    ));
    let symbolic_h = OnnxBuilder::new(&[1, 3, -1, 4], 18);
    assert!(matches!(
        import(&symbolic_h, &out),
        Err(ImportError::BadInput { .. })
    ));
}

#[test]
fn missing_input_is_an_error() {
    let mut b = OnnxBuilder::new(&[1, 3, 4, 4], 13);
    let out = b.node("Relu", &["nowhere"], vec![]);
    assert!(
        matches!(import(&b, &out), Err(ImportError::MissingInput { input, .. }) if input == "nowhere")
    );
}

#[test]
fn metadata_is_read() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 3, 4, 4], 13);
    b.meta = vec![
        ("cbam.mean".into(), "0.485, 0.456,0.406".into()),
        ("cbam.std".into(), "0.229,0.224,0.225".into()),
        ("cbam.labels".into(), "cat,dog".into()),
    ];
    let g = import(&b, "x")?;
    assert_eq!(g.meta.mean, vec![0.485, 0.456, 0.406]);
    assert_eq!(g.meta.labels, vec!["cat", "dog"]);
    assert_eq!(g.meta.opset, 13);
    b.meta = vec![("cbam.std".into(), "0.2,abc".into())];
    assert!(matches!(
        import(&b, "x"),
        Err(ImportError::BadMetadata { .. })
    ));
    Ok(())
}

#[test]
fn bad_files_are_told_apart() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let text = dir.path().join("notes.onnx");
    std::fs::write(
        &text,
        "this is not a model, just some text that is long enough",
    )?;
    assert!(
        matches!(load_onnx(&text), Err(ImportError::NotOnnx { .. })),
        "{:?}",
        load_onnx(&text)
    );
    let (b, out) = OnnxBuilder::cbam_classifier(&CbamStyle::default(), 13);
    let bytes = b.bytes(&out);
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
    assert!(
        matches!(load_onnx(&cut), Err(ImportError::Truncated { .. })),
        "{:?}",
        load_onnx(&cut)
    );
    assert!(matches!(
        load_onnx(&dir.path().join("absent.onnx")),
        Err(ImportError::Io { .. })
    ));
    let whole = dir.path().join("whole.onnx");
    std::fs::write(&whole, &bytes)?;
    assert_eq!(load_onnx(&whole)?.meta.source_name, "whole.onnx");
    assert!(decode_model(&bytes, Path::new("mem")).is_ok());
    Ok(())
}

#[test]
fn every_cbam_export_style_imports() -> Result<(), ImportError> {
    use super::testing::PoolStyle::*;
    for pool in [Global, Reduce, FullKernel] {
        for conv_mlp in [true, false] {
            for opset in [13, 18] {
                let style = CbamStyle {
                    pool,
                    conv_mlp,
                    expand: !conv_mlp,
                    squeeze_channel_pool: conv_mlp,
                    spatial_bn: conv_mlp,
                    ..CbamStyle::default()
                };
                let (b, out) = OnnxBuilder::cbam_classifier(&style, opset);
                let g = import(&b, &out)?;
                assert_eq!(g.tensors[g.output].shape, [4], "{style:?}");
                assert!(g.nodes.iter().all(|n| n.op != Op::Identity), "{style:?}");
                assert!(matches!(&g.nodes[0].op, Op::Conv(c) if c.act == Activation::None));
            }
        }
    }
    Ok(())
}

#[test]
fn dynamo_as_strided_after_a_keepdim_mean_is_the_map_itself() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 4, 6, 6], 18);
    let m = b.reduce("ReduceMean", "x", &[-1, -2], 1);
    let minus_one = b.init_i64(&[-1]);
    let flat = b.node("Reshape", &[&m, &minus_one], vec![]);
    let idx = b.init_i64_dims(&[1, 4, 1, 1], &[0, 1, 2, 3]);
    let view = b.node("Gather", &[&flat, &idx], vec![int("axis", 0)]);
    let shape = b.init_i64(&[1, 4]);
    let out = b.node("Reshape", &[&view, &shape], vec![]);
    let g = import(&b, &out)?;
    assert_eq!(ops(&g), ["GlobalAvgPool", "Flatten", "Flatten"]);
    assert_eq!(g.tensors[g.output].shape, [4]);

    // Any other order moves data: refused, and the error says why.
    let mut b = OnnxBuilder::new(&[1, 4, 6, 6], 18);
    let m = b.reduce("ReduceMean", "x", &[-1, -2], 1);
    let minus_one = b.init_i64(&[-1]);
    let flat = b.node("Reshape", &[&m, &minus_one], vec![]);
    let idx = b.init_i64_dims(&[1, 4, 1, 1], &[3, 2, 1, 0]);
    let out = b.node("Gather", &[&flat, &idx], vec![int("axis", 0)]);
    assert!(matches!(
        import(&b, &out),
        Err(ImportError::Unsupported { .. })
    ));
    Ok(())
}

#[test]
fn legacy_zero_pad_chain_folds_into_the_next_conv() -> Result<(), Box<dyn std::error::Error>> {
    // F.pad(x, (0, 1, 0, 1)) as the legacy exporter writes it.
    let mut b = OnnxBuilder::new(&[1, 2, 7, 7], 17);
    let four = b.init_i64(&[4]);
    let zeros = b.node("ConstantOfShape", &[&four], vec![]);
    let zeros = b.node("Cast", &[&zeros], vec![int("to", 7)]);
    let given = b.init_i64(&[0, 1, 0, 1]);
    let all = b.node("Concat", &[&given, &zeros], vec![int("axis", 0)]);
    let pairs = b.init_i64(&[-1, 2]);
    let m = b.node("Reshape", &[&all, &pairs], vec![]);
    let (start, end, axis, step) = (
        b.init_i64(&[-1]),
        b.init_i64(&[-9223372036854775807]),
        b.init_i64(&[0]),
        b.init_i64(&[-1]),
    );
    let rev = b.node("Slice", &[&m, &start, &end, &axis, &step], vec![]);
    let t = b.node("Transpose", &[&rev], vec![ints("perm", &[1, 0])]);
    let minus_one = b.init_i64(&[-1]);
    let pads = b.node("Reshape", &[&t, &minus_one], vec![]);
    let padded = b.node("Pad", &["x", &pads], vec![]);
    let w = b.rand(&[3, 2, 3, 3]);
    let out = b.node("Conv", &[&padded, &w], vec![ints("strides", &[2, 2])]);
    let g = crate::passes::optimize(import(&b, &out)?)?;
    assert_eq!(ops(&g), ["Conv"]);
    let Op::Conv(c) = &g.nodes[0].op else {
        panic!("a conv")
    };
    // [top, left, bottom, right]: the pad went to the bottom and right edges.
    assert_eq!(c.pads, [0, 0, 1, 1]);
    // (7 + 1 - 3) / 2 + 1 = 3 rows and columns.
    assert_eq!(g.tensors[g.output].shape, [3, 3, 3]);
    Ok(())
}

#[test]
fn reflect_and_channel_padding_are_refused() {
    for (mode, pads) in [
        ("reflect", [0, 0, 1, 1, 0, 0, 1, 1]),
        ("constant", [0, 1, 0, 0, 0, 0, 0, 0]),
    ] {
        let mut b = OnnxBuilder::new(&[1, 2, 4, 4], 13);
        let p = b.init_i64(&pads);
        let out = b.node(
            "Pad",
            &["x", &p],
            vec![super::testing::string("mode", mode)],
        );
        assert!(
            matches!(import(&b, &out), Err(ImportError::Unsupported { .. })),
            "{mode} {pads:?}"
        );
    }
}

#[test]
fn activations_without_int8_arithmetic_are_pointwise_ops() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 3, 4, 4], 13);
    let a = b.node("HardSwish", &["x"], vec![]);
    let h = b.node(
        "HardSigmoid",
        &[&a],
        vec![super::testing::float("alpha", 1.0 / 6.0)],
    );
    let l = b.node("LeakyRelu", &[&h], vec![]);
    let out = b.node("Tanh", &[&l], vec![]);
    let g = import(&b, &out)?;
    assert_eq!(ops(&g), ["HardSwish", "HardSigmoid", "LeakyRelu", "Tanh"]);
    assert_eq!(
        g.nodes[1].op,
        Op::Pointwise(crate::ir::Pointwise::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5
        })
    );
    Ok(())
}

#[test]
fn arithmetic_with_constants_is_an_affine_map() -> Result<(), ImportError> {
    let mut b = OnnxBuilder::new(&[1, 3, 4, 4], 13);
    let half = b.init(&[], vec![0.5]);
    let m = b.node("Mul", &["x", &half], vec![]);
    let six = b.init(&[1], vec![6.0]);
    let d = b.node("Div", &[&m, &six], vec![]);
    let per_c = b.init(&[3, 1, 1], vec![1.0, 2.0, 3.0]);
    let out = b.node("Sub", &[&per_c, &d], vec![]);
    let g = import(&b, &out)?;
    assert_eq!(ops(&g), ["Affine", "Affine", "Affine"]);
    assert_eq!(
        g.nodes[2].op,
        Op::Affine {
            scale: vec![-1.0; 3],
            bias: vec![1.0, 2.0, 3.0]
        }
    );
    let per_pixel = b.init(&[4, 4], vec![1.0; 16]);
    let out = b.node("Mul", &["x", &per_pixel], vec![]);
    assert!(matches!(
        import(&b, &out),
        Err(ImportError::Unsupported { .. })
    ));
    let zero = b.init(&[], vec![0.0]);
    let out = b.node("Div", &["x", &zero], vec![]);
    assert!(matches!(import(&b, &out), Err(ImportError::BadNode { .. })));
    Ok(())
}

// Hostile models: each is an error naming the problem, never a panic or a huge allocation.

fn bad(b: &OnnxBuilder, out: &str) -> String {
    match import(b, out) {
        Ok(_) => panic!("the hostile model was imported"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_weight_whose_element_count_overflows_is_refused() {
    for dims in [
        [1i64 << 62, 1, 2, 2],
        [1 << 31, 1 << 31, 1 << 2, 1],
        [4, 1, 0, 3],
    ] {
        let mut b = OnnxBuilder::new(&[1, 1, 8, 8], 13);
        let w = b.init(&dims, vec![]);
        let out = b.node("Conv", &["x", &w], vec![]);
        let msg = bad(&b, &out);
        let named = msg.contains("w0") || msg.contains("kernel");
        assert!(named, "{dims:?}: {msg}");
    }
}

#[test]
fn a_gemm_weight_whose_element_count_overflows_is_refused() {
    for dims in [[1i64 << 62, 4], [4, 1 << 62]] {
        let mut b = OnnxBuilder::new(&[1, 4], 13);
        let w = b.init(&dims, vec![]);
        let out = b.node("Gemm", &["x", &w], vec![int("transB", 1)]);
        let msg = bad(&b, &out);
        assert!(
            msg.contains("w0") && msg.contains("2^64"),
            "{dims:?}: {msg}"
        );
    }
}

#[test]
fn a_concat_of_vectors_after_global_pool_and_reshape_is_refused() {
    // One channel: the pooled [1, 1, 1, 1] reshaped to [-1] is the rank-1 [1].
    let mut b = OnnxBuilder::new(&[1, 1, 4, 4], 13);
    let g = b.node("GlobalAveragePool", &["x"], vec![]);
    let shape = b.init_i64(&[-1]);
    let r = b.node("Reshape", &[&g, &shape], vec![]);
    let out = b.node("Concat", &[&r, &r], vec![int("axis", 1)]);
    let msg = bad(&b, &out);
    assert!(msg.contains("Concat"), "{msg}");
}

#[test]
fn absurd_pooling_kernels_strides_and_pads_are_refused() {
    for attrs in [
        vec![ints("kernel_shape", &[1 << 40, 1 << 40])],
        vec![
            ints("kernel_shape", &[2, 2]),
            ints("pads", &[i64::MAX, 0, 0, 0]),
        ],
        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[0, 1])],
        vec![ints("kernel_shape", &[100, 100])],
    ] {
        let mut b = OnnxBuilder::new(&[1, 1, 8, 8], 13);
        let out = b.node("MaxPool", &["x"], attrs.clone());
        bad(&b, &out);
    }
}

#[test]
fn nan_and_infinite_weights_are_refused() {
    for (w, bias) in [
        (vec![f32::NAN, 1.0], vec![0.0, 0.0]),
        (vec![1.0, 1.0], vec![0.0, f32::INFINITY]),
    ] {
        let mut b = OnnxBuilder::new(&[1, 1, 2, 2], 13);
        let w = b.init(&[2, 1, 1, 1], w);
        let bias = b.init(&[2], bias);
        let out = b.node("Conv", &["x", &w, &bias], vec![]);
        let msg = bad(&b, &out);
        assert!(msg.contains("damaged"), "{msg}");
    }
    let mut b = OnnxBuilder::new(&[1, 2, 2, 2], 13);
    let p = b.init(&[2], vec![1.0, 1.0]);
    let var = b.init(&[2], vec![1.0, -1.0]);
    let out = b.node("BatchNormalization", &["x", &p, &p, &p, &var], vec![]);
    assert!(bad(&b, &out).contains("variance"));
}

#[test]
fn a_nan_mean_or_a_denormal_std_in_the_metadata_is_refused() {
    for (key, value) in [
        ("cbam.mean", "NaN"),
        ("cbam.std", "1e-40"),
        ("cbam.std", "0"),
    ] {
        let mut b = OnnxBuilder::new(&[1, 1, 2, 2], 13);
        b.meta.push((key.into(), value.into()));
        let out = b.node("Relu", &["x"], vec![]);
        let msg = bad(&b, &out);
        assert!(msg.contains("cbam.mean/cbam.std"), "{key}={value}: {msg}");
    }
}

#[test]
fn an_input_past_the_tensor_cap_is_refused() {
    let mut b = OnnxBuilder::new(&[1, 1, 100_000, 100_000], 13);
    let out = b.node("Relu", &["x"], vec![]);
    assert!(bad(&b, &out).contains("values"));
}
