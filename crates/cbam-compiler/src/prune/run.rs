//! The pruning pipeline: analysis, selection, cuts, evaluation and the report.

use tract_onnx::pb::ModelProto;

use super::activations::batch_of_one;
use super::cost::{model_cost, Cost};
use super::criteria::{attention_stats, producer_l1, AttentionStats};
use super::downstream::downstream_convs;
use super::internal::{find_internal_sites, propagated_scores};
use super::proto_edit::{
    const_tensor_mut, dims_usize, materialize_constant_identities, set_tensor_f32, tensor_f32,
    GraphIndex,
};
use super::reconstruct::{
    reconstruct_consumers, ReconstructOptions, ReconstructTarget, ReconstructionReport,
};
use super::report::{
    jaccard, reduction_pct, AccuracyReport, BlockReport, ComparisonReport, PruneReport,
};
use super::select::{self, Selection};
use super::sensitivity::{allocation_order, probe_depths, Reference, SensitivityCurve};
use super::shapes::{value_shapes, ShapeMap};
use super::surgery::{cut_channels, CutOutcome, SurgeryOptions};
use super::{Criterion, GroupKind, PruneError, PruneOptions, Scope};
use crate::float_run::{self, FloatModel};
use crate::import;
use crate::passes::{self, ChannelSite};

/// A set of channels pruned together: a CBAM block's feature map, or a conv output that
/// stays inside a block (see [`super::internal`]); for `--criterion l1` on a model without
/// CBAM, every conv output that no residual Add couples.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// ONNX value whose channels are cut.
    pub feature: String,
    pub channels: usize,
    pub kind: GroupKind,
    pub attention: Option<AttentionStats>,
    /// Internal groups: downstream attention propagated through the consumer conv,
    /// relative to the group's best channel.
    pub propagated: Option<Vec<f32>>,
    pub l1: Vec<f32>,
    /// Why the group cannot be pruned (found by a trial cut), if so.
    pub blocked: Option<String>,
    /// A residual Add couples these channels: a cut computes them only where kept and
    /// scatters them back to full width (found by a trial cut).
    pub residual_coupled: bool,
}

impl Group {
    /// Scores under `criterion` (higher = more important).
    pub fn scores(&self, criterion: Criterion) -> Vec<f32> {
        match (criterion, &self.attention, &self.propagated) {
            (Criterion::Attention, Some(a), _) => a.mean.clone(),
            (Criterion::Attention, None, Some(p)) => p.clone(),
            _ => self.l1.clone(),
        }
    }

    /// Whether `--threshold`, charts and tables read these scores on the attention scale.
    pub fn has_attention_scores(&self) -> bool {
        self.attention.is_some() || self.propagated.is_some()
    }

    /// Whether a selection under `scope` may take channels from this group.
    pub fn in_scope(&self, scope: Scope) -> bool {
        self.blocked.is_none() && scope.includes(self.kind, self.residual_coupled)
    }
}

/// The model as seen by the pruner: shapes, groups and their statistics.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The model the analysis (and every cut) works on: the input with constant
    /// `Identity` nodes materialised (see [`super::proto_edit::materialize_constant_identities`]).
    pub proto: ModelProto,
    pub input_chw: Vec<usize>,
    pub shapes: ShapeMap,
    pub groups: Vec<Group>,
    pub calibration_samples: usize,
    /// The calibration samples, for selections that measure (`--macs-budget`).
    pub calib: Vec<Vec<f32>>,
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

/// Tries a one-channel cut on a copy: what it did, or why the group cannot be pruned.
fn trial_cut(
    proto: &ModelProto,
    shapes: &ShapeMap,
    feature: &str,
    channels: usize,
) -> Result<CutOutcome, String> {
    let mut copy = proto.clone();
    let kept: Vec<usize> = (1..channels).collect();
    let options = SurgeryOptions {
        compensate_spatial_mean: false,
    };
    cut_channels(&mut copy, shapes, feature, channels, &kept, options).map_err(|e| e.to_string())
}

fn internal_groups(
    proto: &ModelProto,
    shapes: &ShapeMap,
    input_chw: &[usize],
    calib: &[Vec<f32>],
    sites: &[ChannelSite],
    stats: &[AttentionStats],
) -> Result<Vec<Group>, PruneError> {
    let g = graph(proto)?;
    let internal = find_internal_sites(proto, shapes, sites)?;
    let propagated = if sites.is_empty() {
        vec![None; internal.len()]
    } else {
        propagated_scores(proto, input_chw, calib, &internal, sites, stats)?
    };
    internal
        .into_iter()
        .zip(propagated)
        .map(|(site, propagated)| {
            Ok(Group {
                l1: producer_l1(g, &site.feature, site.channels)?,
                name: site.name,
                feature: site.feature,
                channels: site.channels,
                kind: GroupKind::Internal,
                attention: None,
                propagated,
                blocked: None,
                residual_coupled: false,
            })
        })
        .collect()
}

/// The channel-attention sites of `proto` as the compiler recognises them: imported and
/// optimised as `quantize` does, so pruning ranks exactly the blocks `inspect` lists.
fn recognised_sites(proto: &ModelProto) -> Result<Vec<ChannelSite>, PruneError> {
    let graph = import::import_model(proto, None).map_err(PruneError::Import)?;
    let graph = passes::optimize(graph).map_err(PruneError::Passes)?;
    Ok(passes::channel_sites(&graph))
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
    let (_, input_shape) = import::input_of(proto).map_err(PruneError::Import)?;
    let input_chw = input_shape.get(1..).unwrap_or_default().to_vec();
    if calib.is_empty() {
        return Err(PruneError::EmptyData("calibration"));
    }
    check_samples(&input_chw, calib)?;
    let shapes = value_shapes(proto, &input_chw)?;
    let g = graph(proto)?;
    let sites = recognised_sites(proto)?;
    if sites.is_empty() {
        if criterion == Criterion::Attention {
            return Err(PruneError::NoAttention);
        }
        let groups = internal_groups(proto, &shapes, &input_chw, calib, &[], &[])?;
        return Ok(Analysis {
            proto: owned,
            input_chw,
            shapes,
            groups,
            calibration_samples: calib.len(),
            calib: calib.to_vec(),
        });
    }
    let stats = attention_stats(proto, &sites, &input_chw, calib)?;
    let internal = internal_groups(proto, &shapes, &input_chw, calib, &sites, &stats)?;
    let mut groups = Vec::with_capacity(sites.len() + internal.len());
    for (site, stat) in sites.iter().zip(stats) {
        let trial = trial_cut(proto, &shapes, &site.feature, site.channels);
        let l1 = producer_l1(g, &site.feature, site.channels)
            .unwrap_or_else(|_| vec![0.0; site.channels]);
        groups.push(Group {
            name: site.name.clone(),
            feature: site.feature.clone(),
            channels: site.channels,
            kind: GroupKind::Attended,
            attention: Some(stat),
            propagated: None,
            l1,
            residual_coupled: trial.as_ref().is_ok_and(|o| !o.scattered_adds.is_empty()),
            blocked: trial.err(),
        });
    }
    groups.extend(internal);
    Ok(Analysis {
        proto: owned,
        input_chw,
        shapes,
        groups,
        calibration_samples: calib.len(),
        calib: calib.to_vec(),
    })
}

/// Removed channels per group (empty for blocked groups).
pub fn select_channels(
    analysis: &Analysis,
    options: &PruneOptions,
) -> Result<Vec<Vec<usize>>, PruneError> {
    select::validate(&options.selection)?;
    let in_scope = |g: &Group| g.in_scope(options.scope);
    let open: Vec<&Group> = analysis.groups.iter().filter(|g| in_scope(g)).collect();
    if open.is_empty() {
        return Err(PruneError::NothingPrunable(nothing_prunable_reason(
            &analysis.groups,
            options.scope,
        )));
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
        Selection::MacsBudget(budget) => by_budget(analysis, &open, &scores, budget, options)?,
        Selection::MacsFraction(f) => {
            let base = model_cost(&analysis.proto, &analysis.shapes).macs;
            let budget = (f * base as f64).floor() as u64;
            by_budget(analysis, &open, &scores, budget, options)?
        }
    };
    let mut it = chosen.into_iter();
    Ok(analysis
        .groups
        .iter()
        .map(|g| {
            if in_scope(g) {
                it.next().unwrap_or_default()
            } else {
                Vec::new()
            }
        })
        .collect())
}

/// Why no group is open under `scope`, and what to try instead.
pub fn nothing_prunable_reason(groups: &[Group], scope: Scope) -> String {
    let blocked: Vec<String> = groups
        .iter()
        .filter(|g| scope.includes(g.kind, g.residual_coupled))
        .filter_map(|g| g.blocked.as_ref().map(|b| format!("{}: {b}", g.name)))
        .collect();
    if !blocked.is_empty() {
        return format!(
            "every group in scope `{scope}` is blocked ({})",
            blocked.join("; ")
        );
    }
    let any = |pred: &dyn Fn(&Group) -> bool| groups.iter().any(pred);
    let coupled = any(&|g| g.residual_coupled && g.blocked.is_none());
    let internal = any(&|g| g.kind == GroupKind::Internal && g.blocked.is_none());
    let attended = any(&|g| g.kind == GroupKind::Attended && g.blocked.is_none());
    match scope {
        Scope::Internal if attended => "no conv output stays inside a block (there are no \
            residual blocks); use --channels auto (the default) to prune CBAM feature maps"
            .into(),
        Scope::Attended if internal => "the model has no CBAM feature map that can be cut; \
            use --channels auto (the default) to prune the channels inside its blocks"
            .into(),
        Scope::Auto if coupled => "every CBAM feature map is coupled by a residual Add and no \
            block has internal channels; use --channels attended to cut the coupled channels \
            (computed only where kept and scattered back before the Add)"
            .into(),
        _ => "the model has no conv output whose channels can be removed; with no CBAM block, \
            try --criterion l1"
            .into(),
    }
}

/// Calibration images the damage of a candidate cut is measured on.
const DAMAGE_SAMPLES: usize = 64;

/// Cuts one group alone (refitted like the final cut) at a few depths and measures the
/// damage; returns the removal order that spends the budget where it hurts least.
fn measured_order(
    analysis: &Analysis,
    open: &[&Group],
    scores: &[Vec<f32>],
    options: &PruneOptions,
) -> Result<Vec<(usize, usize)>, PruneError> {
    let damage_set: Vec<Vec<f32>> = analysis
        .calib
        .iter()
        .take(DAMAGE_SAMPLES)
        .cloned()
        .collect();
    let reference = Reference::new(&analysis.proto, &analysis.input_chw, &damage_set)?;
    let base = model_cost(&analysis.proto, &analysis.shapes).macs;
    let mut curves = Vec::with_capacity(open.len());
    for (group, s) in open.iter().zip(scores) {
        let max = s.len() - options.min_channels.floor(s.len());
        let mut points = Vec::new();
        let mut macs_per_channel = 0.0;
        for n in probe_depths(max) {
            let cut = select::lowest(s, n, 1);
            let removed: Vec<Vec<usize>> = analysis
                .groups
                .iter()
                .map(|g| {
                    if g.feature == group.feature {
                        cut.clone()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let (mut model, outcomes) = apply_cuts(analysis, &removed, options.surgery)?;
            if let Some(r) = options.reconstruct {
                reconstruct(
                    analysis,
                    &removed,
                    &outcomes,
                    &mut model,
                    &analysis.calib,
                    r,
                )?;
            }
            let saved = base.saturating_sub(model_cost(&model, &analysis.shapes).macs);
            macs_per_channel = saved as f64 / n as f64;
            points.push((n, reference.damage(&model)?));
        }
        curves.push(SensitivityCurve {
            group: group.name.clone(),
            points,
            macs_per_channel,
        });
    }
    let ascending: Vec<Vec<usize>> = scores.iter().map(|s| select::ascending(s)).collect();
    Ok(allocation_order(&curves, &ascending))
}

/// Smallest global removal count whose pruned model fits `budget` MACs (binary search:
/// MACs only fall as more channels go), taking channels in the measured order.
fn by_budget(
    analysis: &Analysis,
    open: &[&Group],
    scores: &[Vec<f32>],
    budget: u64,
    options: &PruneOptions,
) -> Result<Vec<Vec<usize>>, PruneError> {
    let min = options.min_channels;
    let surgery = options.surgery;
    let macs_at =
        |order: &[(usize, usize)], count: usize| -> Result<(u64, Vec<Vec<usize>>), PruneError> {
            let removed = select::take_global(scores, order, count, min);
            let pairs: Vec<(&Group, &[usize])> = open
                .iter()
                .copied()
                .zip(removed.iter().map(Vec::as_slice))
                .collect();
            let (model, _) = cut_groups(&analysis.proto, &analysis.shapes, &pairs, surgery)?;
            Ok((model_cost(&model, &analysis.shapes).macs, removed))
        };
    let (lo_macs, none) = macs_at(&[], 0)?;
    if lo_macs <= budget {
        return Ok(none);
    }
    let max = select::max_removable(scores, min);
    let fallback = select::global_order(scores);
    let (best, _) = macs_at(&fallback, max)?;
    if best > budget {
        return Err(PruneError::BudgetUnreachable {
            budget,
            best: Some(best),
        });
    }
    let order = measured_order(analysis, open, scores, options)?;
    let (_, all) = macs_at(&order, max)?;
    let (mut lo, mut hi, mut found) = (0usize, max, all);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let (macs, removed) = macs_at(&order, mid)?;
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

/// Refits every conv a cut left with fewer input channels, in graph order, on the
/// calibration samples (see [`super::reconstruct`](mod@super::reconstruct)).
pub fn reconstruct(
    analysis: &Analysis,
    removed: &[Vec<usize>],
    outcomes: &[CutOutcome],
    model: &mut ModelProto,
    calib: &[Vec<f32>],
    options: ReconstructOptions,
) -> Result<Vec<ReconstructionReport>, PruneError> {
    let og = graph(&analysis.proto)?;
    let cuts: Vec<(&Group, &Vec<usize>, &CutOutcome)> = analysis
        .groups
        .iter()
        .zip(removed)
        .zip(outcomes)
        .filter(|((_, r), _)| !r.is_empty())
        .map(|((g, r), o)| (g, r, o))
        .collect();
    // A conv on a pooled vector is an attention MLP (or the classifier), applied to the
    // average and the max alike: refitting one application would break the weights they
    // share, and the compiler would no longer see one MLP.
    let reads_map = |conv: &String| {
        og.node
            .iter()
            .find(|n| &n.name == conv)
            .and_then(|n| n.input.first())
            .and_then(|x| analysis.shapes.get(x))
            .is_some_and(|s| s.iter().skip(2).product::<usize>() > 1)
    };
    let mut targets: Vec<ReconstructTarget> = Vec::new();
    for conv in cuts.iter().flat_map(|(_, _, o)| &o.consumer_convs) {
        if targets.iter().any(|t| &t.conv == conv) || !reads_map(conv) {
            continue;
        }
        let output = og
            .node
            .iter()
            .find(|n| &n.name == conv)
            .and_then(|n| n.output.first());
        let output_kept = cuts
            .iter()
            .find(|(_, _, o)| output.is_some_and(|v| o.cut_values.contains(v)))
            .map(|(g, r, _)| select::kept_from_removed(g.channels, r));
        targets.push(ReconstructTarget {
            conv: conv.clone(),
            output_kept,
        });
    }
    let cut_consumers: Vec<String> = targets.iter().map(|t| t.conv.clone()).collect();
    let cut_values: Vec<&String> = cuts.iter().flat_map(|(_, _, o)| &o.cut_values).collect();
    for conv in downstream_convs(og, &cut_consumers, options.downstream)
        .into_iter()
        .filter(|c| reads_map(c))
    {
        // A conv whose output a cut narrowed is refitted through its own cut, if at all.
        let narrowed = og
            .node
            .iter()
            .find(|n| n.name == conv)
            .and_then(|n| n.output.first())
            .is_some_and(|v| cut_values.contains(&v));
        if !narrowed {
            targets.push(ReconstructTarget {
                conv,
                output_kept: None,
            });
        }
    }
    reconstruct_consumers(
        &analysis.proto,
        model,
        &targets,
        &analysis.input_chw,
        &analysis.shapes,
        calib,
        options,
    )
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
        Selection::MacsFraction(f) => format!("macs-budget {}% of the original", f * 100.0),
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
    let (mut model, outcomes) = apply_cuts(&analysis, &removed, options.surgery)?;
    let reconstruction = match options.reconstruct {
        Some(r) => reconstruct(&analysis, &removed, &outcomes, &mut model, calib, r)?,
        None => Vec::new(),
    };
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
    let comparison = compare_other_criterion(&analysis, &removed, options, calib, &evaluate)?;
    let blocks = block_reports(&analysis, &removed, &outcomes);
    let report = PruneReport {
        criterion: options.criterion.to_string(),
        selection: selection_label(&options.selection),
        min_channels: format!("{:?}", options.min_channels),
        calibration_samples: analysis.calibration_samples,
        spatial_mean_compensated: options.surgery.compensate_spatial_mean,
        scope: options.scope,
        reconstruction,
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
    calib: &[Vec<f32>],
    evaluate: &dyn Fn(&ModelProto) -> Result<Option<f64>, PruneError>,
) -> Result<Option<ComparisonReport>, PruneError> {
    let cut_groups = analysis
        .groups
        .iter()
        .zip(removed)
        .filter(|(_, r)| !r.is_empty());
    if cut_groups.clone().any(|(g, _)| !g.has_attention_scores()) {
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
    let (mut model, outcomes) = apply_cuts(analysis, &other_removed, options.surgery)?;
    if let Some(r) = options.reconstruct {
        reconstruct(analysis, &other_removed, &outcomes, &mut model, calib, r)?;
    }
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
            kind: g.kind,
            channels: g.channels,
            kept: g.channels - r.len(),
            removed_channels: r.clone(),
            kept_channels: select::kept_from_removed(g.channels, r),
            residual_coupled: g.residual_coupled,
            scattered_adds: o.scattered_adds.clone(),
            skipped: g.blocked.clone(),
            attention: g.attention.clone(),
            propagated_attention: g.propagated.clone(),
            l1: g.l1.clone(),
        })
        .collect()
}

/// Top-1 accuracy in percent of `proto` on labelled samples.
fn accuracy(
    proto: &ModelProto,
    input_chw: &[usize],
    samples: &[Vec<f32>],
    labels: &[usize],
) -> Result<f64, PruneError> {
    if samples.is_empty() {
        return Err(PruneError::EmptyData("evaluation"));
    }
    let model = FloatModel::with_input_shape(proto, None, batch_of_one(input_chw))?;
    Ok(float_run::accuracy(&model, samples, labels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, kind: GroupKind, residual_coupled: bool) -> Group {
        Group {
            name: name.into(),
            feature: name.into(),
            channels: 8,
            kind,
            attention: None,
            propagated: None,
            l1: vec![1.0; 8],
            blocked: None,
            residual_coupled,
        }
    }

    #[test]
    fn nothing_prunable_points_to_the_scope_that_has_groups() {
        let coupled = vec![group("/r1/cbam/", GroupKind::Attended, true)];
        assert!(!coupled[0].in_scope(Scope::Auto));
        assert!(coupled[0].in_scope(Scope::Attended));
        let why = nothing_prunable_reason(&coupled, Scope::Auto);
        assert!(why.contains("--channels attended"), "{why}");

        let plain = vec![group("/cbam2/", GroupKind::Attended, false)];
        let why = nothing_prunable_reason(&plain, Scope::Internal);
        assert!(why.contains("--channels auto"), "{why}");

        let mut blocked = group("/cbam2/", GroupKind::Attended, false);
        blocked.blocked = Some("consumer is a Reshape".into());
        let why = nothing_prunable_reason(&[blocked], Scope::Auto);
        assert!(why.contains("consumer is a Reshape"), "{why}");

        let why = nothing_prunable_reason(&[], Scope::Auto);
        assert!(why.contains("--criterion l1"), "{why}");
    }
}
