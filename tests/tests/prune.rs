//! `cbam prune` end to end on the example models: the pruned float ONNX against the
//! original with the same channels zeroed (attended and internal channels), residual-coupled
//! pruning, the least-squares reconstruction against the plain cut, the pruned residual
//! model quantized to a blob whose ADDs scatter the kept channels, bad input, and RGB zoo
//! models whose attention only the compiler's recognition finds (the official CBAM code,
//! timm's SE and effective SE).

use std::path::{Path, PathBuf};

use cbam_compiler::float_run::FloatModel;
use cbam_compiler::passes::{self, GateKind};
use cbam_compiler::prune::{
    self, Analysis, Criterion, GroupKind, MinChannels, PruneError, PruneOptions,
    ReconstructOptions, Scope, Selection, SurgeryOptions, SCATTER_SUFFIX,
};
use cbam_e2e::{fidelity, paths};

fn model_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("models")
        .join(name)
}

/// The first `n` calibration images, normalised as the models expect.
fn calib(n: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(model_path("data/calib256_images.u8")).expect("calibration images");
    bytes
        .chunks_exact(28 * 28)
        .take(n)
        .map(|img| {
            img.iter()
                .map(|&p| (p as f32 / 255.0 - 0.286) / 0.353)
                .collect()
        })
        .collect()
}

/// Plain cuts (no reconstruction) of the CBAM feature maps, the residual-coupled channels.
fn options(selection: Selection, compensate: bool) -> PruneOptions {
    PruneOptions {
        criterion: Criterion::Attention,
        selection,
        min_channels: MinChannels::default(),
        surgery: SurgeryOptions {
            compensate_spatial_mean: compensate,
        },
        scope: Scope::Attended,
        reconstruct: None,
    }
}

fn ratio(r: f64) -> Selection {
    Selection::Ratio {
        ratio: r,
        global: false,
    }
}

/// Largest |a - b| over the logits of `samples`, relative to the largest |logit|.
fn max_rel_diff(a: &FloatModel, b: &FloatModel, samples: &[Vec<f32>]) -> f32 {
    let (mut diff, mut scale) = (0f32, 1e-6f32);
    for x in samples {
        let (ya, yb) = (a.run(x).expect("run a"), b.run(x).expect("run b"));
        for (p, q) in ya.iter().zip(&yb) {
            diff = diff.max((p - q).abs());
            scale = scale.max(p.abs());
        }
    }
    diff / scale
}

/// The original with every pruned block's removed channels zeroed at their producer.
fn zeroed_reference(analysis: &Analysis, removed: &[Vec<usize>]) -> prune::onnx_pb::ModelProto {
    let mut reference = analysis.proto.clone();
    for (group, cut) in analysis.groups.iter().zip(removed) {
        reference = prune::zero_channels(&reference, &group.feature, cut).expect("zeroing");
    }
    reference
}

/// Leaves the pruned model in Cargo's per-test scratch dir, for loading it in onnxruntime.
fn keep_for_inspection(model: &prune::onnx_pb::ModelProto, name: &str) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    cbam_compiler::write_atomic(&path, &prune::encode_proto(model)).expect("write pruned model");
}

fn pruned_vs_zeroed(
    model: &str,
    compensate: bool,
) -> (f32, Analysis, prune::onnx_pb::ModelProto, Vec<Vec<usize>>) {
    let mut opts = options(ratio(0.5), compensate);
    opts.scope = Scope::Attended;
    pruned_vs_zeroed_with(model, opts)
}

fn pruned_vs_zeroed_with(
    model: &str,
    opts: PruneOptions,
) -> (f32, Analysis, prune::onnx_pb::ModelProto, Vec<Vec<usize>>) {
    let proto = prune::load_proto(&model_path(model)).expect("model loads");
    let samples = calib(16);
    let analysis = prune::analyze(&proto, &samples, Criterion::Attention).expect("analysis");
    let removed = prune::select_channels(&analysis, &opts).expect("selection");
    let (pruned, _) = prune::apply_cuts(&analysis, &removed, opts.surgery).expect("cuts");
    let reference = zeroed_reference(&analysis, &removed);
    let a = FloatModel::from_proto(&pruned, None).expect("pruned runs");
    let b = FloatModel::from_proto(&reference, None).expect("reference runs");
    (max_rel_diff(&a, &b, &samples), analysis, pruned, removed)
}

#[test]
fn pruned_plain_model_equals_original_with_the_same_channels_zeroed() {
    let (diff, analysis, pruned, removed) = pruned_vs_zeroed("fmnist_cbam.onnx", true);
    let attended = |(g, _): &(&prune::Group, &Vec<usize>)| g.kind == GroupKind::Attended;
    let pairs: Vec<_> = analysis.groups.iter().zip(&removed).collect();
    assert_eq!(
        pairs.iter().filter(|p| attended(p)).count(),
        3,
        "three CBAM blocks"
    );
    assert!(pairs
        .iter()
        .filter(|p| attended(p))
        .all(|(_, r)| !r.is_empty()));
    assert!(pairs
        .iter()
        .filter(|p| !attended(p))
        .all(|(_, r)| r.is_empty()));
    assert!(
        diff < 1e-4,
        "pruned vs zeroed reference differ by {diff} (relative)"
    );
    let before = prune::cost::model_cost(&analysis.proto, &analysis.shapes);
    let after = prune::cost::model_cost(&pruned, &analysis.shapes);
    assert!(
        after.macs < before.macs && after.params < before.params,
        "{before:?} -> {after:?}"
    );
    keep_for_inspection(&pruned, "fmnist_cbam.pruned.onnx");
}

#[test]
fn without_mean_compensation_the_spatial_mean_is_the_only_difference() {
    let (compensated, ..) = pruned_vs_zeroed("fmnist_cbam.onnx", true);
    let (plain, ..) = pruned_vs_zeroed("fmnist_cbam.onnx", false);
    println!("relative logit difference to zeroed reference: compensated {compensated:e}, uncompensated {plain:e}");
    assert!(
        plain > 10.0 * compensated.max(1e-7),
        "uncompensated {plain} vs compensated {compensated}"
    );
}

#[test]
fn residual_blocks_are_pruned_through_a_scatter_before_the_add() {
    let (diff, analysis, pruned, removed) = pruned_vs_zeroed("fmnist_cbam_res.onnx", true);
    println!("residual model: pruned vs zeroed reference relative logit difference {diff:e}");
    let g = pruned.graph.as_ref().expect("graph");
    let scatters: Vec<_> = g
        .node
        .iter()
        .filter(|n| n.name.ends_with(SCATTER_SUFFIX))
        .collect();
    let attended: Vec<_> = analysis
        .groups
        .iter()
        .zip(&removed)
        .filter(|(g, _)| g.kind == GroupKind::Attended)
        .collect();
    assert_eq!(
        scatters.len(),
        attended.len(),
        "one scatter per residual block"
    );
    for (scatter, (group, cut)) in scatters.iter().zip(attended) {
        let kept = prune::scatter_kept_list(g, &scatter.input[1]).expect("0/1 scatter weight");
        assert_eq!(kept, prune::select::kept_from_removed(group.channels, cut));
        let add = g
            .node
            .iter()
            .find(|n| n.input.contains(&scatter.output[0]))
            .expect("scatter feeds a node");
        assert_eq!(add.op_type, "Add");
    }
    // CBAM's input is not ReLU'd here, so at a pixel where every kept channel is negative the
    // reference's zeroed channels win the channel max; elsewhere the two are equal.
    assert!(diff < 1e-3, "relative difference {diff}");
    keep_for_inspection(&pruned, "fmnist_cbam_res.pruned.onnx");
}

#[test]
fn attention_ratio_and_budget_reach_a_quarter_fewer_macs_on_the_residual_model() {
    let proto = prune::load_proto(&model_path("fmnist_cbam_res.onnx")).expect("model loads");
    let samples = calib(8);
    let analysis = prune::analyze(&proto, &samples, Criterion::Attention).expect("analysis");
    let before = prune::cost::model_cost(&analysis.proto, &analysis.shapes).macs;
    let budget = before * 3 / 4;
    let mut opts = options(Selection::MacsBudget(budget), true);
    opts.scope = Scope::Internal;
    let removed = prune::select_channels(&analysis, &opts).expect("budget selection");
    let (pruned, _) = prune::apply_cuts(&analysis, &removed, opts.surgery).expect("cuts");
    let after = prune::cost::model_cost(&pruned, &analysis.shapes).macs;
    assert!(after <= budget, "{after} > {budget}");
    for (group, cut) in analysis.groups.iter().zip(&removed) {
        assert!(group.channels - cut.len() >= MinChannels::default().floor(group.channels));
    }
}

#[test]
fn internal_channels_are_removed_outright_and_equal_the_zeroed_original() {
    let mut opts = options(ratio(0.5), true);
    opts.scope = Scope::Internal;
    let (diff, analysis, pruned, removed) = pruned_vs_zeroed_with("fmnist_cbam_res.onnx", opts);
    println!("internal cut: pruned vs zeroed reference relative logit difference {diff:e}");
    // conv1 -> ReLU -> conv2 carries a zeroed channel as exact zeros: only float summation
    // order differs.
    assert!(diff < 1e-5, "relative difference {diff}");
    let g = pruned.graph.as_ref().expect("graph");
    assert!(
        !g.node.iter().any(|n| n.name.ends_with(SCATTER_SUFFIX)),
        "internal cuts need no scatter"
    );
    let internal: Vec<_> = analysis
        .groups
        .iter()
        .zip(&removed)
        .filter(|(g, _)| g.kind == GroupKind::Internal)
        .collect();
    assert_eq!(internal.len(), 3, "conv1 of each residual block");
    for (group, cut) in &internal {
        assert_eq!(cut.len(), group.channels / 2, "{}", group.name);
        let scores = group
            .propagated
            .as_ref()
            .expect("attention propagated through conv2");
        assert_eq!(scores.len(), group.channels);
    }
    let before = prune::cost::model_cost(&analysis.proto, &analysis.shapes);
    let after = prune::cost::model_cost(&pruned, &analysis.shapes);
    // Half of conv1's outputs and half of conv2's inputs: about half of the blocks' MACs.
    let cut = prune::report::reduction_pct(before.macs, after.macs);
    assert!(
        (40.0..50.0).contains(&cut),
        "MACs {before:?} -> {after:?} ({cut:.1}%)"
    );
}

/// Sum over samples of |y_a - y_b|² for value `name`, and of |y_b|².
fn layer_error(
    a: &prune::onnx_pb::ModelProto,
    b: &prune::onnx_pb::ModelProto,
    name: &str,
    samples: &[Vec<f32>],
) -> (f64, f64) {
    let names = [name.to_string()];
    let ra = FloatModel::from_proto(a, None).expect("a runs");
    let rb = FloatModel::from_proto(b, None).expect("b runs");
    let (mut err, mut energy) = (0f64, 0f64);
    for x in samples {
        let ya = ra.run_values(x, &names).expect("run a");
        let yb = rb.run_values(x, &names).expect("run b");
        for (p, q) in ya[0].iter().zip(&yb[0]) {
            err += f64::from(p - q).powi(2);
            energy += f64::from(*q).powi(2);
        }
    }
    (err, energy)
}

#[test]
fn reconstruction_reduces_the_consumer_error_on_images_it_was_not_fitted_on() {
    let proto = prune::load_proto(&model_path("fmnist_cbam_res.onnx")).expect("model loads");
    let all = calib(48);
    let (fit_on, held_out) = all.split_at(32);
    let analysis = prune::analyze(&proto, fit_on, Criterion::Attention).expect("analysis");
    let mut opts = options(ratio(0.4), true);
    opts.scope = Scope::Internal;
    let removed = prune::select_channels(&analysis, &opts).expect("selection");
    let (plain, outcomes) = prune::apply_cuts(&analysis, &removed, opts.surgery).expect("cuts");
    let mut refit = plain.clone();
    let reports = prune::reconstruct(
        &analysis,
        &removed,
        &outcomes,
        &mut refit,
        fit_on,
        ReconstructOptions {
            downstream: 0,
            ..ReconstructOptions::default()
        },
    )
    .expect("reconstruction");
    assert_eq!(reports.len(), 3, "{reports:?}");
    // Each block's conv2 output, against the unpruned model's.
    for report in &reports {
        let conv = analysis
            .proto
            .graph
            .as_ref()
            .and_then(|g| g.node.iter().find(|n| n.name == report.conv))
            .expect("conv in the original");
        let out = &conv.output[0];
        let (plain_err, energy) = layer_error(&plain, &analysis.proto, out, held_out);
        let (refit_err, _) = layer_error(&refit, &analysis.proto, out, held_out);
        println!(
            "{}: held-out relative error {:.4} plain -> {:.4} refitted (fit rows: {:.4} -> {:.4})",
            report.conv,
            plain_err / energy,
            refit_err / energy,
            report.rel_error_before,
            report.rel_error_after
        );
        assert!(
            refit_err < 0.5 * plain_err,
            "{}: refit {refit_err} vs plain {plain_err}",
            report.conv
        );
    }
}

fn expect_err(model: &str, samples: &[Vec<f32>], opts: PruneOptions) -> PruneError {
    let proto = prune::load_proto(&model_path(model)).expect("model loads");
    match prune::prune(&proto, samples, None, &opts) {
        Ok(_) => panic!("pruning {model} with {opts:?} should fail"),
        Err(e) => e,
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let samples = calib(4);
    for ratio in [0.0, 1.0, 1.5, -0.2] {
        let e = expect_err(
            "fmnist_cbam.onnx",
            &samples,
            options(
                Selection::Ratio {
                    ratio,
                    global: false,
                },
                true,
            ),
        );
        assert!(matches!(e, PruneError::BadRatio(_)), "{e}");
        assert!(e.to_string().contains("between 0 and 1"), "{e}");
    }
    let e = expect_err(
        "fmnist_cbam.onnx",
        &samples,
        options(Selection::Threshold(2.0), true),
    );
    assert!(matches!(e, PruneError::ThresholdRemovesAll { .. }), "{e}");

    let e = expect_err(
        "variants/fmnist_plain.onnx",
        &samples,
        options(
            Selection::Ratio {
                ratio: 0.3,
                global: false,
            },
            true,
        ),
    );
    assert!(matches!(e, PruneError::NoAttention), "{e}");
    assert!(e.to_string().contains("--criterion l1"), "{e}");

    let wrong: Vec<Vec<f32>> = vec![vec![0.0; 32 * 32]; 2];
    let e = expect_err(
        "fmnist_cbam.onnx",
        &wrong,
        options(
            Selection::Ratio {
                ratio: 0.3,
                global: false,
            },
            true,
        ),
    );
    assert!(matches!(e, PruneError::InputShape { got: 1024, .. }), "{e}");
}

/// The default scope on a plain CBAM CNN: its feature maps are coupled by no Add, so they
/// are cut outright and their consumers refitted (then the next conv down).
#[test]
fn default_scope_prunes_a_plain_cbam_cnn() {
    let proto = prune::load_proto(&model_path("fmnist_cbam.onnx")).expect("model loads");
    let mut opts = options(ratio(0.3), true);
    opts.scope = Scope::default();
    opts.reconstruct = Some(ReconstructOptions::default());
    let outcome = prune::prune(&proto, &calib(8), None, &opts).expect("default-scope pruning");
    let report = &outcome.report;
    assert_eq!(report.scope, Scope::Auto);
    assert_eq!(report.blocks.len(), 3, "{:?}", report.blocks);
    for b in &report.blocks {
        assert_eq!(b.kind, GroupKind::Attended, "{}", b.name);
        assert!(!b.residual_coupled, "{}", b.name);
        assert!(b.scattered_adds.is_empty(), "{}", b.name);
        assert_eq!(
            b.removed_channels.len(),
            (b.channels as f64 * 0.3).round() as usize
        );
    }
    let refitted: Vec<&str> = report
        .reconstruction
        .iter()
        .map(|r| r.conv.as_str())
        .collect();
    // conv3 and conv4 read pruned maps; cbam3's spatial conv is the conv after conv3.
    for conv in [
        "/conv3/conv3.0/Conv",
        "/conv4/conv4.0/Conv",
        "/cbam3/spatial/conv/Conv",
    ] {
        assert!(refitted.contains(&conv), "{conv} not in {refitted:?}");
    }
    assert!(report.after.macs < report.before.macs * 3 / 4);
}

/// The default scope on the residual model: each block's conv1 outputs only, never the
/// CBAM feature maps a residual Add couples.
#[test]
fn default_scope_leaves_residual_coupled_channels_alone() {
    let proto = prune::load_proto(&model_path("fmnist_cbam_res.onnx")).expect("model loads");
    let analysis = prune::analyze(&proto, &calib(8), Criterion::Attention).expect("analysis");
    let mut opts = options(ratio(0.3), true);
    opts.scope = Scope::default();
    let removed = prune::select_channels(&analysis, &opts).expect("selection");
    let mut kinds = (0, 0);
    for (group, cut) in analysis.groups.iter().zip(&removed) {
        match group.kind {
            GroupKind::Attended => {
                assert!(group.residual_coupled, "{} is coupled", group.name);
                assert!(cut.is_empty(), "{} cut: {cut:?}", group.name);
                kinds.0 += 1;
            }
            GroupKind::Internal => {
                assert!(!group.residual_coupled, "{}", group.name);
                assert!(!cut.is_empty(), "{} not cut", group.name);
                kinds.1 += 1;
            }
        }
    }
    assert_eq!(kinds, (3, 3), "three CBAM blocks and three conv1 outputs");
    let (pruned, outcomes) = prune::apply_cuts(&analysis, &removed, opts.surgery).expect("cuts");
    assert!(outcomes.iter().all(|o| o.scattered_adds.is_empty()));
    let g = pruned.graph.as_ref().expect("graph");
    assert!(!g.node.iter().any(|n| n.name.ends_with(SCATTER_SUFFIX)));
}

#[test]
fn a_scope_with_no_group_says_which_scope_to_use_instead() {
    let samples = calib(4);
    let mut opts = options(ratio(0.3), true);
    opts.scope = Scope::Internal;
    let e = expect_err("fmnist_cbam.onnx", &samples, opts);
    assert!(matches!(e, PruneError::NothingPrunable(_)), "{e}");
    assert!(e.to_string().contains("--channels auto"), "{e}");

    opts.scope = Scope::default();
    let e = expect_err("variants/fmnist_plain.onnx", &samples, opts);
    assert!(matches!(e, PruneError::NoAttention), "{e}");
    assert!(e.to_string().contains("--criterion l1"), "{e}");
}

#[test]
fn l1_criterion_prunes_a_model_without_cbam() {
    let proto = prune::load_proto(&model_path("variants/fmnist_plain.onnx")).expect("model loads");
    for scope in [Scope::All, Scope::default()] {
        let mut opts = options(ratio(0.25), true);
        opts.criterion = Criterion::L1;
        opts.scope = scope;
        let outcome = prune::prune(&proto, &calib(2), None, &opts).expect("l1 pruning");
        assert!(!outcome.report.blocks.is_empty(), "{scope}");
        assert!(
            outcome.report.after.macs < outcome.report.before.macs,
            "{scope}"
        );
    }
}

/// Op code of ADD (FORMAT.md).
const OP_ADD: u16 = 8;

fn u16_at(blob: &[u8], off: usize) -> usize {
    let b = blob.get(off..off + 2).expect("inside the blob");
    usize::from(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(blob: &[u8], off: usize) -> usize {
    let b = blob.get(off..off + 4).expect("inside the blob");
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// `(c, full_c, has kept list)` of the second input of every ADD, read from the tensor and
/// op tables as FORMAT.md lays them out (the core's API does not expose op inputs).
fn add_second_inputs(blob: &[u8]) -> Vec<(usize, usize, bool)> {
    let (n_ops, tensors_off, ops_off) = (u16_at(blob, 30), u32_at(blob, 32), u32_at(blob, 36));
    (0..n_ops)
        .map(|i| ops_off + 32 * i)
        .filter(|op| u16_at(blob, *op) == usize::from(OP_ADD))
        .map(|op| {
            let t = tensors_off + 32 * u16_at(blob, op + 6);
            (
                u16_at(blob, t + 4),
                u16_at(blob, t + 6),
                u32_at(blob, t + 12) != 0,
            )
        })
        .collect()
}

/// Both kinds of cut on the residual model: CBAM feature maps (scattered before the Add)
/// and each block's internal conv1 outputs (refitted conv2).
#[test]
fn pruned_residual_model_quantizes_to_scattering_adds_that_agree_with_its_float_model() {
    let proto = prune::load_proto(&model_path("fmnist_cbam_res.onnx")).expect("model loads");
    let mut opts = options(ratio(0.5), true);
    opts.scope = Scope::All;
    opts.reconstruct = Some(ReconstructOptions::default());
    let outcome = prune::prune(&proto, &calib(16), None, &opts).expect("pruning");
    let dir = tempfile::tempdir().expect("temp dir");
    let pruned = dir.path().join("fmnist_cbam_res.pruned.onnx");
    cbam_compiler::write_atomic(&pruned, &prune::encode_proto(&outcome.model))
        .expect("write pruned model");

    let calib_images = paths::calibration_images().expect("calibration images");
    let calib =
        fidelity::load_data(&pruned, &calib_images, None, 64, &None).expect("calibration data");
    let compiled = fidelity::quantize(&pruned, &calib, &None).expect("quantize the pruned model");

    let adds = add_second_inputs(&compiled.blob);
    let scattering: Vec<_> = adds.iter().filter(|(_, _, kept)| *kept).collect();
    assert!(
        !scattering.is_empty(),
        "no ADD scatters a pruned input: {adds:?}"
    );
    for (c, full_c, _) in &scattering {
        assert!(
            c < full_c,
            "pruned ADD input stores {c} of {full_c} channels"
        );
    }
    // Each scatter conv and its Add became one ADD: a conv left in place would feed the Add
    // a dense tensor, with no kept list.
    let scatter_nodes = outcome
        .model
        .graph
        .as_ref()
        .expect("graph")
        .node
        .iter()
        .filter(|n| n.name.ends_with(SCATTER_SUFFIX))
        .count();
    assert_eq!(scattering.len(), scatter_nodes, "{adds:?}");

    let qdq_path = dir.path().join("fmnist_cbam_res.pruned.int8.onnx");
    std::fs::write(&qdq_path, compiled.qdq.as_ref().expect("QDQ requested")).expect("write QDQ");
    let test = paths::fashion_mnist_test().expect("Fashion-MNIST test images");
    let data = fidelity::load_data(&pruned, &test.images, Some(&test.labels), 200, &None)
        .expect("test data");
    let m = fidelity::measure(&pruned, &compiled, &qdq_path, &data).expect("measure");
    println!(
        "pruned residual model, {} scattering ADDs: {m:?}",
        scattering.len()
    );
    assert!(
        m.agreement >= 0.97,
        "pruned int8 core vs pruned float top-1 agreement {:.3} < 0.97 on {} images",
        m.agreement,
        m.n
    );
    assert!(
        m.qdq_agreement >= 0.97,
        "QDQ vs core agreement {:.3}",
        m.qdq_agreement
    );
}

/// `n` RGB calibration images, resized to the input of `model` (a zoo model: random
/// weights, ImageNet-normalised RGB input, no metadata).
fn zoo_calib(model: &Path, n: usize) -> Vec<Vec<f32>> {
    let folder = model_path("data/rgb/calib256_64");
    let set = fidelity::load_data(model, &folder, None, n, &fidelity::imagenet())
        .expect("RGB calibration images");
    set.samples.into_iter().map(|s| s.input).collect()
}

/// Output channels of every conv with a constant weight, the scatters before residual Adds
/// aside.
fn conv_channels(model: &prune::onnx_pb::ModelProto) -> i64 {
    let g = model.graph.as_ref().expect("graph");
    g.node
        .iter()
        .filter(|n| n.op_type == "Conv" && !n.name.ends_with(SCATTER_SUFFIX))
        .filter_map(|n| {
            g.initializer
                .iter()
                .find(|t| Some(&t.name) == n.input.get(1))
        })
        .map(|t| t.dims.first().copied().unwrap_or(0))
        .sum()
}

/// The attention sites the compiler recognises in the model at `path`.
fn compiler_sites(path: &Path) -> Vec<passes::ChannelSite> {
    let graph = cbam_compiler::import::load_onnx(path).expect("imports");
    passes::channel_sites(&passes::optimize(graph).expect("passes"))
}

/// The official CBAM code's blocks ([max; mean], Linear MLP with bias, 7x7 conv + BN,
/// view/expand_as) and timm's SE and effective-SE gates: pruning ranks exactly the sites the
/// compiler recognises, and the pruned ONNX runs with fewer channels and MACs.
#[test]
fn zoo_models_prune_through_the_compilers_attention_sites() {
    for (file, kind) in [
        (
            "zoo/resnet_bottleneck_official_cbam_legacy_op17.onnx",
            GateKind::Cbam,
        ),
        ("zoo/timm_resnet10t_se_legacy_op13.onnx", GateKind::Sigmoid),
        (
            "zoo/timm_resnet10t_ese_legacy_op17.onnx",
            GateKind::HardSigmoid,
        ),
    ] {
        let path = model_path(file);
        let sites = compiler_sites(&path);
        assert!(!sites.is_empty(), "{file}: no site");
        assert!(sites.iter().all(|s| s.kind == kind), "{file}: {sites:?}");
        let proto = prune::load_proto(&path).expect("model loads");
        let samples = zoo_calib(&path, 8);
        let mut opts = options(ratio(0.3), true);
        opts.scope = Scope::All;
        opts.reconstruct = Some(ReconstructOptions::default());
        let outcome =
            prune::prune(&proto, &samples, None, &opts).unwrap_or_else(|e| panic!("{file}: {e}"));
        let report = &outcome.report;
        let attended: Vec<_> = report
            .blocks
            .iter()
            .filter(|b| b.kind == GroupKind::Attended)
            .collect();
        let features: Vec<&String> = attended.iter().map(|b| &b.feature).collect();
        let expected: Vec<&String> = sites.iter().map(|s| &s.feature).collect();
        assert_eq!(features, expected, "{file}");
        for b in &attended {
            let a = b.attention.as_ref().expect("attention statistics");
            assert_eq!(a.mean.len(), b.channels, "{file} {}", b.name);
            assert!(a.mean.iter().all(|m| (0.0..=1.0).contains(m)), "{file}");
        }
        assert!(
            attended.iter().any(|b| b.kept < b.channels),
            "{file}: no attended channel cut"
        );
        assert!(report.after.macs < report.before.macs, "{file}");
        assert!(
            conv_channels(&outcome.model) < conv_channels(&proto),
            "{file}: no conv lost channels"
        );
        let pruned = FloatModel::from_proto(&outcome.model, None).expect("pruned model runs");
        for x in &samples {
            let y = pruned.run(x).expect("pruned run");
            assert!(y.len() == 10 && y.iter().all(|v| v.is_finite()), "{file}");
        }
        keep_for_inspection(&outcome.model, &format!("{}.pruned.onnx", kind_name(kind)));
    }
}

fn kind_name(kind: GateKind) -> &'static str {
    match kind {
        GateKind::Cbam => "zoo_cbam",
        GateKind::Sigmoid => "zoo_se",
        GateKind::HardSigmoid => "zoo_ese",
    }
}

/// An SE gate's channels cut without a refit equal the original with the same channels
/// zeroed: the kept channels' gates see the same pooled values, and the residual Add gets
/// zeros where the branch lost channels.
#[test]
fn se_gated_channels_cut_equal_the_zeroed_original() {
    let path = model_path("zoo/timm_resnet10t_se_legacy_op13.onnx");
    let proto = prune::load_proto(&path).expect("model loads");
    let samples = zoo_calib(&path, 8);
    let analysis = prune::analyze(&proto, &samples, Criterion::Attention).expect("analysis");
    let opts = options(ratio(0.5), true);
    let removed = prune::select_channels(&analysis, &opts).expect("selection");
    assert!(removed.iter().any(|r| !r.is_empty()), "nothing cut");
    let (pruned, outcomes) = prune::apply_cuts(&analysis, &removed, opts.surgery).expect("cuts");
    assert!(outcomes.iter().any(|o| !o.scattered_adds.is_empty()));
    let reference = zeroed_reference(&analysis, &removed);
    let a = FloatModel::from_proto(&pruned, None).expect("pruned runs");
    let b = FloatModel::from_proto(&reference, None).expect("reference runs");
    let diff = max_rel_diff(&a, &b, &samples);
    assert!(diff < 1e-4, "pruned vs zeroed: {diff}");
}
