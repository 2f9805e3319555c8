//! `cbam eval`: top-1 accuracy of a float/QDQ ONNX model (tract) or a `.cbam` blob (the
//! int8 core) on a data source, and its agreement with a reference model. With `--device`
//! the blob runs on a board instead ([`device`]).

mod device;
pub mod metrics;
mod report;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use cbam_compiler::data::{self, DataSource, Dataset, InputSpec};
use cbam_compiler::float_run::FloatModel;
use cbam_compiler::limits::Limits;
use clap::Args;
use serde::Serialize;

use self::metrics::Metrics;

use crate::layer_threads::LayerThreads;
use crate::limits::LimitArgs;
use crate::model_file::{self, ModelKind};
use crate::norm::NormArgs;
use crate::packed_weights;
use crate::parallel::{self, ThreadPlan};
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
The top-1 class is the first of equal largest outputs; `ties` counts the samples where two
or more outputs share the largest value (common for int8 logits).
JSON: {\"n\", \"accuracy\", \"agreement\" (with --reference), \"ties\", \"backend\", \"metrics\",
\"reference\": {..., \"metrics\"}, ...}. With labels, \"metrics\" holds \"per_class\" [{\"class\",
\"name\", \"precision\", \"recall\", \"f1\", \"support\", \"predicted\"}], \"macro_avg\" and
\"weighted_avg\" (as scikit-learn's classification_report: over the classes that occur in the
labels or the predictions), \"confusion\" (rows: true class, columns: predicted) and notes
(a class nothing was predicted as gets precision 0, not NaN). Class names come from the
ImageFolder's folders, else the model's labels metadata, else are the class indices.
--plots DIR writes DIR/confusion.png (the model and the reference side by side).

--device BOARD (a board of firmware/boards.toml) runs the blob in the board's evaluation
firmware, built on first use (QEMU boards: run here; real boards: flashed through the
probe), streams every input over the debug link and compares each output with the host
core's. JSON: {\"n\", \"accuracy\", \"host_mismatches\" (must be 0), \"agreement\", \"ties\",
\"latency\": {\"unit\", \"min\", \"median\", \"p99\", \"max\", \"mean\"}, \"link_overhead\" (the same
per image, on the device outside the model), \"images_per_second\", \"ram\", \"link\",
\"board\", \"firmware\"}; a run with a differing output exits non-zero."
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
    /// Write the confusion matrix as DIR/confusion.png (needs labelled data)
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Worker threads, each running whole samples (0: every core). Results do not depend
    /// on it; ms_per_sample is wall time over the samples, so it falls as threads are added
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parallel::threads_arg)]
    pub threads: usize,
    /// Run one sample at a time with each layer's rows split over the --threads threads
    /// (int8 core, up to 16 threads; tract runs one sample at a time on one thread):
    /// ms_per_sample is then the latency of one sample
    #[arg(long)]
    pub split_layers: bool,
    #[command(flatten)]
    pub norm: NormArgs,
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitArgs,
    #[command(flatten, next_help_heading = "On a board")]
    pub device: device::DeviceArgs,
}

/// A model opened for evaluation: its bytes and what it is.
struct Subject {
    path: PathBuf,
    bytes: Vec<u8>,
    kind: ModelKind,
    /// A blob's convolution weights packed for this CPU, once.
    packing: OnceLock<Vec<i32>>,
}

/// What runs a [`Subject`].
enum Engine<'b> {
    Tract(FloatModel),
    Core(cbam_core::Model<'b>),
}

impl Subject {
    fn open(path: &Path) -> Result<Self> {
        let bytes = model_file::read(path)?;
        let kind = model_file::kind_of(path, &bytes);
        Ok(Subject {
            path: path.to_path_buf(),
            bytes,
            kind,
            packing: OnceLock::new(),
        })
    }

    /// The model loaded (ONNX: checked by the importer first), its class count and the
    /// class names its metadata records (none when it records none).
    fn engine(&self, limits: &Limits) -> Result<(Engine<'_>, usize, Vec<String>)> {
        let path = &self.path;
        match self.kind {
            ModelKind::Onnx => {
                let proto = model_file::decode_onnx(path, &self.bytes)?;
                model_file::vet_onnx(path, &proto)?;
                let model = FloatModel::from_proto(&proto, path.parent())
                    .with_context(|| format!("tract cannot run {}", path.display()))?;
                let classes = model_file::onnx_classes(path, &model)?;
                Ok((
                    Engine::Tract(model),
                    classes,
                    model_file::onnx_labels(&proto),
                ))
            }
            ModelKind::Blob => {
                let model = model_file::parse_blob(path, &self.bytes, limits)?;
                let model = packed_weights::with_packed_weights(path, model, &self.packing)?;
                let classes = model_file::blob_classes(path, &model)?;
                let labels = model.labels().map(str::to_string).collect();
                Ok((Engine::Core(model), classes, labels))
            }
        }
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
    /// Samples whose largest output two or more classes share.
    ties: usize,
    ms_per_sample: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
}

#[derive(Debug, Serialize)]
struct Report {
    data: String,
    n: usize,
    accuracy: Option<f64>,
    /// Top-1 agreement with the reference model, 0..1.
    #[serde(skip_serializing_if = "Option::is_none")]
    agreement: Option<f64>,
    /// Samples whose largest output two or more classes share.
    ties: usize,
    backend: &'static str,
    model: String,
    ms_per_sample: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<ModelResult>,
    notes: Vec<String>,
}

/// The engines of the model and of the reference, and the data, checked against each other.
struct Prepared<'s> {
    engine: Engine<'s>,
    reference_engine: Option<Engine<'s>>,
    dataset: Dataset,
    /// Class names: the ImageFolder's, else the model's, else the reference's metadata.
    names: Vec<String>,
    classes: usize,
    notes: Vec<String>,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let subject = Subject::open(&args.model)?;
    let reference = args.reference.as_deref().map(Subject::open).transpose()?;
    if let Some(board) = &args.device.device {
        return device::run(args, board, &subject, reference.as_ref());
    }
    if let Some(dir) = &args.plots {
        report::check_plots_dir(dir)?;
    }
    let Prepared {
        engine,
        reference_engine,
        dataset,
        names,
        classes,
        notes,
    } = prepare(args, &subject, reference.as_ref())?;

    let threads = ThreadPlan::new(args.threads, args.split_layers);
    let (predictions, ms) = predict(&subject, &engine, &dataset, threads)?;
    let accuracy = accuracy(&predictions.classes, &dataset);
    let truth: Option<Vec<usize>> = dataset.samples.iter().map(|s| s.label).collect();
    let metrics_of = |predicted: &[usize]| {
        truth
            .as_ref()
            .map(|truth| Metrics::new(classes, &names, truth, predicted))
    };
    let mut report = Report {
        data: args.data.display().to_string(),
        n: dataset.len(),
        accuracy,
        agreement: None,
        ties: predictions.ties,
        backend: subject.backend(),
        model: subject.path.display().to_string(),
        ms_per_sample: ms,
        metrics: metrics_of(&predictions.classes),
        reference: None,
        notes,
    };
    if let (Some(r), Some(engine)) = (&reference, &reference_engine) {
        let (ref_predictions, ref_ms) = predict(r, engine, &dataset, threads)?;
        report.agreement = Some(agreement(&predictions.classes, &ref_predictions.classes));
        report.reference = Some(ModelResult {
            model: r.path.display().to_string(),
            backend: r.backend(),
            accuracy: self::accuracy(&ref_predictions.classes, &dataset),
            ties: ref_predictions.ties,
            ms_per_sample: ref_ms,
            metrics: metrics_of(&ref_predictions.classes),
        });
    }
    if let Some(dir) = &args.plots {
        let path = report::write_confusion_png(args, dir, &report, &names)?;
        report.notes.push(format!("wrote {}", path.display()));
    }
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out!("{}", render(&report))?;
        crate::out!("{}", report::per_class_table(&report))?;
    }
    Ok(())
}

/// Loads the engines and the data and checks them against each other.
fn prepare<'s>(
    args: &EvalArgs,
    subject: &'s Subject,
    reference: Option<&'s Subject>,
) -> Result<Prepared<'s>> {
    let limits = args.limits.limits();
    let mut notes = Vec::new();
    let spec = input_spec(subject, reference, &args.norm, &mut notes, &limits)?;
    if let Some(r) = reference {
        let ref_spec = input_spec(r, None, &args.norm, &mut Vec::new(), &limits)?;
        ensure!(
            ref_spec.shape == spec.shape,
            "the reference {} takes input {:?} but {} takes {:?}; compare models of the same input",
            r.path.display(),
            ref_spec.shape,
            subject.path.display(),
            spec.shape
        );
    }
    let (engine, reference_engine, classes, model_names) = engines(subject, reference, &limits)?;
    let source = DataSource {
        data: args.data.clone(),
        labels: args.labels.clone(),
        limit: args.limit,
    };
    let dataset = data::load_within(&source, &spec, limits.max_data_bytes)
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
    if dataset.has_labels() {
        let labels = args.labels.as_deref().unwrap_or(&args.data);
        data::check_labels(&dataset, labels, classes)?;
    }
    notes.extend(dataset.notes.iter().cloned());
    let names = if dataset.classes.len() == classes {
        dataset.classes.clone()
    } else {
        model_names
    };
    Ok(Prepared {
        engine,
        reference_engine,
        dataset,
        names,
        classes,
        notes,
    })
}

/// The engines of the model and of the reference, the classes both score and their names
/// as the model (else the reference) records them.
fn engines<'s>(
    subject: &'s Subject,
    reference: Option<&'s Subject>,
    limits: &Limits,
) -> Result<(Engine<'s>, Option<Engine<'s>>, usize, Vec<String>)> {
    let (engine, classes, mut names) = subject.engine(limits)?;
    let Some(r) = reference else {
        return Ok((engine, None, classes, names));
    };
    let (reference_engine, ref_classes, ref_names) = r.engine(limits)?;
    if names.len() != classes {
        names = ref_names;
    }
    ensure!(
        ref_classes == classes,
        "the reference {} scores {ref_classes} classes but {} scores {classes}; compare \
         models of the same classes",
        r.path.display(),
        subject.path.display()
    );
    Ok((engine, Some(reference_engine), classes, names))
}

/// The model's input and its pixel normalisation: `--mean`/`--std` when given, else the
/// ONNX model's `cbam.mean`/`cbam.std`, or a blob's `mean`/`std` metadata (older blobs:
/// the reference model's). It only matters for image data.
fn input_spec(
    subject: &Subject,
    reference: Option<&Subject>,
    norm: &NormArgs,
    notes: &mut Vec<String>,
    limits: &Limits,
) -> Result<InputSpec> {
    let spec = match subject.kind {
        ModelKind::Onnx => model_file::onnx_input_spec(&subject.path, &subject.bytes, limits)?,
        ModelKind::Blob => {
            let model = model_file::parse_blob(&subject.path, &subject.bytes, limits)?;
            let input = model.input();
            let chw = [input.c, input.h, input.w];
            let (mut mean, mut std) = model_file::blob_normalisation(&subject.path, &model)?;
            let stored = !mean.is_empty() || !std.is_empty();
            if let Some(r) = reference.filter(|r| r.kind == ModelKind::Onnx && !stored) {
                let spec = model_file::onnx_input_spec(&r.path, &r.bytes, limits)?;
                (mean, std) = (spec.mean, spec.std);
            } else if !stored && !model.input_is_raw_pixels() && norm.given().is_none() {
                notes.push(
                    "the blob records no input normalisation and neither --mean/--std nor \
                     --reference gives one: image data is fed as pixel/255"
                        .into(),
                );
            }
            InputSpec::new(chw, &mean, &std)
                .with_context(|| format!("model {}", subject.path.display()))?
                .with_preprocess(model_file::blob_preprocess(&subject.path, &model)?)
        }
    };
    norm.apply(spec)
}

/// The top-1 class of every sample, and how many of them broke a tie.
#[derive(Debug, Default)]
struct Predictions {
    classes: Vec<usize>,
    ties: usize,
}

impl Predictions {
    fn push<T: PartialOrd>(&mut self, scores: &[T]) -> Option<()> {
        let (class, tied) = top1(scores)?;
        self.classes.push(class);
        self.ties += usize::from(tied);
        Some(())
    }
}

impl FromIterator<(usize, bool)> for Predictions {
    fn from_iter<I: IntoIterator<Item = (usize, bool)>>(top1: I) -> Self {
        let mut out = Predictions::default();
        for (class, tied) in top1 {
            out.classes.push(class);
            out.ties += usize::from(tied);
        }
        out
    }
}

/// The top-1 class and whether another class ties it; `None` for an empty output.
fn top1<T: PartialOrd>(scores: &[T]) -> Option<(usize, bool)> {
    Some((cbam_core::argmax(scores)?, cbam_core::top1_tied(scores)))
}

/// Top-1 class of every sample, and the milliseconds of wall time per sample.
fn predict(
    subject: &Subject,
    engine: &Engine,
    dataset: &Dataset,
    threads: ThreadPlan,
) -> Result<(Predictions, f64)> {
    let bar = progress::bar(dataset.len(), subject.backend());
    let start = Instant::now();
    let predictions = match engine {
        Engine::Tract(model) => predict_tract(&subject.path, model, dataset, &bar, threads.frames)?,
        Engine::Core(model) => predict_core(&subject.path, model, dataset, &bar, threads)?,
    };
    bar.finish_and_clear();
    let ms = start.elapsed().as_secs_f64() * 1e3 / dataset.len().max(1) as f64;
    Ok((predictions, ms))
}

fn predict_tract(
    path: &Path,
    model: &FloatModel,
    dataset: &Dataset,
    bar: &indicatif::ProgressBar,
    threads: usize,
) -> Result<Predictions> {
    let classes = parallel::map_ordered(
        dataset.len(),
        threads,
        || Ok(()),
        |(), i| {
            let sample = dataset
                .samples
                .get(i)
                .context("sample index out of range")?;
            let scores = model
                .run(&sample.input)
                .with_context(|| format!("{}: running sample {i}", path.display()))?;
            model_file::check_scores(&scores)
                .with_context(|| format!("{}: sample {i}", path.display()))?;
            bar.inc(1);
            top1(&scores).with_context(|| format!("{} has an empty output", path.display()))
        },
    )?;
    Ok(classes.into_iter().collect())
}

/// One worker's buffers for the core: the arena, the quantized input and the output,
/// allocated once and reused for every sample it runs.
struct CoreWorker {
    arena: Vec<u8>,
    input: Vec<i8>,
    output: Vec<i8>,
}

fn predict_core(
    path: &Path,
    model: &cbam_core::Model,
    dataset: &Dataset,
    bar: &indicatif::ProgressBar,
    threads: ThreadPlan,
) -> Result<Predictions> {
    let info = model.input();
    let raw = model.input_is_raw_pixels();
    let layers = LayerThreads::new(threads.layers)?;
    let classes = parallel::map_ordered(
        dataset.len(),
        threads.frames,
        || {
            Ok(CoreWorker {
                arena: vec![0u8; model.arena_size()],
                input: Vec::with_capacity(info.len()),
                output: vec![0i8; model.output().len()],
            })
        },
        |w: &mut CoreWorker, i| {
            let sample = dataset
                .samples
                .get(i)
                .context("sample index out of range")?;
            data::core_input_for_into(sample, &info, raw, &mut w.input).with_context(|| {
                format!(
                    "{}: sample {i} does not fit the blob's input",
                    path.display()
                )
            })?;
            layers
                .run(model, &mut w.arena, &w.input, &mut w.output)
                .map_err(|e| {
                    anyhow::anyhow!("{}: the core failed on sample {i}: {e}", path.display())
                })?;
            bar.inc(1);
            top1(&w.output).with_context(|| format!("{} has an empty output", path.display()))
        },
    )?;
    Ok(classes.into_iter().collect())
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
        report.ties,
        report.ms_per_sample,
    )];
    if let Some(r) = &report.reference {
        rows.push((
            format!("{} (reference)", r.model),
            r.backend,
            pct(r.accuracy),
            r.ties,
            r.ms_per_sample,
        ));
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
    let mut text = format!("data: {} ({} samples)\n", report.data, report.n);
    text.push_str(&format!(
        "{:<width$}  {:<9}  {:>8}  {:>6}  {:>9}\n",
        "model", "backend", "accuracy", "ties", "ms/sample"
    ));
    for (model, backend, acc, ties, ms) in rows {
        text.push_str(&format!(
            "{model:<width$}  {backend:<9}  {acc:>8}  {ties:>6}  {ms:>9.3}\n"
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
    fn predictions_count_ties() {
        assert_eq!(top1(&[1i8, 4, 4]), Some((1, true)));
        assert_eq!(top1(&[0.5f32, 0.1]), Some((0, false)));
        assert_eq!(top1::<i8>(&[]), None);
        let p: Predictions = [(1, true), (0, false)].into_iter().collect();
        assert_eq!((p.classes, p.ties), (vec![1, 0], 1));
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
