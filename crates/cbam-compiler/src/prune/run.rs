//! The pruning pipeline: analysis, selection, cuts, evaluation and the report.

use tract_onnx::pb::ModelProto;

use super::blocks::find_cbam_sites;
use super::cost::{model_cost, Cost};
use super::criteria::{attention_stats, producer_l1, AttentionStats};
use super::float_eval::accuracy;
use super::onnx_util::{
    const_tensor_mut, dims_usize, materialize_constant_identities, set_tensor_f32, tensor_f32,
    GraphIndex,
};
use super::report::{
    jaccard, reduction_pct, AccuracyReport, BlockReport, ComparisonReport, PruneReport,
};
use super::select::{self, MinChannels, Selection};
use super::shapes::{declared_input_chw, value_shapes, ShapeMap};
use super::surgery::{cut_channels, CutOutcome, SurgeryOptions};
use super::{Criterion, PruneError, PruneOptions};

/// A set of channels pruned together: a CBAM block's feature map (or, for `--criterion l1`
/// on a model without CBAM, a conv's output).
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// ONNX value whose channels are cut.
    pub feature: String,
    pub channels: usize,
    pub attention: Option<AttentionStats>,
    pub l1: Vec<f32>,
    /// Why the group cannot be pruned (found by a trial cut), if so.
    pub blocked: Option<String>,
}

impl Group {
    /// Scores under `criterion` (higher = more important).
    pub fn scores(&self, criterion: Criterion) -> Vec<f32> {
        match (criterion, &self.attention) {
            (Criterion::Attention, Some(a)) => a.mean.clone(),
            _ => self.l1.clone(),
        }
    }
}

/// The model as seen by the pruner: shapes, groups and their statistics.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The model the analysis (and every cut) works on: the input with constant
    /// `Identity` nodes materialised (see [`super::onnx_util::materialize_constant_identities`]).
    pub proto: ModelProto,
    pub input_chw: Vec<usize>,
    pub shapes: ShapeMap,
    pub groups: Vec<Group>,
    pub calibration_samples: usize,
}

/// The pruned model and its report.
pub struct PruneOutcome {
    pub model: ModelProto,
    pub report: PruneReport,
}

fn check_samples(input_chw: &[usize], samples: &[Vec<f32>]) -> Result<(), PruneError> {
    let expected: usize = input_chw.iter().product();
    match samples.iter().find(|s| s.len() != expected) {
        Some(bad) => Err(PruneError::InputShape {
            expected: input_chw.to_vec(),
            got: bad.len(),
        }),
        None => Ok(()),
    }
}

fn graph(model: &ModelProto) -> Result<&tract_onnx::pb::GraphProto, PruneError> {
    model
        .graph
        .as_ref()
        .ok_or_else(|| PruneError::Unsupported("the ONNX model has no graph".into()))
}

/// Tries a one-channel cut on a copy: the reason the group cannot be pruned, if any.
fn trial_cut(
    proto: &ModelProto,
    shapes: &ShapeMap,
    feature: &str,
    channels: usize,
) -> Option<String> {
    let mut copy = proto.clone();
    let kept: Vec<usize> = (1..channels).collect();
    let options = SurgeryOptions {
        compensate_spatial_mean: false,
    };
    cut_channels(&mut copy, shapes, feature, channels, &kept, options)
        .err()
        .map(|e| e.to_string())
}

/// Conv outputs that can be cut without touching a residual Add (the `--criterion l1`
/// groups of a model without CBAM).
fn conv_groups(proto: &ModelProto, shapes: &ShapeMap) -> Result<Vec<Group>, PruneError> {
    let g = graph(proto)?;
    let mut groups = Vec::new();
    for node in g.node.iter().filter(|n| n.op_type == "Conv") {
        let Some(out) = node.output.first() else {
            continue;
        };
        let Some(&[1, channels, _, _]) = shapes.get(out).map(Vec::as_slice) else {
            continue;
        };
        if channels < 2 || trial_cut(proto, shapes, out, channels).is_some() {
            continue;
        }
        let mut copy = proto.clone();
        let kept: Vec<usize> = (1..channels).collect();
        let opts = SurgeryOptions {
            compensate_spatial_mean: false,
        };
        let scatters = cut_channels(&mut copy, shapes, out, channels, &kept, opts)
            .map(|o| o.scattered_adds.len());
        if !matches!(scatters, Ok(0)) {
            continue;
        }
        groups.push(Group {
            name: node.name.clone(),
            feature: out.clone(),
            channels,
            attention: None,
            l1: producer_l1(g, out, channels)?,
            blocked: None,
        });
    }
    Ok(groups)
}

/// Finds the groups and gathers their statistics on `calib` (samples are `C*H*W` floats in
/// the model's input layout and normalisation).
pub fn analyze(
    original: &ModelProto,
    calib: &[Vec<f32>],
    criterion: Criterion,
) -> Result<Analysis, PruneError> {
    let mut owned = original.clone();
    if let Some(g) = owned.graph.as_mut() {
        materialize_constant_identities(g);
    }
    let proto = &owned;
    let input_chw = declared_input_chw(proto).ok_or(PruneError::DynamicInput)?;
    if calib.is_empty() {
        return Err(PruneError::EmptyData("calibration"));
    }
    check_samples(&input_chw, calib)?;
    let shapes = value_shapes(proto, &input_chw)?;
    let g = graph(proto)?;
    let sites = find_cbam_sites(g, &shapes);
    if sites.is_empty() {
        if criterion == Criterion::Attention {
            return Err(PruneError::NoCbam);
        }
        let groups = conv_groups(proto, &shapes)?;
        return Ok(Analysis {
            proto: owned,
            input_chw,
            shapes,
            groups,
            calibration_samples: calib.len(),
        });
    }
    let stats = attention_stats(proto, &sites, &input_chw, calib)?;
    let mut groups = Vec::with_capacity(sites.len());
    for (site, stat) in sites.iter().zip(stats) {
        let blocked = trial_cut(proto, &shapes, &site.feature, site.channels);
        let l1 = producer_l1(g, &site.feature, site.channels)
            .unwrap_or_else(|_| vec![0.0; site.channels]);
        groups.push(Group {
            name: site.name.clone(),
            feature: site.feature.clone(),
            channels: site.channels,
            attention: Some(stat),
            l1,
            blocked,
        });
    }
    Ok(Analysis {
        proto: owned,
        input_chw,
        shapes,
        groups,
        calibration_samples: calib.len(),
    })
}

/// Removed channels per group (empty for blocked groups).
pub fn select_channels(
    analysis: &Analysis,
    options: &PruneOptions,
) -> Result<Vec<Vec<usize>>, PruneError> {
    select::validate(&options.selection)?;
    let open: Vec<&Group> = analysis
        .groups
        .iter()
        .filter(|g| g.blocked.is_none())
        .collect();
    if open.is_empty() {
        let why = analysis
            .groups
            .iter()
            .filter_map(|g| g.blocked.clone())
            .next()
            .unwrap_or_else(|| "the model has no conv feature maps".into());
        return Err(PruneError::NothingPrunable(why));
    }
    let scores: Vec<Vec<f32>> = open.iter().map(|g| g.scores(options.criterion)).collect();
    let names: Vec<String> = open.iter().map(|g| g.name.clone()).collect();
    let min = options.min_channels;
    let chosen = match options.selection {
        Selection::Ratio {
            ratio,
            global: false,
        } => select::by_ratio(&scores, ratio, min),
        Selection::Ratio {
            ratio,
            global: true,
        } => select::by_global_ratio(&scores, ratio, min),
        Selection::Threshold(t) => select::by_threshold(&scores, &names, t, min)?,
        Selection::MacsBudget(budget) => {
            by_budget(analysis, &open, &scores, budget, min, options.surgery)?
        }
    };
    let mut it = chosen.into_iter();
    Ok(analysis
        .groups
        .iter()
        .map(|g| {
            if g.blocked.is_none() {
                it.next().unwrap_or_default()
            } else {
                Vec::new()
            }
        })
        .collect())
}

/// Smallest global removal count whose pruned model fits `budget` MACs (binary search:
/// MACs only fall as more channels go).
fn by_budget(
    analysis: &Analysis,
    open: &[&Group],
    scores: &[Vec<f32>],
    budget: u64,
    min: MinChannels,
    surgery: SurgeryOptions,
) -> Result<Vec<Vec<usize>>, PruneError> {
    let order = select::global_order(scores);
    let macs_at = |count: usize| -> Result<(u64, Vec<Vec<usize>>), PruneError> {
        let removed = select::take_global(scores, &order, count, min);
        let pairs: Vec<(&Group, &[usize])> = open
            .iter()
            .copied()
            .zip(removed.iter().map(Vec::as_slice))
            .collect();
        let (model, _) = cut_groups(&analysis.proto, &analysis.shapes, &pairs, surgery)?;
        Ok((model_cost(&model, &analysis.shapes).macs, removed))
    };
    let (lo_macs, none) = macs_at(0)?;
    if lo_macs <= budget {
        return Ok(none);
    }
    let max = select::max_removable(scores, min);
    let (best, all) = macs_at(max)?;
    if best > budget {
        return Err(PruneError::BudgetUnreachable {
            budget,
            best: Some(best),
        });
    }
    let (mut lo, mut hi, mut found) = (0usize, max, all);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let (macs, removed) = macs_at(mid)?;
        if macs <= budget {
            hi = mid;
            found = removed;
        } else {
            lo = mid;
        }
    }
    Ok(found)
}

fn cut_groups(
    proto: &ModelProto,
    shapes: &ShapeMap,
    pairs: &[(&Group, &[usize])],
    surgery: SurgeryOptions,
) -> Result<(ModelProto, Vec<CutOutcome>), PruneError> {
    let mut model = proto.clone();
    let mut outcomes = Vec::with_capacity(pairs.len());
    let mut already_cut: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (group, removed) in pairs {
        if removed.is_empty() {
            outcomes.push(CutOutcome::default());
            continue;
        }
        let kept = select::kept_from_removed(group.channels, removed);
        let outcome = cut_channels(
            &mut model,
            shapes,
            &group.feature,
            group.channels,
            &kept,
            surgery,
        )?;
        if let Some(v) = outcome.cut_values.iter().find(|v| already_cut.contains(*v)) {
            return Err(PruneError::Coupled(format!(
                "value `{v}` belongs to two pruned blocks"
            )));
        }
        already_cut.extend(outcome.cut_values.iter().cloned());
        outcomes.push(outcome);
    }
    Ok((model, outcomes))
}

/// Applies the cuts and checks that tract still loads the result.
pub fn apply_cuts(
    analysis: &Analysis,
    removed: &[Vec<usize>],
    surgery: SurgeryOptions,
) -> Result<(ModelProto, Vec<CutOutcome>), PruneError> {
    let pairs: Vec<(&Group, &[usize])> = analysis
        .groups
        .iter()
        .zip(removed.iter().map(Vec::as_slice))
        .collect();
    let (mut model, outcomes) = cut_groups(&analysis.proto, &analysis.shapes, &pairs, surgery)?;
    record_metadata(&mut model, &analysis.groups, removed, &outcomes);
    value_shapes(&model, &analysis.input_chw)
        .map_err(|e| PruneError::Tract(format!("the pruned model does not load back: {e}")))?;
    Ok((model, outcomes))
}

/// Kept-channel lists in `metadata_props`, so later tools (quantizer, fine-tune recipe)
/// need not reverse-engineer them: `cbam.prune.kept.<feature>` and, per coupled Add,
/// `cbam.prune.scatter.<add node>`; values are comma-separated channel indices.
fn record_metadata(
    model: &mut ModelProto,
    groups: &[Group],
    removed: &[Vec<usize>],
    outcomes: &[CutOutcome],
) {
    use tract_onnx::pb::StringStringEntryProto;
    for ((group, removed), outcome) in groups.iter().zip(removed).zip(outcomes) {
        if removed.is_empty() {
            continue;
        }
        let kept = select::kept_from_removed(group.channels, removed);
        let list = kept
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut entries = vec![format!("cbam.prune.kept.{}", group.feature)];
        entries.extend(
            outcome
                .scattered_adds
                .iter()
                .map(|a| format!("cbam.prune.scatter.{a}")),
        );
        for key in entries {
            model.metadata_props.retain(|p| p.key != key);
            model.metadata_props.push(StringStringEntryProto {
                key,
                value: list.clone(),
            });
        }
    }
}

/// The reference for "the same channels removed": the original model with the removed
/// channels' producer filters and bias (and BatchNorm scale and shift, if unfolded) zeroed,
/// so those channels are exactly 0 wherever the producer's output goes.
pub fn zero_channels(
    proto: &ModelProto,
    feature: &str,
    removed: &[usize],
) -> Result<ModelProto, PruneError> {
    let mut model = proto.clone();
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| PruneError::Unsupported("no graph".into()))?;
    let idx = GraphIndex::new(g);
    let mut value = feature.to_string();
    for _ in 0..16 {
        let node = idx
            .producer
            .get(&value)
            .and_then(|&i| g.node.get(i))
            .cloned()
            .ok_or_else(|| PruneError::Unsupported(format!("`{feature}` has no producing conv")))?;
        let params: Vec<String> = match node.op_type.as_str() {
            "Conv" => node.input.iter().skip(1).cloned().collect(),
            "BatchNormalization" => node.input.iter().skip(1).take(2).cloned().collect(),
            "Relu" | "LeakyRelu" | "Clip" | "Identity" | "Dropout" => Vec::new(),
            other => {
                return Err(PruneError::Unsupported(format!(
                    "cannot zero channels through `{other}`"
                )))
            }
        };
        for name in params {
            let Some(&slot) = idx.consts.get(&name) else {
                continue;
            };
            if let Some(t) = const_tensor_mut(g, slot) {
                let dims = dims_usize(t);
                let mut values = tensor_f32(t)?;
                let per = values.len() / dims.first().copied().unwrap_or(1).max(1);
                for &c in removed {
                    for v in values.iter_mut().skip(c * per).take(per) {
                        *v = 0.0;
                    }
                }
                set_tensor_f32(t, &dims, &values);
            }
        }
        if node.op_type == "Conv" {
            return Ok(model);
        }
        value = node.input.first().cloned().unwrap_or_default();
    }
    Err(PruneError::Unsupported(format!(
        "no conv found above `{feature}`"
    )))
}

fn selection_label(s: &Selection) -> String {
    match s {
        Selection::Ratio { ratio, global } => format!(
            "ratio {ratio}{}",
            if *global { " (global)" } else { " (per block)" }
        ),
        Selection::Threshold(t) => format!("threshold {t}"),
        Selection::MacsBudget(n) => format!("macs-budget {n}"),
    }
}

/// The whole `cbam prune`: analyse, select, cut, measure. `eval` is labelled data for float
/// accuracy before/after. Nothing is written here; the caller writes the model and report.
pub fn prune(
    proto: &ModelProto,
    calib: &[Vec<f32>],
    eval: Option<(&[Vec<f32>], &[usize])>,
    options: &PruneOptions,
) -> Result<PruneOutcome, PruneError> {
    select::validate(&options.selection)?;
    let analysis = analyze(proto, calib, options.criterion)?;
    if let Some((samples, _)) = eval {
        check_samples(&analysis.input_chw, samples)?;
    }
    let removed = select_channels(&analysis, options)?;
    let (model, outcomes) = apply_cuts(&analysis, &removed, options.surgery)?;
    let before = model_cost(&analysis.proto, &analysis.shapes);
    let after = model_cost(&model, &analysis.shapes);
    let evaluate = |m: &ModelProto| -> Result<Option<f64>, PruneError> {
        eval.map(|(x, y)| accuracy(m, &analysis.input_chw, x, y))
            .transpose()
    };
    let acc_after = evaluate(&model)?;
    let accuracy_report = match (evaluate(&analysis.proto)?, acc_after, eval) {
        (Some(b), Some(a), Some((x, _))) => Some(AccuracyReport {
            samples: x.len(),
            before_pct: b,
            after_pct: a,
        }),
        _ => None,
    };
    let comparison = compare_other_criterion(&analysis, &removed, options, &evaluate)?;
    let blocks = block_reports(&analysis, &removed, &outcomes);
    let report = PruneReport {
        criterion: options.criterion.to_string(),
        selection: selection_label(&options.selection),
        min_channels: format!("{:?}", options.min_channels),
        calibration_samples: analysis.calibration_samples,
        spatial_mean_compensated: options.surgery.compensate_spatial_mean,
        blocks,
        before,
        after,
        macs_reduction_pct: reduction_pct(before.macs, after.macs),
        params_reduction_pct: reduction_pct(before.params, after.params),
        accuracy: accuracy_report,
        comparison,
    };
    Ok(PruneOutcome { model, report })
}

/// Same per-block counts, ranked by the other criterion (only when both exist: CBAM blocks).
fn compare_other_criterion(
    analysis: &Analysis,
    removed: &[Vec<usize>],
    options: &PruneOptions,
    evaluate: &dyn Fn(&ModelProto) -> Result<Option<f64>, PruneError>,
) -> Result<Option<ComparisonReport>, PruneError> {
    if analysis.groups.iter().any(|g| g.attention.is_none()) {
        return Ok(None);
    }
    let other = match options.criterion {
        Criterion::Attention => Criterion::L1,
        Criterion::L1 => Criterion::Attention,
    };
    let other_removed: Vec<Vec<usize>> = analysis
        .groups
        .iter()
        .zip(removed)
        .map(|(g, r)| select::lowest(&g.scores(other), r.len(), 1))
        .collect();
    let (model, _) = apply_cuts(analysis, &other_removed, options.surgery)?;
    let after: Cost = model_cost(&model, &analysis.shapes);
    Ok(Some(ComparisonReport {
        criterion: other.to_string(),
        after,
        accuracy_after_pct: evaluate(&model)?,
        removed_overlap: removed
            .iter()
            .zip(&other_removed)
            .map(|(a, b)| jaccard(a, b))
            .collect(),
    }))
}

fn block_reports(
    analysis: &Analysis,
    removed: &[Vec<usize>],
    outcomes: &[CutOutcome],
) -> Vec<BlockReport> {
    analysis
        .groups
        .iter()
        .zip(removed)
        .zip(outcomes)
        .map(|((g, r), o)| BlockReport {
            name: g.name.clone(),
            feature: g.feature.clone(),
            channels: g.channels,
            kept: g.channels - r.len(),
            removed_channels: r.clone(),
            kept_channels: select::kept_from_removed(g.channels, r),
            scattered_adds: o.scattered_adds.clone(),
            skipped: g.blocked.clone(),
            attention: g.attention.clone(),
            l1: g.l1.clone(),
        })
        .collect()
}
