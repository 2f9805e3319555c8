use std::collections::HashSet;

use super::*;
use crate::import::testing::{int, CbamStyle, OnnxBuilder, PoolStyle};
use crate::import::{import_model, ImportError};
use crate::ir::{Activation, Graph, Op, SpatialOrder};

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Pass(#[from] PassError),
}

fn import(b: &OnnxBuilder, out: &str) -> Result<Graph, TestError> {
    Ok(import_model(&b.build(out), None)?)
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| pred(&n.op)).count()
}

fn blocks(g: &Graph) -> Vec<&crate::ir::Cbam> {
    g.nodes
        .iter()
        .filter_map(|n| {
            if let Op::Cbam(c) = &n.op {
                Some(c.as_ref())
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn identity_and_vector_reshapes_go_real_flatten_stays() -> Result<(), TestError> {
    let mut b = OnnxBuilder::new(&[1, 2, 3, 3], 13);
    let id = b.node("Identity", &["x"], vec![]);
    let d = b.node("Dropout", &[&id], vec![]);
    let flat = b.node("Flatten", &[&d], vec![int("axis", 1)]);
    let g = remove_identities(import(&b, &flat)?)?;
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].op, Op::Flatten);
    assert_eq!(g.nodes[0].inputs, vec![g.input]);

    let mut b = OnnxBuilder::new(&[1, 2, 3, 3], 13);
    let p = b.node("GlobalAveragePool", &["x"], vec![]);
    let f = b.node("Flatten", &[&p], vec![int("axis", 1)]);
    let out = b.gemm(&f, 2, 3, true);
    let g = remove_identities(import(&b, &out)?)?;
    assert_eq!(count(&g, |op| *op == Op::Flatten), 0);
    // The pool now writes the flattened value directly, under that value's name and shape.
    assert_eq!(g.tensors[g.nodes[0].output].name, f);
    assert_eq!(g.tensors[g.nodes[0].output].shape, [2]);
    Ok(())
}

#[test]
fn batchnorm_folds_into_conv_exactly() -> Result<(), TestError> {
    let mut b = OnnxBuilder::new(&[1, 1, 3, 3], 13);
    let w = b.init(&[2, 1, 1, 1], vec![2.0, -1.0]);
    let bias = b.init(&[2], vec![1.0, 0.0]);
    let c = b.node("Conv", &["x", &w, &bias], vec![]);
    let scale = b.init(&[2], vec![3.0, 1.0]);
    let shift = b.init(&[2], vec![0.5, 0.0]);
    let mean = b.init(&[2], vec![1.0, 2.0]);
    let var = b.init(&[2], vec![4.0, 1.0]);
    let out = b.node(
        "BatchNormalization",
        &[&c, &scale, &shift, &mean, &var],
        vec![crate::import::testing::float("epsilon", 0.0)],
    );
    let g = fold_batchnorm(import(&b, &out)?)?;
    assert_eq!(g.nodes.len(), 1);
    let Op::Conv(conv) = &g.nodes[0].op else {
        panic!("expected a conv")
    };
    // channel 0: k = 3/2, w = 2k = 3, b = (1 - 1) * k + 0.5; channel 1: k = 1, b = -2.
    assert_eq!(conv.weight, vec![3.0, -1.0]);
    assert_eq!(conv.bias, vec![0.5, -2.0]);
    assert_eq!(g.tensors[g.nodes[0].output].name, out);
    Ok(())
}

#[test]
fn batchnorm_after_a_shared_conv_output_stays() -> Result<(), TestError> {
    let mut b = OnnxBuilder::new(&[1, 2, 3, 3], 13);
    let c = b.conv("x", 2, 2, 3, true);
    let bn = b.batch_norm(&c, 2);
    let out = b.node("Add", &[&c, &bn], vec![]);
    let g = fold_batchnorm(import(&b, &out)?)?;
    assert_eq!(count(&g, |op| matches!(op, Op::BatchNorm(_))), 1);
    Ok(())
}

#[test]
fn relu_and_clip_fuse_only_when_sole_reader() -> Result<(), TestError> {
    let mut b = OnnxBuilder::new(&[1, 2, 3, 3], 13);
    let c = b.conv("x", 2, 2, 3, true);
    let r = b.node("Relu", &[&c], vec![]);
    let c2 = b.conv(&r, 2, 2, 3, true);
    let r2 = b.node("Relu", &[&c2], vec![]);
    let out = b.node("Add", &[&c2, &r2], vec![]);
    let g = fuse_activations(import(&b, &out)?)?;
    let acts: Vec<Activation> = g
        .nodes
        .iter()
        .filter_map(|n| {
            if let Op::Conv(c) = &n.op {
                Some(c.act)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(acts, [Activation::Relu, Activation::None]);
    assert_eq!(count(&g, |op| *op == Op::Relu), 1);
    Ok(())
}

#[test]
fn pointwise_conv_on_a_pooled_vector_becomes_linear() -> Result<(), TestError> {
    let mut b = OnnxBuilder::new(&[1, 4, 5, 5], 13);
    let p = b.node("GlobalAveragePool", &["x"], vec![]);
    let v = b.conv(&p, 4, 3, 1, true);
    let out = b.conv(&v, 3, 3, 1, true);
    let spatial = b.conv("x", 4, 3, 1, true);
    let out = b.node("Add", &[&spatial, &out], vec![]);
    let g = conv1x1_to_linear(import(&b, &out)?)?;
    assert_eq!(count(&g, |op| matches!(op, Op::Linear(_))), 2);
    // The 1x1 conv on the 5x5 map is a real convolution.
    assert_eq!(count(&g, |op| matches!(op, Op::Conv(_))), 1);
    Ok(())
}

fn all_styles() -> Vec<(CbamStyle, i64)> {
    let mut out = Vec::new();
    for pool in [PoolStyle::Global, PoolStyle::Reduce, PoolStyle::FullKernel] {
        for conv_mlp in [true, false] {
            for (opset, flip) in [(13, false), (17, true), (18, false), (18, true)] {
                let style = CbamStyle {
                    pool,
                    conv_mlp,
                    mlp_bias: !flip,
                    shared: flip,
                    max_first: flip,
                    spatial_bn: flip,
                    k: if flip { 3 } else { 7 },
                    squeeze_channel_pool: !flip,
                    expand: flip && !conv_mlp,
                };
                out.push((style, opset));
            }
        }
    }
    out
}

#[test]
fn every_export_style_becomes_one_cbam() -> Result<(), TestError> {
    for (style, opset) in all_styles() {
        let (b, out) = OnnxBuilder::cbam_classifier(&style, opset);
        let g = optimize(import(&b, &out)?)?;
        let found = blocks(&g);
        assert_eq!(found.len(), 1, "{style:?} opset {opset}: {:#?}", g.nodes);
        let cbam = found[0];
        assert_eq!(
            (cbam.channels, cbam.hidden, cbam.spatial.kernel),
            (8, 2, [style.k as usize; 2]),
            "{style:?}"
        );
        let order = if style.max_first {
            SpatialOrder::MaxMean
        } else {
            SpatialOrder::MeanMax
        };
        assert_eq!(cbam.order, order);
        assert_eq!(cbam.mlp1.act, Activation::Relu);
        // Conv(relu) -> Cbam -> GlobalAvgPool -> Linear: nothing else is left.
        assert_eq!(g.nodes.len(), 4, "{style:?}: {:#?}", g.nodes);
        // Every value the block names exists in the ONNX graph, so tract can output it.
        let onnx_values: HashSet<String> = b.nodes.iter().flat_map(|n| n.output.clone()).collect();
        for name in cbam.values.all() {
            assert!(
                onnx_values.contains(name),
                "{name:?} is not an ONNX value ({style:?})"
            );
        }
        assert!(g.tensors.iter().all(|t| !t.name.is_empty()));
    }
    Ok(())
}

#[test]
fn cbam_on_a_residual_branch() -> Result<(), TestError> {
    let mut b = OnnxBuilder::new(&[1, 4, 6, 6], 13);
    let c = b.conv("x", 4, 4, 3, false);
    let c = b.batch_norm(&c, 4);
    let a = b.cbam(
        &c,
        4,
        2,
        [6, 6],
        &CbamStyle {
            max_first: true,
            ..CbamStyle::default()
        },
    );
    let sum = b.node("Add", &[&a, "x"], vec![]);
    let out = b.node("Relu", &[&sum], vec![]);
    let g = optimize(import(&b, &out)?)?;
    assert_eq!(blocks(&g).len(), 1);
    assert!(matches!(
        g.nodes.last().map(|n| &n.op),
        Some(Op::Add {
            act: Activation::Relu
        })
    ));
    assert_eq!(g.nodes.len(), 3);
    Ok(())
}

#[test]
fn different_mlps_are_not_a_cbam() -> Result<(), TestError> {
    let (mut b, out) = OnnxBuilder::cbam_classifier(
        &CbamStyle {
            shared: false,
            ..CbamStyle::default()
        },
        13,
    );
    // Perturb one copy of the second MLP layer: the two branches no longer share weights.
    let copy = b
        .inits
        .iter_mut()
        .rev()
        .find(|t| t.dims == [8, 2, 1, 1])
        .map(|t| &mut t.raw_data);
    if let Some(raw) = copy {
        raw[0] ^= 0x40;
    }
    let g = optimize(import(&b, &out)?)?;
    assert!(blocks(&g).is_empty());
    Ok(())
}

#[test]
fn a_model_without_cbam_passes_through() -> Result<(), TestError> {
    let mut b = OnnxBuilder::new(&[1, 1, 8, 8], 13);
    let c = b.conv("x", 1, 4, 3, true);
    let c = b.node("Relu", &[&c], vec![]);
    let f = b.node("Flatten", &[&c], vec![int("axis", 1)]);
    let out = b.gemm(&f, 256, 10, true);
    let g = optimize(import(&b, &out)?)?;
    assert!(blocks(&g).is_empty());
    assert_eq!(g.nodes.len(), 3);
    assert_eq!(g.tensors.len(), 4);
    Ok(())
}

#[test]
fn malformed_graphs_are_rejected() -> Result<(), TestError> {
    let (b, out) = OnnxBuilder::cbam_classifier(&CbamStyle::default(), 13);
    let mut g = import(&b, &out)?;
    g.output = g.tensors.len() + 3;
    assert!(matches!(optimize(g), Err(PassError::Malformed { .. })));
    Ok(())
}

/// A chain of `blocks` x (Conv 1x1, BatchNorm, Relu, Identity) and, every 8th block, a
/// CBAM block: every pass has something to fold, fuse or match all along it.
fn long_chain(blocks: usize) -> OnnxBuilder {
    let mut b = OnnxBuilder::new(&[1, 4, 2, 2], 13);
    let mut x = "x".to_string();
    let style = CbamStyle::default();
    for i in 0..blocks {
        let c = b.conv(&x, 4, 4, 1, true);
        let n = b.batch_norm(&c, 4);
        let r = b.node("Relu", &[&n], vec![]);
        x = b.node("Identity", &[&r], vec![]);
        if i % 8 == 7 {
            x = b.cbam(&x, 4, 2, [2, 2], &style);
        }
    }
    b
}

#[test]
fn import_and_passes_are_linear_in_the_node_count() -> Result<(), TestError> {
    // Quadratic passes took minutes on 200k nodes; linear ones take about a second.
    let b = long_chain(50_000);
    let out = b
        .nodes
        .last()
        .and_then(|n| n.output.first().cloned())
        .unwrap_or_default();
    let start = std::time::Instant::now();
    let g = optimize(import(&b, &out)?)?;
    let elapsed = start.elapsed();
    assert!(b.nodes.len() > 200_000, "{}", b.nodes.len());
    assert_eq!(count(&g, |op| matches!(op, Op::Cbam(_))), 50_000 / 8);
    assert_eq!(
        count(&g, |op| matches!(
            op,
            Op::BatchNorm(_) | Op::Relu | Op::Identity
        )),
        0
    );
    assert!(elapsed.as_secs() < 30, "optimising took {elapsed:?}");
    Ok(())
}

#[test]
fn a_batchnorm_whose_fold_overflows_f32_is_refused() -> Result<(), TestError> {
    // Finite parameters, but gamma / sqrt(var + eps) = 1e30 / 1e-15 is past f32.
    let mut b = OnnxBuilder::new(&[1, 1, 2, 2], 13);
    let conv = b.conv("x", 1, 1, 1, true);
    let gamma = b.init(&[1], vec![1e30]);
    let zero = b.init(&[1], vec![0.0]);
    let eps = crate::import::testing::float("epsilon", 1e-30);
    let bn = b.node(
        "BatchNormalization",
        &[&conv, &gamma, &zero, &zero, &zero],
        vec![eps],
    );
    match optimize(import(&b, &bn)?) {
        Err(PassError::BadNode { why, .. }) => assert!(why.contains("variance"), "{why}"),
        other => panic!("expected BadNode, got {other:?}"),
    }
    Ok(())
}
