//! `quantize`: ONNX file + calibration images -> `.cbam` blob, optional QDQ ONNX, report.
//!
//! import -> passes -> tract float runs observed by the calibrator -> lowering -> arena
//! plan -> blob; then the blob runs on the int8 core beside tract on a few calibration
//! images to measure per-layer SQNR and top-1 agreement for the report.

use std::collections::HashMap;
use std::path::Path;

use crate::blob::{self, BlobError, BlobMeta};
use crate::calib::{CalibMethod, Calibrator, Ranges};
use crate::data::Preprocess;
use crate::float_run::{FloatModel, FloatRunError};
use crate::import::{self, ImportError};
use crate::ir::Graph;
use crate::passes::{self, PassError};
use crate::plan::PlanError;
use crate::qdq::{self, QdqError, QdqForm};
use crate::quant::{self, LowerOptions, QModel, QuantError};
use crate::report::{self, InputReport, QuantReport, SqnrAccumulator};
use crate::schedule::{self, ScheduleChoice, ScheduleError};
use crate::tune::bias_correction::{self, BiasCorrectionError, CorrectedLayer};
use crate::tune::core_run::{nchw_to_nhwc, CoreRunError, CoreRunner};
use crate::tune::range_search::{self, RangeChoice, RangeSearchError, SearchInputs};
use crate::tune::sigmoid_inputs::{
    clip_to_sigmoid_span, sigmoid_input_names, SATURATES_HIGH, SATURATES_LOW,
};
use crate::tune::top1_range::{self, LowestTop1};

#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeOptions {
    pub method: CalibMethod,
    /// Also write the QDQ ONNX.
    pub qdq: bool,
    /// Which QDQ ONNX: the standard pattern runtimes fuse, or the core's exact arithmetic.
    pub qdq_form: QdqForm,
    /// Calibration images also run on the core for the report's SQNR and agreement.
    pub sqnr_images: usize,
    /// The `name` metadata; the ONNX file stem when `None`.
    pub name: Option<String>,
    pub lower: LowerOptions,
    /// Empirical bias correction of every conv and linear layer on the calibration images.
    pub bias_correction: bool,
    /// Per-tensor choice among minmax, percentile and MSE ranges by the output error.
    pub range_search: bool,
    /// Round each conv/linear weight up or down by the layer's output error (a part of
    /// the bias correction pass, so it needs `bias_correction`).
    pub optimise_rounding: bool,
    /// Also correct each CBAM block's channel and spatial pre-sigmoid logit biases (a part
    /// of the bias correction pass, so it needs `bias_correction`).
    pub attention_bias_correction: bool,
    /// Clip a classifier's output range below the lowest winning logit seen in calibration,
    /// so near-tied classes stay apart in int8 (the logits of losing classes saturate).
    /// `None` follows `bias_correction`, so `cbam quantize` has it and `--no-bias-correction`
    /// drops it with the other tuning.
    pub top1_output_range: Option<bool>,
    /// The input normalisation `(mean, std)` per channel (or one value for all), for models
    /// whose ONNX file does not carry `cbam.mean`/`cbam.std`; given, it replaces the
    /// metadata. It decides the raw-pixel input folding and is stored in the blob.
    pub normalization: Option<(Vec<f32>, Vec<f32>)>,
    /// The crop, resize and channel order the calibration pictures were fitted with,
    /// stored in the blob for whoever feeds it pictures later.
    pub preprocess: Preprocess,
    /// The execution schedule (and so the arena) the blob is written with.
    pub schedule: ScheduleChoice,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            method: CalibMethod::MinMax,
            qdq: false,
            qdq_form: QdqForm::StandardU8,
            sqnr_images: 16,
            name: None,
            lower: LowerOptions::default(),
            // Off for library callers: the pass costs a core run per layer and image, which
            // the debug-build end-to-end suite cannot afford for every model variant.
            // `cbam quantize` turns bias correction and rounding on (the measured best).
            bias_correction: false,
            range_search: false,
            optimise_rounding: false,
            // Off everywhere: on 10,000 held-out training images it moved top-1 agreement
            // by -0.03..0 pp (the measured logit shifts are ~0.01, noise-sized).
            attention_bias_correction: false,
            // Off with the plain library default: the finer output step also counts the
            // QDQ writer's few absolute logit differences as twice the steps, which the
            // end-to-end suite bounds for the min-max scale.
            top1_output_range: None,
            normalization: None,
            preprocess: Preprocess::default(),
            schedule: ScheduleChoice::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Compiled {
    pub blob: Vec<u8>,
    pub qdq: Option<Vec<u8>>,
    pub report: QuantReport,
    /// The quantized model the blob was written from (to plan or write it again, e.g. with
    /// another schedule).
    pub model: QModel,
    /// The blob's metadata.
    pub meta: BlobMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("optimising {path}: {source}")]
    Passes { path: String, source: PassError },
    #[error(transparent)]
    FloatRun(#[from] FloatRunError),
    #[error("no calibration images: give at least one (a few hundred is typical)")]
    NoCalibration,
    #[error(
        "calibration image {index} has {got} values, the model input {expected:?} needs {}; \
         check the data's shape and channel count",
        expected.iter().product::<usize>()
    )]
    CalibShape {
        index: usize,
        got: usize,
        expected: Vec<usize>,
    },
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    RangeSearch(#[from] RangeSearchError),
    #[error(transparent)]
    BiasCorrection(#[from] BiasCorrectionError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Qdq(#[from] QdqError),
    #[error(transparent)]
    CoreRun(#[from] CoreRunError),
}

/// Quantizes the ONNX model at `onnx` with `calib_inputs` (NCHW float, normalised as the
/// model expects). `progress(done, total)` is called after every image run.
pub fn quantize(
    onnx: &Path,
    calib_inputs: &[Vec<f32>],
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Compiled, PipelineError> {
    let mut graph =
        passes::optimize(import::load_onnx(onnx)?).map_err(|source| PipelineError::Passes {
            path: onnx.display().to_string(),
            source,
        })?;
    if let Some((mean, std)) = &opts.normalization {
        graph.meta.mean = mean.clone();
        graph.meta.std = std.clone();
    }
    let float = FloatModel::load(onnx)?;
    check_inputs(&float, calib_inputs)?;
    let sqnr_images = opts.sqnr_images.min(calib_inputs.len());
    let total = calib_inputs.len() + sqnr_images;

    let (calibrator, lowest_top1) = calibrate(&graph, &float, calib_inputs, &mut |done| {
        progress(done, total)
    })?;
    let tuned = tune(&graph, &float, &calibrator, lowest_top1, calib_inputs, opts)?;
    let (graph, ranges) = (tuned.graph, tuned.ranges);
    let model = quant::lower(&graph, &ranges, &opts.lower)?;
    let (plan, schedules) = schedule::choose(&model, opts.schedule)?;
    let meta = BlobMeta {
        name: opts.name.clone().unwrap_or_else(|| {
            onnx.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        labels: graph.meta.labels.clone(),
        source: onnx
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        calibration: opts.method.to_string(),
        mean: graph.meta.mean.clone(),
        std: graph.meta.std.clone(),
        preprocess: opts.preprocess,
    };
    let blob = blob::write(&model, &plan, &meta)?;
    let fidelity = measure(
        &model,
        &blob,
        &float,
        &calib_inputs[..sqnr_images],
        tuned.output_clipped,
        &mut |done| progress(calib_inputs.len() + done, total),
    )?;
    let qdq = if opts.qdq {
        Some(qdq::write(&graph, &model, opts.qdq_form)?)
    } else {
        None
    };
    let input_q = model
        .tensors
        .get(model.input)
        .map(|t| t.q)
        .unwrap_or(quant::QParams {
            scale: 1.0,
            zero_point: 0,
        });
    let report = QuantReport {
        source: meta.source.clone(),
        method: opts.method.to_string(),
        calibration_images: calib_inputs.len(),
        sqnr_images,
        top1_agreement: fidelity.agreement,
        arena_bytes: plan.arena_size as usize,
        schedules,
        scratch_bytes: plan.scratch_size as usize,
        blob_bytes: blob.len(),
        weight_bytes: model.ops.iter().map(|o| o.kind.weight_bytes()).sum(),
        macs: model.macs,
        input: InputReport {
            scale: input_q.scale,
            zero_point: input_q.zero_point,
            raw_pixels: model.input_is_pixels,
        },
        techniques: tuned.techniques,
        range_choices: tuned.range_choices,
        bias_correction: tuned.bias_correction,
        layers: report::layer_rows(&model, &ranges, Some(&fidelity.sqnr)),
        notes: notes(&graph, &model),
    };
    Ok(Compiled {
        blob,
        qdq,
        report,
        model,
        meta,
    })
}

/// The graph and ranges the lowering uses, after every host-side refinement of the plain
/// calibration, and what each refinement did.
struct Tuned {
    graph: Graph,
    ranges: Ranges,
    techniques: Vec<String>,
    range_choices: Vec<RangeChoice>,
    bias_correction: Vec<CorrectedLayer>,
    /// The top-1 rule clipped the output range's low end on purpose.
    output_clipped: bool,
}

/// Images the range search runs per candidate: enough to rank ranges, few enough that a
/// search over every tensor stays within seconds.
const RANGE_SEARCH_IMAGES: usize = 256;

/// Narrows the sigmoid inputs, optionally searches per-tensor ranges, then corrects biases
/// (last, because the correction measures the int8 model as it will be lowered).
fn tune(
    graph: &Graph,
    float: &FloatModel,
    calibrator: &Calibrator,
    lowest_top1: LowestTop1,
    calib_inputs: &[Vec<f32>],
    opts: &QuantizeOptions,
) -> Result<Tuned, PipelineError> {
    let mut ranges = calibrator.ranges(opts.method);
    let sigmoid_inputs = sigmoid_input_names(graph);
    let clip = |r: &mut Ranges| {
        clip_to_sigmoid_span(r, &sigmoid_inputs);
    };
    let mut techniques = vec![format!("calibration ranges: {}", opts.method)];
    if clip_to_sigmoid_span(&mut ranges, &sigmoid_inputs) > 0 {
        techniques.push(format!(
            "sigmoid inputs narrowed to the table's unsaturated span [{SATURATES_LOW}, {SATURATES_HIGH}]"
        ));
    }
    let output_floor = if opts.top1_output_range.unwrap_or(opts.bias_correction) {
        top1_range::narrow_output_range(&mut ranges, graph, lowest_top1)
    } else {
        None
    };
    if let Some(r) = output_floor {
        techniques.push(format!(
            "output range clipped to [{:.3}, {:.3}] below the lowest winning logit, so near ties stay apart \
             (the output's SQNR compares with float clipped at the same floor)",
            r.min, r.max
        ));
    }
    let mut range_choices = Vec::new();
    if opts.range_search {
        let images = &calib_inputs[..calib_inputs.len().min(RANGE_SEARCH_IMAGES)];
        let float_logits = images
            .iter()
            .map(|i| float.run(i))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = SearchInputs {
            graph,
            calibrator,
            opts: &opts.lower,
            images,
            float_logits: &float_logits,
            adjust: &clip,
        };
        let candidates = [
            CalibMethod::MinMax,
            CalibMethod::Percentile(99.99),
            CalibMethod::Percentile(99.9),
            CalibMethod::Mse,
        ];
        (ranges, range_choices) = range_search::search(&inputs, &ranges, &candidates)?;
        techniques.push(format!(
            "per-tensor range search by output logit error on {} images: {} tensor(s) changed",
            images.len(),
            range_choices.len()
        ));
    }
    let (graph, bias_correction) = if opts.bias_correction {
        let (g, layers) = bias_correction::correct_biases(
            graph,
            &ranges,
            &opts.lower,
            float,
            calib_inputs,
            bias_correction::CorrectionPasses {
                rounding: opts.optimise_rounding,
                attention: opts.attention_bias_correction,
            },
        )?;
        if opts.optimise_rounding {
            techniques.push(format!(
                "weight rounding by layer output error: {} weight(s) off nearest",
                layers.iter().map(|l| l.rounding_flips).sum::<usize>()
            ));
        }
        let logits = layers
            .iter()
            .filter(|l| l.target != bias_correction::CorrectionTarget::Layer)
            .count();
        techniques.push(format!(
            "empirical bias correction of {} conv/linear layer(s) on {} images",
            layers.len() - logits,
            calib_inputs.len()
        ));
        if logits > 0 {
            techniques.push(format!(
                "CBAM pre-sigmoid logit bias correction of {logits} logit(s), read back through the sigmoid tables"
            ));
        }
        (g, layers)
    } else {
        (graph.clone(), Vec::new())
    };
    Ok(Tuned {
        graph,
        ranges,
        techniques,
        range_choices,
        bias_correction,
        output_clipped: output_floor.is_some(),
    })
}

fn check_inputs(float: &FloatModel, inputs: &[Vec<f32>]) -> Result<(), PipelineError> {
    if inputs.is_empty() {
        return Err(PipelineError::NoCalibration);
    }
    let expected = float.input_shape().to_vec();
    let need: usize = expected.iter().product();
    match inputs.iter().position(|x| x.len() != need) {
        Some(index) => Err(PipelineError::CalibShape {
            index,
            got: inputs[index].len(),
            expected,
        }),
        None => Ok(()),
    }
}

/// Every ONNX value the lowering may ask a range for: node outputs and CBAM internals.
fn observed_names(graph: &Graph) -> Vec<String> {
    let mut names: Vec<String> = graph
        .nodes
        .iter()
        .filter_map(|n| graph.tensors.get(n.output).map(|t| t.name.clone()))
        .collect();
    for node in &graph.nodes {
        if let crate::ir::Op::Cbam(c) = &node.op {
            names.extend(c.values.quantized().cloned());
        }
    }
    names.sort();
    names.dedup();
    names
}

fn calibrate(
    graph: &Graph,
    float: &FloatModel,
    inputs: &[Vec<f32>],
    progress: &mut dyn FnMut(usize),
) -> Result<(Calibrator, LowestTop1), PipelineError> {
    let names = observed_names(graph);
    let output_name = graph.tensors.get(graph.output).map(|t| t.name.as_str());
    let mut lowest_top1 = LowestTop1::default();
    let input_name = graph
        .tensors
        .get(graph.input)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let mut calibrator = Calibrator::default();
    for (i, image) in inputs.iter().enumerate() {
        calibrator.observe(&input_name, image);
        let values = float.run_with_values(image, &names)?;
        for (name, v) in &values {
            calibrator.observe(name, v);
        }
        if let Some(out) = output_name.and_then(|n| values.get(n)) {
            lowest_top1.observe(out);
        }
        progress(i + 1);
    }
    Ok((calibrator, lowest_top1))
}

struct Fidelity {
    sqnr: SqnrAccumulator,
    agreement: Option<f64>,
}

/// Captures every op's int8 output during a core run.
struct Capture {
    outputs: Vec<Vec<i8>>,
}

impl cbam_core::Observer for Capture {
    fn op_end(&mut self, index: usize, _code: cbam_core::OpCode, output: &[i8]) {
        if let Some(slot) = self.outputs.get_mut(index) {
            slot.clear();
            slot.extend_from_slice(output);
        }
    }
}

/// Runs `images` on tract and on the core: per-op SQNR and top-1 agreement.
fn measure(
    model: &QModel,
    blob: &[u8],
    float: &FloatModel,
    images: &[Vec<f32>],
    output_clipped: bool,
    progress: &mut dyn FnMut(usize),
) -> Result<Fidelity, PipelineError> {
    let mut core = CoreRunner::new(blob, model)?;
    let names: Vec<String> = model
        .ops
        .iter()
        .filter_map(|o| model.tensors.get(o.output).map(|t| t.name.clone()))
        .collect();
    let output_name = model
        .tensors
        .get(model.output)
        .map(|t| t.name.clone())
        .ok_or_else(|| CoreRunError::Missing("its output tensor".into()))?;
    let mut sqnr = SqnrAccumulator::new(model.ops.len());
    let mut capture = Capture {
        outputs: vec![Vec::new(); model.ops.len()],
    };
    let mut agree = 0usize;
    for (n, image) in images.iter().enumerate() {
        let values: HashMap<String, Vec<f32>> = float.run_with_values(image, &names)?;
        let out = core.run(image, &mut capture)?;
        let float_out = values.get(&output_name).map_or(&[][..], Vec::as_slice);
        agree += usize::from(cbam_core::argmax(float_out) == cbam_core::argmax(out));
        for (i, op) in model.ops.iter().enumerate() {
            let t = &model.tensors[op.output];
            if let (Some(f), Some(q)) = (values.get(&t.name), capture.outputs.get(i)) {
                let mut f = nchw_to_nhwc(f, t.shape);
                // Logits below the floor were clipped on purpose (they cannot win); the
                // output's SQNR measures the quantization of the ones that can.
                if output_clipped && op.output == model.output {
                    let floor = t.q.dequantize(i8::MIN);
                    f.iter_mut().for_each(|v| *v = v.max(floor));
                }
                let dq: Vec<f32> = q.iter().map(|v| t.q.dequantize(*v)).collect();
                sqnr.add(i, &f, &dq);
            }
        }
        progress(n + 1);
    }
    Ok(Fidelity {
        sqnr,
        agreement: (!images.is_empty()).then(|| agree as f64 / images.len() as f64),
    })
}

fn notes(graph: &Graph, model: &QModel) -> Vec<String> {
    let mut notes = Vec::new();
    if graph
        .nodes
        .iter()
        .any(|n| matches!(n.op, crate::ir::Op::Softmax))
    {
        notes.push(
            "the final Softmax is dropped: the blob outputs int8 logits; argmax (the class) is unchanged"
                .to_string(),
        );
    }
    if model.input_is_pixels {
        notes.push(
            "input: the device feeds q = pixel - 128 (mean/std folded into the input scale)".into(),
        );
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::testing::{CbamStyle, OnnxBuilder};
    use prost::Message;

    fn synthetic_onnx(dir: &Path, style: &CbamStyle) -> std::path::PathBuf {
        let (mut b, out) = OnnxBuilder::cbam_classifier(style, 13);
        b.meta = vec![
            ("cbam.mean".into(), "0.5".into()),
            ("cbam.std".into(), "0.25".into()),
        ];
        let path = dir.join("synthetic.onnx");
        std::fs::write(&path, b.build(&out).encode_to_vec()).unwrap();
        path
    }

    fn images(n: usize) -> Vec<Vec<f32>> {
        (0..n as u64)
            .map(|s| {
                crate::quant::testing::weights(64, s + 1, 1.0)
                    .iter()
                    .map(|v| ((v + 1.0) * 127.5).round() / 255.0)
                    .map(|p| (p - 0.5) / 0.25)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn synthetic_model_quantizes_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        for (style, method, tuned) in [
            (CbamStyle::default(), CalibMethod::MinMax, true),
            (
                CbamStyle {
                    max_first: true,
                    ..CbamStyle::default()
                },
                CalibMethod::Percentile(99.9),
                false,
            ),
        ] {
            let onnx = synthetic_onnx(dir.path(), &style);
            let mut calls = 0;
            let opts = QuantizeOptions {
                method,
                qdq: true,
                sqnr_images: 8,
                bias_correction: tuned,
                optimise_rounding: tuned,
                ..Default::default()
            };
            let out = quantize(&onnx, &images(32), &opts, &mut |_, _| calls += 1).unwrap();
            assert_eq!(calls, 40);
            let r = &out.report;
            assert_eq!(r.blob_bytes, out.blob.len());
            assert!(r.layers.iter().any(|l| l.op == "CBAM"), "{:?}", r.layers);
            assert!(r.top1_agreement.unwrap() >= 0.75, "{r:?}");
            for layer in &r.layers {
                let db = layer.sqnr_db.unwrap_or(0.0);
                assert!(db > 15.0, "layer {} SQNR {db:.1} dB", layer.node);
            }
            assert!(out.qdq.is_some_and(|q| !q.is_empty()));
            assert!(serde_json::to_string(r).unwrap().contains("\"method\""));
            assert_eq!(!r.bias_correction.is_empty(), tuned, "{:?}", r.techniques);
            let says = |what: &str| r.techniques.iter().any(|t| t.contains(what));
            assert_eq!(says("bias correction"), tuned, "{:?}", r.techniques);
            assert_eq!(says("weight rounding"), tuned, "{:?}", r.techniques);
            assert_eq!(says("output range clipped"), tuned, "{:?}", r.techniques);
        }
    }

    #[test]
    fn wrong_calibration_shape_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = synthetic_onnx(dir.path(), &CbamStyle::default());
        let err = quantize(
            &onnx,
            &[vec![0.0; 10]],
            &QuantizeOptions::default(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                PipelineError::CalibShape {
                    index: 0,
                    got: 10,
                    ..
                }
            ),
            "{err}"
        );
        let err = quantize(&onnx, &[], &QuantizeOptions::default(), &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, PipelineError::NoCalibration));
    }
}
