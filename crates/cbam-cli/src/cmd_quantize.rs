//! `cbam quantize`: float ONNX + calibration data -> int8 `.cbam` blob, optional QDQ ONNX
//! and a JSON report. Outputs are written atomically, only after everything succeeded.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use cbam_compiler::calib::CalibMethod;
use cbam_compiler::data::{self, DataSource};
use cbam_compiler::pipeline::{self, Compiled, QuantizeOptions};
use cbam_compiler::qdq::QdqForm;
use cbam_compiler::quant::LowerOptions;
use cbam_compiler::schedule::ScheduleChoice;
use cbam_compiler::{import, passes};
use clap::{Args, ValueEnum};

use crate::limits::LimitArgs;
use crate::model_file;
use crate::norm::NormArgs;
use crate::outputs::{self, Staging};
use crate::progress;

/// The QDQ ONNX `--qdq` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QdqFormArg {
    /// Float ops between QuantizeLinear/DequantizeLinear, which onnxruntime and TFLite
    /// converters turn into their int8 kernels (close to the core, not bit for bit), with
    /// uint8 activations: onnxruntime's fast int8 path on x86 (uint8 activations, int8 weights)
    Standard,
    /// The standard form with int8 activations (the same values), for runtimes that want
    /// signed activations
    StandardS8,
    /// The core's integer arithmetic written exactly (bit-level reference for the core; slow)
    Exact,
}

impl From<QdqFormArg> for QdqForm {
    fn from(f: QdqFormArg) -> Self {
        match f {
            QdqFormArg::Standard => QdqForm::StandardU8,
            QdqFormArg::StandardS8 => QdqForm::StandardS8,
            QdqFormArg::Exact => QdqForm::Exact,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Observed minimum and maximum
    Minmax,
    /// Clip both tails at --percentile
    Percentile,
    /// Clip range with the least int8 mean squared error
    Mse,
    /// Clip threshold with the least KL divergence (TensorRT's entropy calibration)
    Entropy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Schedule {
    /// Whole tensors, the CBAM op in place
    InPlace,
    /// Whole tensors, nothing in place (TensorFlow Lite Micro's plan)
    Layer,
    /// Band-by-band stages around the largest layers
    Patch,
}

/// A byte count: a plain number, or with a `KB`/`K`/`KiB` or `MB`/`M`/`MiB` suffix (powers
/// of 1024, as MCU data sheets count SRAM).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let (number, unit) = [
        ("KIB", 1024.0),
        ("MIB", 1048576.0),
        ("KB", 1024.0),
        ("MB", 1048576.0),
        ("K", 1024.0),
        ("M", 1048576.0),
        ("B", 1.0),
    ]
    .iter()
    .find_map(|&(suffix, unit)| {
        upper
            .strip_suffix(suffix)
            .map(|n| (n.trim().to_string(), unit))
    })
    .unwrap_or((upper.clone(), 1.0));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a byte count; write e.g. 98304, 96KB or 0.5MB"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!(
            "`{text}`: the budget must be a positive number of bytes"
        ));
    }
    Ok((value * unit).floor() as usize)
}

#[derive(Debug, Clone, Args)]
#[command(
    about = "Quantize a float ONNX model to an int8 .cbam blob (and optionally a QDQ ONNX)",
    after_help = "\
Examples:
  cbam quantize models/example.onnx \\
      --calib /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --limit 512 \\
      --out example.cbam --qdq example.int8.onnx --report example.report.json
  cbam quantize model.onnx --calib calib.npy --out model.cbam \
      --qdq model.exact.onnx --qdq-form exact     # bit-level reference for the core
  cbam quantize model.onnx --calib calib_images/ --method percentile --out model.cbam
  cbam quantize model.onnx --calib calib.npy --out model.cbam --no-bias-correction

The calibration DATA takes the same forms as `cbam eval --data`: a .npy float32 array
[N,C,H,W], an ImageFolder DIR/<class>/*.png|jpg, an IDX images file or a .u8 file.
A few hundred representative images are typical. Nothing is written unless quantization
succeeds; each output is replaced atomically."
)]
pub struct QuantizeArgs {
    /// The float ONNX model
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Calibration data
    #[arg(long, value_name = "DATA")]
    pub calib: PathBuf,
    /// Labels of the calibration data (only checked for consistency)
    #[arg(long, value_name = "L")]
    pub calib_labels: Option<PathBuf>,
    /// Where to write the int8 blob
    #[arg(long, value_name = "OUT.cbam")]
    pub out: PathBuf,
    /// Also write a QDQ ONNX with the blob's scales and weights (for onnxruntime, TensorRT,
    /// TFLite converters or tract); it keeps the model's batch axis
    #[arg(long, value_name = "OUT.onnx")]
    pub qdq: Option<PathBuf>,
    /// Which QDQ ONNX --qdq writes
    #[arg(long, value_enum, default_value_t = QdqFormArg::Standard, requires = "qdq")]
    pub qdq_form: QdqFormArg,
    /// How activation ranges are chosen from the calibration values
    #[arg(long, value_enum, default_value_t = Method::Minmax)]
    pub method: Method,
    /// Percentile kept by --method percentile
    #[arg(long, default_value_t = 99.99, value_name = "P")]
    pub percentile: f64,
    /// Write the JSON report (per-layer ranges and SQNR, arena/blob/weight bytes)
    #[arg(long, value_name = "R.json")]
    pub report: Option<PathBuf>,
    /// Use only the first N calibration samples
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Skip the empirical bias correction (on by default: each conv/linear bias is shifted
    /// by the mean int8-vs-float error measured on the calibration images)
    #[arg(long)]
    pub no_bias_correction: bool,
    /// Round weights to nearest instead of choosing up or down by each layer's output
    /// error on the calibration images (the choice is made in the bias-correction pass)
    #[arg(long)]
    pub nearest_rounding: bool,
    /// Also choose each activation's range among minmax, percentile and MSE by the output
    /// logit error (slower; off by default: it did not help the example models)
    #[arg(long)]
    pub range_search: bool,
    /// Keep the output's full min-max range (by default, with bias correction, the output
    /// range starts just below the lowest winning logit seen in calibration: finer steps
    /// where the top-1 is decided; the logits of unlikely classes saturate)
    #[arg(long)]
    pub full_output_range: bool,
    /// Also shift the CBAM blocks' pre-sigmoid biases by their measured int8-vs-float error
    /// (off by default: it did not help the example models on held-out images)
    #[arg(long)]
    pub attention_bias_correction: bool,
    /// Keep each CBAM scaling's calibrated output scale (by default it is rounded down to
    /// the block input's scale times a power of two, so the scalings requantize with a
    /// shift: the fast path of the Cortex-M4 kernels)
    #[arg(long)]
    pub calibrated_cbam_scales: bool,
    /// The most arena bytes the target can give (e.g. 98304, 96KB, 0.1MB; KB = 1024 bytes):
    /// the cheapest schedule that fits is written (whole tensors if they fit, else stages
    /// that run band by band, the ops before a CBAM block in one running once or twice more
    /// for its attention); an error says by how much the
    /// smallest misses
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, conflicts_with = "schedule")]
    pub ram_budget: Option<usize>,
    /// The schedule to write whatever the arena: `in-place` (whole tensors, CBAM over its
    /// input), `layer` (whole tensors, nothing in place) or `patch` (the smallest arena
    /// whose band-by-band stages add at most 15% MACs)
    #[arg(long, value_enum, default_value_t = Schedule::InPlace)]
    pub schedule: Schedule,
    #[command(flatten)]
    pub norm: NormArgs,
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitArgs,
}

impl QuantizeArgs {
    fn calib_method(&self) -> Result<CalibMethod> {
        Ok(match self.method {
            Method::Minmax => CalibMethod::MinMax,
            Method::Mse => CalibMethod::Mse,
            Method::Entropy => CalibMethod::Entropy,
            Method::Percentile => {
                ensure!(
                    self.percentile > 50.0 && self.percentile <= 100.0,
                    "--percentile {} is outside (50, 100]; 99.9 or 99.99 are typical",
                    self.percentile
                );
                CalibMethod::Percentile(self.percentile)
            }
        })
    }

    fn inputs(&self) -> Vec<(&'static str, &Path)> {
        let mut ins = vec![
            ("the input model", self.model.as_path()),
            ("the calibration data", self.calib.as_path()),
        ];
        ins.extend(self.calib_labels.as_deref().map(|l| ("--calib-labels", l)));
        ins
    }

    fn outputs(&self) -> Vec<(&'static str, &Path)> {
        let mut outs = vec![("--out", self.out.as_path())];
        outs.extend(self.qdq.as_deref().map(|q| ("--qdq", q)));
        outs.extend(self.report.as_deref().map(|r| ("--report", r)));
        outs
    }
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let method = args.calib_method()?;
    outputs::check(&args.inputs(), &args.outputs())?;
    let limits = args.limits.limits();
    let bytes = model_file::read(&args.model)?;
    let spec = args
        .norm
        .apply(model_file::onnx_input_spec(&args.model, &bytes, &limits)?)?;
    let classes = classes(&args.model)?;
    let source = DataSource {
        data: args.calib.clone(),
        labels: args.calib_labels.clone(),
        limit: args.limit,
    };
    let dataset = data::load_within(&source, &spec, limits.max_data_bytes)
        .with_context(|| format!("cannot load calibration data {}", args.calib.display()))?;
    ensure!(
        !dataset.is_empty(),
        "{} holds no calibration samples (or --limit is 0); give a few hundred images",
        args.calib.display()
    );
    if let Some(labels) = &args.calib_labels {
        data::check_labels(&dataset, labels, classes)?;
    }
    for note in &dataset.notes {
        errln!("note: {note}");
    }
    let inputs: Vec<Vec<f32>> = dataset.samples.into_iter().map(|s| s.input).collect();

    let opts = QuantizeOptions {
        method,
        qdq: args.qdq.is_some(),
        qdq_form: args.qdq_form.into(),
        bias_correction: !args.no_bias_correction,
        optimise_rounding: !args.nearest_rounding && !args.no_bias_correction,
        range_search: args.range_search,
        top1_output_range: Some(!args.full_output_range && !args.no_bias_correction),
        attention_bias_correction: args.attention_bias_correction && !args.no_bias_correction,
        lower: LowerOptions {
            cbam_pow2_scales: !args.calibrated_cbam_scales,
            ..LowerOptions::default()
        },
        normalization: args.norm.given(),
        preprocess: spec.preprocess,
        schedule: match (args.ram_budget, args.schedule) {
            (Some(budget), _) => ScheduleChoice::Budget(budget),
            (None, Schedule::InPlace) => ScheduleChoice::InPlace,
            (None, Schedule::Layer) => ScheduleChoice::LayerByLayer,
            (None, Schedule::Patch) => ScheduleChoice::Patch,
        },
        ..QuantizeOptions::default()
    };
    let bar = progress::bar(inputs.len(), "calibrating");
    let compiled = pipeline::quantize(&args.model, &inputs, &opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("cannot quantize {}", args.model.display()))?;
    bar.finish_and_clear();

    write_outputs(args, &compiled)?;
    out!("{}", summary(args, &compiled))?;
    Ok(())
}

/// Classes of the float model: its output, after the passes, must be a vector of scores.
fn classes(model: &Path) -> Result<usize> {
    let graph = import::load_onnx(model)
        .map_err(anyhow::Error::from)
        .and_then(|g| Ok(passes::optimize(g)?))
        .with_context(|| format!("cannot quantize {}", model.display()))?;
    let shape = graph
        .tensors
        .get(graph.output)
        .map(|t| t.shape.clone())
        .unwrap_or_default();
    data::class_count(&shape).with_context(|| {
        format!(
            "cannot quantize {}: the output {shape:?} is not a vector of class scores; \
             cbam quantizes image classifiers (export the logits, e.g. shape [1, 10])",
            model.display()
        )
    })
}

/// Every output staged, then all renamed together.
fn write_outputs(args: &QuantizeArgs, compiled: &Compiled) -> Result<()> {
    let mut staging = Staging::default();
    staging.add(&args.out, &compiled.blob)?;
    if let (Some(path), Some(qdq)) = (&args.qdq, &compiled.qdq) {
        staging.add(path, qdq)?;
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&compiled.report)?;
        staging.add(path, &json)?;
    }
    staging.commit()?;
    Ok(())
}

fn summary(args: &QuantizeArgs, compiled: &Compiled) -> String {
    let r = &compiled.report;
    let mut text = format!(
        "wrote {} ({} bytes: {} weight bytes; arena {} bytes; {} MACs)\n",
        args.out.display(),
        r.blob_bytes,
        r.weight_bytes,
        r.arena_bytes,
        r.macs
    );
    let a = &r.schedules;
    let percent = |extra: u64| extra as f64 * 100.0 / r.macs.max(1) as f64;
    text.push_str(&format!(
        "arena: layer-by-layer {} B, in-place {} B, patch {} B ({:.2}x layer-by-layer, +{} MACs = +{:.1}%); written: {}\n",
        a.layer_by_layer,
        a.in_place,
        a.patch,
        f64::from(a.patch) / f64::from(a.layer_by_layer.max(1)),
        a.patch_extra_macs,
        percent(a.patch_extra_macs),
        a.chosen
    ));
    if let Some(path) = &args.qdq {
        text.push_str(&format!("wrote {}\n", path.display()));
    }
    if let Some(path) = &args.report {
        text.push_str(&format!("wrote {}\n", path.display()));
    }
    text.push_str(&format!(
        "calibration: {} on {} images; input {}\n",
        r.method,
        r.calibration_images,
        if r.input.raw_pixels {
            "takes raw pixels (q = pixel - 128)"
        } else {
            "is quantized from the normalised float"
        }
    ));
    if let Some(a) = r.top1_agreement {
        text.push_str(&format!(
            "top-1 agreement int8 vs float on {} calibration images: {:.2}%\n",
            r.sqnr_images,
            a * 100.0
        ));
    }
    for technique in r.techniques.iter().skip(1) {
        text.push_str(&format!("applied: {technique}\n"));
    }
    for note in &r.notes {
        text.push_str(&format!("note: {note}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: QuantizeArgs,
    }

    #[test]
    fn method_and_percentile_parse() {
        let cli = Cli::try_parse_from([
            "q",
            "m.onnx",
            "--calib",
            "c.npy",
            "--out",
            "m.cbam",
            "--method",
            "percentile",
            "--percentile",
            "99.9",
        ])
        .unwrap();
        assert_eq!(
            cli.args.calib_method().unwrap(),
            CalibMethod::Percentile(99.9)
        );
        let bad = Cli::try_parse_from([
            "q",
            "m.onnx",
            "--calib",
            "c",
            "--out",
            "o",
            "--method",
            "percentile",
            "--percentile",
            "20",
        ])
        .unwrap();
        assert!(bad.args.calib_method().is_err());
    }

    #[test]
    fn bias_correction_is_on_unless_turned_off() {
        let base = ["q", "m.onnx", "--calib", "c", "--out", "m.cbam"];
        let on = Cli::try_parse_from(base).unwrap();
        assert!(!on.args.no_bias_correction && !on.args.nearest_rounding);
        assert!(!on.args.range_search && !on.args.full_output_range);
        assert!(!on.args.attention_bias_correction && !on.args.calibrated_cbam_scales);
        let flags = [
            "--calibrated-cbam-scales",
            "--no-bias-correction",
            "--nearest-rounding",
            "--range-search",
            "--full-output-range",
            "--attention-bias-correction",
        ];
        let off = Cli::try_parse_from(base.iter().chain(&flags)).unwrap();
        assert!(off.args.no_bias_correction && off.args.nearest_rounding);
        assert!(off.args.range_search && off.args.full_output_range);
        assert!(off.args.attention_bias_correction && off.args.calibrated_cbam_scales);
    }

    #[test]
    fn refuses_to_overwrite_the_model_or_write_into_a_missing_directory() {
        let check = |cli: &Cli| outputs::check(&cli.args.inputs(), &cli.args.outputs());
        let cli = Cli::try_parse_from(["q", "m.onnx", "--calib", "c", "--out", "m.onnx"]).unwrap();
        assert!(check(&cli).is_err());
        let cli = Cli::try_parse_from(["q", "m.onnx", "--calib", "c", "--out", "c"]).unwrap();
        assert!(check(&cli).is_err());
        let cli = Cli::try_parse_from([
            "q",
            "m.onnx",
            "--calib",
            "c",
            "--out",
            "/no/such/dir/m.cbam",
        ])
        .unwrap();
        let msg = check(&cli).unwrap_err().to_string();
        assert!(msg.contains("/no/such/dir"), "{msg}");
    }
}
