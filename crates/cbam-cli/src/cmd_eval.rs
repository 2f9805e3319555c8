//! `cbam eval`: top-1 accuracy of a float/QDQ ONNX model (tract) or a `.cbam` blob (the
//! int8 core) on a data source, and its agreement with a reference model. With `--device`
//! the blob runs on a board instead ([`device`]).

mod device;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use cbam_compiler::data::{self, DataSource, Dataset, InputSpec};
use cbam_compiler::float_run::FloatModel;
use clap::Args;
use serde::Serialize;

use crate::model_file::{self, ModelKind};
use crate::progress;

#[derive(Debug, Clone, Args)]
#[command(
    about = "Measure top-1 accuracy of an ONNX model (tract) or a .cbam blob (int8 core)",
    after_help = "\
Examples:
  # int8 blob vs its float source on the Fashion-MNIST test set
  cbam eval example.cbam \\
      --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\
      --labels /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \\
      --reference models/example.onnx --json
  # a float model on an ImageFolder (labels are the sorted class folders)
  cbam eval models/example.onnx --data images/ --limit 500
  # the blob on a board through its firmware (QEMU here), every output checked vs the host
  cbam eval models/fmnist_cbam.cbam --device mps2-an386 \\
      --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\
      --labels /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --limit 1000

DATA is a .npy float32 array [N,C,H,W] (labels from --labels L.npy), an ImageFolder
DIR/<class>/*.png|jpg, an IDX images file (.gz or raw; labels from the idx1 file) or a .u8
file of N images at the model's input size (labels from a .u8 file, one byte each).
JSON: {\"n\", \"accuracy\", \"agreement\" (with --reference), \"backend\", ...}."
)]
pub struct EvalArgs {
    /// The model: float or QDQ .onnx (run by tract) or .cbam (run by the int8 core)
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Evaluation data (see below)
    #[arg(long, value_name = "DATA")]
    pub data: PathBuf,
    /// Labels for .npy, IDX or .u8 data
    #[arg(long, value_name = "L")]
    pub labels: Option<PathBuf>,
    /// A second model run on the same inputs; reports top-1 agreement with it (0..1)
    #[arg(long, value_name = "FLOAT.onnx")]
    pub reference: Option<PathBuf>,
    /// Use only the first N samples
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: device::DeviceArgs,
}

/// A model opened for evaluation: its bytes and what it is.
struct Subject {
    path: PathBuf,
    bytes: Vec<u8>,
    kind: ModelKind,
}

impl Subject {
    fn open(path: &Path) -> Result<Self> {
        let bytes = model_file::read(path)?;
        let kind = model_file::kind_of(path, &bytes);
        Ok(Subject {
            path: path.to_path_buf(),
            bytes,
            kind,
        })
    }

    fn backend(&self) -> &'static str {
        match self.kind {
            ModelKind::Onnx => "tract",
            ModelKind::Blob => "int8-core",
        }
    }
}

#[derive(Debug, Serialize)]
struct ModelResult {
    model: String,
    backend: &'static str,
    accuracy: Option<f64>,
    ms_per_sample: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    data: String,
    n: usize,
    accuracy: Option<f64>,
    /// Top-1 agreement with the reference model, 0..1.
    #[serde(skip_serializing_if = "Option::is_none")]
    agreement: Option<f64>,
    backend: &'static str,
    model: String,
    ms_per_sample: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<ModelResult>,
    notes: Vec<String>,
}

/// The model, the optional reference and the data, loaded and checked against each other.
struct Prepared {
    subject: Subject,
    reference: Option<Subject>,
    dataset: Dataset,
    notes: Vec<String>,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    if let Some(board) = &args.device.device {
        return device::run(args, board);
    }
    let Prepared {
        subject,
        reference,
        dataset,
        notes,
    } = prepare(args)?;
    let (predictions, ms) = predict(&subject, &dataset)?;
    let accuracy = accuracy(&predictions, &dataset);
    let mut report = Report {
        data: args.data.display().to_string(),
        n: dataset.len(),
        accuracy,
        agreement: None,
        backend: subject.backend(),
        model: subject.path.display().to_string(),
        ms_per_sample: ms,
        reference: None,
        notes,
    };
    if let Some(r) = &reference {
        let (ref_predictions, ref_ms) = predict(r, &dataset)?;
        report.agreement = Some(agreement(&predictions, &ref_predictions));
        report.reference = Some(ModelResult {
            model: r.path.display().to_string(),
            backend: r.backend(),
            accuracy: self::accuracy(&ref_predictions, &dataset),
            ms_per_sample: ref_ms,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn prepare(args: &EvalArgs) -> Result<Prepared> {
    let subject = Subject::open(&args.model)?;
    let reference = args.reference.as_deref().map(Subject::open).transpose()?;
    let mut notes = Vec::new();
    let spec = input_spec(&subject, reference.as_ref(), &mut notes)?;
    if let Some(r) = &reference {
        let ref_spec = input_spec(r, None, &mut Vec::new())?;
        ensure!(
            ref_spec.shape == spec.shape,
            "the reference {} takes input {:?} but {} takes {:?}; compare models of the same input",
            r.path.display(),
            ref_spec.shape,
            subject.path.display(),
            spec.shape
        );
    }
    let source = DataSource {
        data: args.data.clone(),
        labels: args.labels.clone(),
        limit: args.limit,
    };
    let dataset = data::load(&source, &spec)
        .with_context(|| format!("cannot load evaluation data {}", args.data.display()))?;
    ensure!(
        !dataset.is_empty(),
        "{} holds no samples (or --limit is 0); nothing to evaluate",
        args.data.display()
    );
    if !dataset.has_labels() && reference.is_none() {
        bail!(
            "{} has no labels, so there is nothing to measure; pass --labels L (IDX, .npy or \
             .u8 labels) or --reference FLOAT.onnx to measure agreement",
            args.data.display()
        );
    }
    notes.extend(dataset.notes.iter().cloned());
    Ok(Prepared {
        subject,
        reference,
        dataset,
        notes,
    })
}

/// The model's input; a blob has no pixel normalisation of its own, so it comes from the
/// reference model (it only matters for image data fed to a blob without raw-pixel input).
fn input_spec(
    subject: &Subject,
    reference: Option<&Subject>,
    notes: &mut Vec<String>,
) -> Result<InputSpec> {
    match subject.kind {
        ModelKind::Onnx => model_file::onnx_input_spec(&subject.path, &subject.bytes),
        ModelKind::Blob => {
            let model = model_file::parse_blob(&subject.path, &subject.bytes)?;
            let input = model.input();
            let chw = [input.c, input.h, input.w];
            let (mean, std) = match reference.filter(|r| r.kind == ModelKind::Onnx) {
                Some(r) => {
                    let spec = model_file::onnx_input_spec(&r.path, &r.bytes)?;
                    (spec.mean, spec.std)
                }
                None => {
                    if !model.input_is_raw_pixels() {
                        notes.push(
                            "the blob's input is not raw pixels and no --reference gives the \
                             model's mean/std: image data is fed as pixel/255"
                                .into(),
                        );
                    }
                    (Vec::new(), Vec::new())
                }
            };
            InputSpec::new(chw, &mean, &std)
                .with_context(|| format!("model {}", subject.path.display()))
        }
    }
}

/// Top-1 class of every sample, and the mean milliseconds per sample.
fn predict(subject: &Subject, dataset: &Dataset) -> Result<(Vec<usize>, f64)> {
    let bar = progress::bar(dataset.len(), subject.backend());
    let start = Instant::now();
    let predictions = match subject.kind {
        ModelKind::Onnx => predict_tract(subject, dataset, &bar)?,
        ModelKind::Blob => predict_core(subject, dataset, &bar)?,
    };
    bar.finish_and_clear();
    let ms = start.elapsed().as_secs_f64() * 1e3 / dataset.len().max(1) as f64;
    Ok((predictions, ms))
}

fn predict_tract(
    subject: &Subject,
    dataset: &Dataset,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<usize>> {
    let path = &subject.path;
    let model =
        FloatModel::load(path).with_context(|| format!("tract cannot run {}", path.display()))?;
    let mut out = Vec::with_capacity(dataset.len());
    for (i, sample) in dataset.samples.iter().enumerate() {
        let scores = model
            .run(&sample.input)
            .with_context(|| format!("{}: running sample {i}", path.display()))?;
        out.push(
            argmax_f32(&scores)
                .with_context(|| format!("{} has an empty output", path.display()))?,
        );
        bar.inc(1);
    }
    Ok(out)
}

fn predict_core(
    subject: &Subject,
    dataset: &Dataset,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<usize>> {
    let path = &subject.path;
    let model = model_file::parse_blob(path, &subject.bytes)?;
    let input = model.input();
    let raw = model.input_is_raw_pixels();
    let mut arena = vec![0u8; model.arena_size()];
    let mut output = vec![0i8; model.output().len()];
    let mut out = Vec::with_capacity(dataset.len());
    for (i, sample) in dataset.samples.iter().enumerate() {
        let q = data::core_input_for(sample, &input, raw).with_context(|| {
            format!(
                "{}: sample {i} does not fit the blob's input",
                path.display()
            )
        })?;
        model.run(&mut arena, &q, &mut output).map_err(|e| {
            anyhow::anyhow!("{}: the core failed on sample {i}: {e}", path.display())
        })?;
        out.push(
            cbam_core::argmax(&output)
                .with_context(|| format!("{} has an empty output", path.display()))?,
        );
        bar.inc(1);
    }
    Ok(out)
}

/// The index of the largest score, the first on ties; NaN never wins.
fn argmax_f32(scores: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if best.is_none_or(|(_, b)| s > b || b.is_nan()) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

fn accuracy(predictions: &[usize], dataset: &Dataset) -> Option<f64> {
    if !dataset.has_labels() {
        return None;
    }
    let correct = predictions
        .iter()
        .zip(&dataset.samples)
        .filter(|(p, s)| s.label == Some(**p))
        .count();
    Some(correct as f64 / predictions.len().max(1) as f64)
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

fn render(report: &Report) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
    let mut rows = vec![(
        report.model.clone(),
        report.backend,
        pct(report.accuracy),
        report.ms_per_sample,
    )];
    if let Some(r) = &report.reference {
        rows.push((
            format!("{} (reference)", r.model),
            r.backend,
            pct(r.accuracy),
            r.ms_per_sample,
        ));
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
    let mut text = format!("data: {} ({} samples)\n", report.data, report.n);
    text.push_str(&format!(
        "{:<width$}  {:<9}  {:>8}  {:>9}\n",
        "model", "backend", "accuracy", "ms/sample"
    ));
    for (model, backend, acc, ms) in rows {
        text.push_str(&format!(
            "{model:<width$}  {backend:<9}  {acc:>8}  {ms:>9.3}\n"
        ));
    }
    if let Some(a) = report.agreement {
        text.push_str(&format!(
            "top-1 agreement with the reference: {:.2}%\n",
            a * 100.0
        ));
    }
    for note in &report.notes {
        text.push_str(&format!("note: {note}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_and_skips_nan() {
        assert_eq!(argmax_f32(&[0.1, 0.9, 0.9]), Some(1));
        assert_eq!(argmax_f32(&[f32::NAN, -1.0, -2.0]), Some(1));
        assert_eq!(argmax_f32(&[]), None);
    }

    #[test]
    fn accuracy_and_agreement_count_matches() {
        let dataset = Dataset {
            shape: [1, 1, 1],
            samples: [0, 1, 2, 1]
                .iter()
                .map(|&l| data::Sample {
                    input: vec![0.0],
                    pixels: None,
                    label: Some(l),
                })
                .collect(),
            classes: Vec::new(),
            notes: Vec::new(),
            source_len: 4,
        };
        assert_eq!(accuracy(&[0, 1, 1, 1], &dataset), Some(0.75));
        assert_eq!(agreement(&[0, 1, 1, 1], &[0, 2, 2, 1]), 0.5);
    }
}
