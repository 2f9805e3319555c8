//! `cbam prune`: rank channels by CBAM channel attention (or filter L1 norm) on calibration
//! data, remove the weakest from the float ONNX, and report what that cost and saved.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cbam_compiler::data::{self, DataSource, Dataset};
use cbam_compiler::float_run::FloatModel;
use cbam_compiler::limits::Limits;
use cbam_compiler::prune::{
    self, Analysis, Criterion, MinChannels, PruneOptions, ReconstructOptions, Scope, Selection,
    SurgeryOptions,
};
use clap::{Args, ValueEnum};

use crate::limits::LimitArgs;
use crate::model_file;
use crate::norm::NormArgs;
use crate::outputs::{self, Staging};
use crate::plots;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CriterionArg {
    /// Mean CBAM channel attention on the calibration set
    Attention,
    /// L1 norm of the producer conv's filters (baseline; works without CBAM)
    L1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelsArg {
    /// Every group removable outright: channels inside a block and CBAM feature maps no
    /// residual Add couples (a plain CNN's)
    Auto,
    /// Conv outputs used only inside a block (a residual block's conv1)
    Internal,
    /// CBAM feature maps, residual-coupled ones included (scattered back before the Add)
    Attended,
    /// Every group, residual-coupled ones included
    All,
}

#[derive(Debug, Clone, Args)]
#[command(
    about = "Remove the channels CBAM's channel attention rarely attends to",
    after_help = "\
Examples:
  # look first: attention table and one bar chart per block
  cbam prune models/fmnist_cbam_res.onnx --calib models/data/calib256_images.u8 \\
      --stats-only --plots plots/ --ratio 0.4
  # remove 40% of every block's channels, measure float accuracy before/after
  cbam prune models/fmnist_cbam_res.onnx --calib models/data/calib256_images.u8 --ratio 0.4 \\
      --data models/data/test64_images.u8 --labels models/data/test64_labels.u8 \\
      --out res.pruned.onnx --report prune.json
  # prune until the model needs at most 7.5 M multiply-accumulates (or 75% of its MACs)
  cbam prune models/fmnist_cbam.onnx --calib calib.npy --macs-budget 7500000
  cbam prune models/fmnist_cbam_res.onnx --calib models/data/calib256_images.u8 --macs-budget 75%
  # which channels may go: only inside residual blocks, or also the residual-coupled ones
  cbam prune models/fmnist_cbam_res.onnx --calib models/data/calib256_images.u8 \\
      --channels internal --ratio 0.3
  cbam prune models/fmnist_cbam_res.onnx --calib models/data/calib256_images.u8 \\
      --channels attended --ratio 0.5 --no-reconstruct
  cbam prune models/fmnist_cbam_res.onnx --calib models/data/calib256_images.u8 \\
      --channels all --macs-budget 70%
  # an RGB model without normalisation metadata, calibrated on an ImageFolder
  cbam prune models/rgb_resnet_cbam64.onnx --calib models/data/rgb/calib256_64 \\
      --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --ratio 0.3
  # a model without CBAM: rank by filter L1 norm
  cbam prune models/variants/fmnist_plain.onnx --calib models/data/calib256_images.u8 \\
      --criterion l1 --ratio 0.3

Exactly one of --ratio, --threshold, --macs-budget selects channels (optional with
--stats-only, where it only draws the cut). By default (--channels auto) every channel that
can be removed outright may go: a residual block's conv1 outputs (ranked by CBAM attention
propagated through conv2) and the CBAM feature maps of a plain CNN, which no residual Add
couples; the conv reading them, and the next conv down, are refitted by least squares on
the calibration images.
Channels are ranked by every channel attention the compiler recognises (what `cbam inspect`
lists): CBAM blocks, and SE-style gates (a feature map multiplied by a per-channel sigmoid or
hard sigmoid).
--channels attended|all also cut CBAM feature maps that a residual Add couples: those are
computed only where kept and scattered back to full width before the Add, where no refit
can compensate them. Nothing is written when an error occurs."
)]
pub struct PruneArgs {
    /// The float ONNX model
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Calibration data (same formats as `cbam eval --data`)
    #[arg(long, value_name = "DATA")]
    pub calib: PathBuf,
    /// Use only the first N calibration samples
    #[arg(long, value_name = "N")]
    pub calib_limit: Option<usize>,
    /// Fraction of channels to remove, strictly between 0 and 1
    #[arg(long, value_name = "R", conflicts_with_all = ["threshold", "macs_budget"])]
    pub ratio: Option<f64>,
    /// With --ratio: rank all blocks' channels together instead of per block
    #[arg(long, requires = "ratio")]
    pub global: bool,
    /// Remove channels scoring below T: mean attention for CBAM feature maps, attention
    /// propagated through the consumer conv relative to the block's best (0..1) for internal
    /// channels
    #[arg(long, value_name = "T", conflicts_with = "macs_budget")]
    pub threshold: Option<f32>,
    /// Remove channels until the model needs at most N MACs, or P% of its MACs; spent
    /// where the measured damage per MAC saved is least
    #[arg(long, value_name = "N|P%", value_parser = parse_budget)]
    pub macs_budget: Option<Selection>,
    /// Channels every block keeps: a count (8) or a percentage of the block (25%)
    #[arg(long, value_name = "N|P%", default_value = "25%", value_parser = parse_min_channels)]
    pub min_channels: MinChannels,
    /// What ranks channels
    #[arg(long, value_enum, default_value_t = CriterionArg::Attention)]
    pub criterion: CriterionArg,
    /// Which channels may be removed
    #[arg(long, value_enum, default_value_t = ChannelsArg::Auto)]
    pub channels: ChannelsArg,
    /// Do not rescale the spatial attention's channel mean by K/N after pruning
    #[arg(long)]
    pub no_mean_compensation: bool,
    /// Plain cut: do not refit the convs that lose input channels on the calibration set
    #[arg(long)]
    pub no_reconstruct: bool,
    /// Ridge term of the refit, relative to the mean feature energy
    #[arg(long, value_name = "L", default_value_t = ReconstructOptions::default().ridge)]
    pub ridge: f64,
    /// Also refit the plain convs up to N convs after each refitted one, on the pruned
    /// model's inputs (absorbs the error the first refit lets through)
    #[arg(long, value_name = "N", default_value_t = ReconstructOptions::default().downstream)]
    pub refit_downstream: usize,
    /// Labelled data for float accuracy before/after
    #[arg(long, value_name = "DATA")]
    pub data: Option<PathBuf>,
    /// Labels for --data (.npy, IDX or .u8)
    #[arg(long, value_name = "L", requires = "data")]
    pub labels: Option<PathBuf>,
    /// Use only the first N samples of --data
    #[arg(long, value_name = "N", requires = "data")]
    pub limit: Option<usize>,
    /// Pruned model path (default: MODEL.pruned.onnx)
    #[arg(long, value_name = "OUT.onnx")]
    pub out: Option<PathBuf>,
    /// Write the JSON report here
    #[arg(long, value_name = "R.json")]
    pub report: Option<PathBuf>,
    /// Only print the statistics table (and write --plots); no pruned model
    #[arg(long)]
    pub stats_only: bool,
    /// Directory for one PNG bar chart per block
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    #[command(flatten)]
    pub norm: NormArgs,
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitArgs,
}

fn parse_budget(text: &str) -> Result<Selection, String> {
    let text = text.trim();
    if let Some(pct) = text.strip_suffix('%') {
        let p: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage like 75%"))?;
        return Ok(Selection::MacsFraction(p / 100.0));
    }
    text.parse::<u64>()
        .map(Selection::MacsBudget)
        .map_err(|_| format!("`{text}` is neither a MAC count (7500000) nor a percentage (75%)"))
}

fn parse_min_channels(text: &str) -> Result<MinChannels, String> {
    let text = text.trim();
    if let Some(pct) = text.strip_suffix('%') {
        let p: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage like 25%"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!("{p}% is outside 0..100%"));
        }
        return Ok(MinChannels::Fraction(p / 100.0));
    }
    text.parse::<usize>()
        .map(MinChannels::Count)
        .map_err(|_| format!("`{text}` is neither a channel count (8) nor a percentage (25%)"))
}

impl PruneArgs {
    fn selection(&self) -> Option<Selection> {
        if let Some(ratio) = self.ratio {
            return Some(Selection::Ratio {
                ratio,
                global: self.global,
            });
        }
        if let Some(t) = self.threshold {
            return Some(Selection::Threshold(t));
        }
        self.macs_budget
    }

    fn criterion(&self) -> Criterion {
        match self.criterion {
            CriterionArg::Attention => Criterion::Attention,
            CriterionArg::L1 => Criterion::L1,
        }
    }

    fn scope(&self) -> Scope {
        match self.channels {
            ChannelsArg::Auto => Scope::Auto,
            ChannelsArg::Internal => Scope::Internal,
            ChannelsArg::Attended => Scope::Attended,
            ChannelsArg::All => Scope::All,
        }
    }

    fn reconstruct(&self) -> Result<Option<ReconstructOptions>> {
        if self.no_reconstruct {
            return Ok(None);
        }
        if !(self.ridge.is_finite() && self.ridge > 0.0) {
            bail!("--ridge must be a positive number, got {}", self.ridge);
        }
        Ok(Some(ReconstructOptions {
            ridge: self.ridge,
            downstream: self.refit_downstream,
            ..ReconstructOptions::default()
        }))
    }

    fn out_path(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.model.with_extension("pruned.onnx"))
    }

    fn inputs(&self) -> Vec<(&'static str, &Path)> {
        let mut ins = vec![
            ("the input model", self.model.as_path()),
            ("the calibration data", self.calib.as_path()),
        ];
        ins.extend(self.data.as_deref().map(|d| ("--data", d)));
        ins.extend(self.labels.as_deref().map(|l| ("--labels", l)));
        ins
    }

    /// Fails before any work when an output would replace an input or another output, or
    /// cannot be written where asked.
    fn check_outputs(&self, out: &Path) -> Result<()> {
        let mut outs = Vec::new();
        if !self.stats_only {
            outs.push(("--out", out));
            outs.extend(self.report.as_deref().map(|r| ("--report", r)));
        }
        outputs::check(&self.inputs(), &outs)?;
        if let Some(dir) = &self.plots {
            if dir.exists() && !dir.is_dir() {
                bail!("--plots {} is a file; give a directory", dir.display());
            }
        }
        Ok(())
    }
}

fn load_inputs(
    model: &Path,
    source: DataSource,
    what: &str,
    norm: &NormArgs,
    limits: &Limits,
) -> Result<Dataset> {
    let bytes = model_file::read(model)?;
    let spec = norm.apply(model_file::onnx_input_spec(model, &bytes, limits)?)?;
    let shown = source.data.display().to_string();
    let set = data::load_within(&source, &spec, limits.max_data_bytes)
        .with_context(|| format!("cannot load {what} data {shown}"))?;
    if set.is_empty() {
        bail!("{what} data {shown} holds no samples");
    }
    Ok(set)
}

pub fn run(args: &PruneArgs) -> Result<()> {
    let selection = args.selection();
    if let Some(sel) = &selection {
        prune::select::validate(sel)?;
    } else if !args.stats_only {
        bail!("choose how many channels to remove: --ratio R, --threshold T or --macs-budget N (or use --stats-only)");
    }
    let out = args.out_path();
    args.check_outputs(&out)?;
    let limits = args.limits.limits();
    let proto = prune::load_proto(&args.model)?;
    model_file::vet_onnx(&args.model, &proto)?;
    let calib_source = DataSource {
        data: args.calib.clone(),
        labels: None,
        limit: args.calib_limit,
    };
    let calib = load_inputs(
        &args.model,
        calib_source,
        "calibration",
        &args.norm,
        &limits,
    )?;
    let calib: Vec<Vec<f32>> = calib.samples.into_iter().map(|s| s.input).collect();
    let options = PruneOptions {
        criterion: args.criterion(),
        selection: selection.unwrap_or(Selection::Ratio {
            ratio: 0.5,
            global: false,
        }),
        min_channels: args.min_channels,
        surgery: SurgeryOptions {
            compensate_spatial_mean: !args.no_mean_compensation,
        },
        scope: args.scope(),
        reconstruct: args.reconstruct()?,
    };
    if args.stats_only {
        return stats_only(args, &proto, &calib, &options, selection.is_some());
    }
    let eval = match &args.data {
        Some(path) => {
            let source = DataSource {
                data: path.clone(),
                labels: args.labels.clone(),
                limit: args.limit,
            };
            let set = load_inputs(&args.model, source, "evaluation", &args.norm, &limits)?;
            if !set.has_labels() {
                bail!(
                    "--data {} has no labels; pass --labels for accuracy",
                    path.display()
                );
            }
            let float = FloatModel::from_proto(&proto, None)
                .with_context(|| format!("tract cannot run {}", args.model.display()))?;
            let classes = model_file::onnx_classes(&args.model, &float)?;
            data::check_labels(&set, args.labels.as_deref().unwrap_or(path), classes)?;
            let labels: Vec<usize> = set.samples.iter().filter_map(|s| s.label).collect();
            Some((
                set.samples.into_iter().map(|s| s.input).collect::<Vec<_>>(),
                labels,
            ))
        }
        None => None,
    };
    let outcome = prune::prune(
        &proto,
        &calib,
        eval.as_ref().map(|(x, y)| (x.as_slice(), y.as_slice())),
        &options,
    )?;
    let report_json = serde_json::to_vec_pretty(&outcome.report)?;
    let mut staging = Staging::default();
    staging.add(&out, &prune::encode_proto(&outcome.model))?;
    if let Some(path) = &args.report {
        staging.add(path, &report_json)?;
    }
    staging.commit()?;
    print_summary(&outcome.report, &out)
}

fn print_summary(r: &prune::report::PruneReport, out: &Path) -> Result<()> {
    outln!(
        "{:<28} {:>8} {:>6} {:>8}  residual",
        "block",
        "channels",
        "kept",
        "removed"
    )?;
    for b in &r.blocks {
        let residual = if b.scattered_adds.is_empty() {
            "-".to_string()
        } else {
            b.scattered_adds.join(",")
        };
        let skipped = b
            .skipped
            .as_ref()
            .map(|s| format!("  (skipped: {s})"))
            .unwrap_or_default();
        outln!(
            "{:<28} {:>8} {:>6} {:>8}  {residual}{skipped}",
            b.name,
            b.channels,
            b.kept,
            b.removed_channels.len()
        )?;
    }
    outln!(
        "MACs {} -> {} (-{:.1}%), params {} -> {} (-{:.1}%)",
        r.before.macs,
        r.after.macs,
        r.macs_reduction_pct,
        r.before.params,
        r.after.params,
        r.params_reduction_pct
    )?;
    if let Some(a) = &r.accuracy {
        outln!(
            "float accuracy on {} samples: {:.2}% -> {:.2}%",
            a.samples,
            a.before_pct,
            a.after_pct
        )?;
    }
    if let Some(c) = &r.comparison {
        let acc = c
            .accuracy_after_pct
            .map(|a| format!(", float accuracy {a:.2}%"))
            .unwrap_or_default();
        outln!(
            "{} ranking at the same counts: MACs {}{acc}",
            c.criterion,
            c.after.macs
        )?;
    }
    outln!("wrote {}", out.display())?;
    Ok(())
}

fn stats_only(
    args: &PruneArgs,
    proto: &prune::onnx_pb::ModelProto,
    calib: &[Vec<f32>],
    options: &PruneOptions,
    preview_cut: bool,
) -> Result<()> {
    let analysis = prune::analyze(proto, calib, options.criterion)?;
    let removed = if preview_cut {
        prune::select_channels(&analysis, options)?
    } else {
        vec![Vec::new(); analysis.groups.len()]
    };
    let threshold = match options.selection {
        Selection::Threshold(t) if preview_cut => Some(t),
        _ => None,
    };
    let mut charts = Vec::new();
    for (i, (group, cut)) in analysis.groups.iter().zip(&removed).enumerate() {
        print_group_table(group, cut)?;
        if args.plots.is_some() {
            let scores = group.scores(options.criterion);
            let attention =
                options.criterion == Criterion::Attention && group.has_attention_scores();
            let img = plots::attention::chart(&plots::attention::ChartInput {
                block: &group.name,
                scores: &scores,
                p10: group.attention.as_ref().map(|a| a.p10.as_slice()),
                removed: cut,
                threshold,
                attention,
            })?;
            charts.push((chart_name(i, &group.name), plots::encode_png(&img)?));
        }
    }
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let paths: Vec<PathBuf> = charts.iter().map(|(name, _)| dir.join(name)).collect();
        let outs: Vec<(&str, &Path)> = paths
            .iter()
            .map(|p| ("a --plots chart", p.as_path()))
            .collect();
        outputs::check(&args.inputs(), &outs)?;
        let mut staging = Staging::default();
        for (path, (_, png)) in paths.iter().zip(&charts) {
            staging.add(path, png)?;
        }
        for path in staging.commit()? {
            outln!("wrote {}", path.display())?;
        }
    }
    print_blocked(&analysis)
}

fn chart_name(index: usize, block: &str) -> String {
    let clean: String = block
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_string();
    format!("block{index:02}_{clean}.png")
}

fn print_group_table(group: &prune::Group, cut: &[usize]) -> Result<()> {
    outln!(
        "\n{} ({:?}, {} channels, feature `{}`)",
        group.name,
        group.kind,
        group.channels,
        group.feature
    )?;
    outln!(
        "{:>7} {:>10} {:>10} {:>10}  cut",
        "channel",
        "mean",
        "p10",
        "l1"
    )?;
    let mean = group
        .attention
        .as_ref()
        .map(|a| a.mean.clone())
        .or_else(|| group.propagated.clone());
    let p10 = group.attention.as_ref().map(|a| a.p10.clone());
    let mut order: Vec<usize> = (0..group.channels).collect();
    let key = mean.clone().unwrap_or_else(|| group.l1.clone());
    order.sort_by(|&a, &b| {
        key.get(a)
            .unwrap_or(&0.0)
            .total_cmp(key.get(b).unwrap_or(&0.0))
    });
    let fmt = |v: Option<&Vec<f32>>, c: usize| {
        v.and_then(|v| v.get(c))
            .map(|x| format!("{x:.4}"))
            .unwrap_or_else(|| "-".into())
    };
    for c in order {
        let mark = if cut.contains(&c) { "x" } else { "" };
        outln!(
            "{c:>7} {:>10} {:>10} {:>10}  {mark}",
            fmt(mean.as_ref(), c),
            fmt(p10.as_ref(), c),
            fmt(Some(&group.l1), c)
        )?;
    }
    Ok(())
}

fn print_blocked(analysis: &Analysis) -> Result<()> {
    for g in analysis.groups.iter().filter(|g| g.blocked.is_some()) {
        outln!(
            "note: {} cannot be pruned: {}",
            g.name,
            g.blocked.clone().unwrap_or_default()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_channels_parses_counts_and_percentages() {
        assert_eq!(parse_min_channels("8"), Ok(MinChannels::Count(8)));
        assert_eq!(parse_min_channels("25%"), Ok(MinChannels::Fraction(0.25)));
        assert!(parse_min_channels("150%").is_err());
        assert!(parse_min_channels("many").is_err());
    }

    #[test]
    fn budget_parses_counts_and_percentages() {
        assert_eq!(
            parse_budget("7500000"),
            Ok(Selection::MacsBudget(7_500_000))
        );
        assert_eq!(parse_budget("75%"), Ok(Selection::MacsFraction(0.75)));
        assert!(parse_budget("lots").is_err());
    }

    #[test]
    fn chart_names_are_file_safe() {
        assert_eq!(chart_name(1, "/r1/cbam/"), "block01_r1_cbam.png");
    }
}
