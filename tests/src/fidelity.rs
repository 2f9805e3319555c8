//! ONNX -> blob -> core, measured against tract: the float model's top-1, the core's top-1
//! and logits, and the QDQ ONNX's logits on the same inputs.

use std::path::Path;

use cbam_compiler::data::{self, DataSource, Dataset};
use cbam_compiler::float_run::FloatModel;
use cbam_compiler::import;
use cbam_compiler::pipeline::{self, Compiled, QuantizeOptions};
use cbam_compiler::qdq::QdqForm;

pub type Error = Box<dyn std::error::Error>;

/// What one model scored on one data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Fidelity {
    pub n: usize,
    /// Top-1 agreement int8 core vs tract float, 0..1.
    pub agreement: f64,
    pub float_accuracy: f64,
    pub int8_accuracy: f64,
    /// Top-1 agreement of the QDQ ONNX (tract) with the int8 core, 0..1.
    pub qdq_agreement: f64,
    /// Largest |QDQ logit - core logit| over all samples, in output quantization steps.
    pub qdq_max_steps: f64,
    /// Fraction of logits where QDQ and core differ by more than one step.
    pub qdq_beyond_one_step: f64,
}

/// The input normalisation `(mean, std)` of a model whose ONNX file does not carry it.
pub type Normalization = Option<(Vec<f32>, Vec<f32>)>;

/// The ImageNet normalisation, which the RGB example models and the zoo were made for; their
/// ONNX files do not say so, as a user's models do not (models/README.md).
pub fn imagenet() -> Normalization {
    Some((vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225]))
}

/// Loads `n` samples of `images`/`labels` shaped for the ONNX model at `onnx`, normalised
/// by `norm` (or the model's metadata).
pub fn load_data(
    onnx: &Path,
    images: &Path,
    labels: Option<&Path>,
    n: usize,
    norm: &Normalization,
) -> Result<Dataset, Error> {
    let mut graph = import::load_onnx(onnx)?;
    if let Some((mean, std)) = norm {
        graph.meta.mean = mean.clone();
        graph.meta.std = std.clone();
    }
    let source = DataSource {
        data: images.to_path_buf(),
        labels: labels.map(Path::to_path_buf),
        limit: Some(n),
    };
    Ok(data::load_for_graph(&source, &graph)?)
}

/// Quantizes `onnx` with `calib` with the library's defaults, also writing the exact-form
/// QDQ ONNX (the core's bit-level reference, which the layer-by-layer comparison needs).
pub fn quantize(onnx: &Path, calib: &Dataset, norm: &Normalization) -> Result<Compiled, Error> {
    quantize_with(onnx, calib, exact_qdq(), norm)
}

/// As [`quantize`], with the QDQ ONNX in `form`.
pub fn quantize_qdq(
    onnx: &Path,
    calib: &Dataset,
    form: QdqForm,
    norm: &Normalization,
) -> Result<Compiled, Error> {
    let opts = QuantizeOptions {
        qdq_form: form,
        ..exact_qdq()
    };
    quantize_with(onnx, calib, opts, norm)
}

/// The library's defaults with the exact-form QDQ ONNX.
fn exact_qdq() -> QuantizeOptions {
    QuantizeOptions {
        qdq_form: QdqForm::Exact,
        ..QuantizeOptions::default()
    }
}

/// Quick: no QDQ model, no tuning, SQNR on two images (for tests of the blob, not of the
/// quantization).
pub fn quantize_fast(
    onnx: &Path,
    calib: &Dataset,
    norm: &Normalization,
) -> Result<Compiled, Error> {
    let inputs: Vec<Vec<f32>> = calib.samples.iter().map(|s| s.input.clone()).collect();
    let opts = QuantizeOptions {
        sqnr_images: 2,
        normalization: norm.clone(),
        ..QuantizeOptions::default()
    };
    Ok(pipeline::quantize(onnx, &inputs, &opts, &mut |_, _| {})?)
}

/// As `cbam quantize` does by default: bias correction, weight rounding by output error and
/// the top-1 output range on.
pub fn quantize_tuned(
    onnx: &Path,
    calib: &Dataset,
    norm: &Normalization,
) -> Result<Compiled, Error> {
    let opts = QuantizeOptions {
        bias_correction: true,
        optimise_rounding: true,
        top1_output_range: Some(true),
        ..exact_qdq()
    };
    quantize_with(onnx, calib, opts, norm)
}

fn quantize_with(
    onnx: &Path,
    calib: &Dataset,
    opts: QuantizeOptions,
    norm: &Normalization,
) -> Result<Compiled, Error> {
    let inputs: Vec<Vec<f32>> = calib.samples.iter().map(|s| s.input.clone()).collect();
    let opts = QuantizeOptions {
        qdq: true,
        normalization: norm.clone(),
        ..opts
    };
    Ok(pipeline::quantize(onnx, &inputs, &opts, &mut |_, _| {})?)
}

/// The predicted class, by the one tie rule every backend shares.
fn top1<T: PartialOrd>(scores: &[T]) -> Result<usize, Error> {
    Ok(cbam_core::argmax(scores).ok_or("a model has an empty output")?)
}

/// Runs every sample of `test` through tract (float), the core (blob) and tract (QDQ).
pub fn measure(
    onnx: &Path,
    compiled: &Compiled,
    qdq_path: &Path,
    test: &Dataset,
) -> Result<Fidelity, Error> {
    let float = FloatModel::load(onnx)?;
    let qdq = FloatModel::load(qdq_path)?;
    let core = cbam_core::Model::parse(&compiled.blob).map_err(|e| format!("blob: {e}"))?;
    let out_info = core.output();
    let mut arena = vec![0u8; core.arena_size()];
    let mut logits = vec![0i8; out_info.len()];

    let (mut agree, mut float_ok, mut int8_ok, mut qdq_agree) = (0usize, 0usize, 0usize, 0usize);
    let (mut max_steps, mut beyond, mut compared) = (0f64, 0usize, 0usize);
    for sample in &test.samples {
        let input = data::core_input_for(sample, &core.input(), core.input_is_raw_pixels())?;
        core.run(&mut arena, &input, &mut logits)
            .map_err(|e| format!("core: {e}"))?;
        let f = top1(&float.run(&sample.input)?)?;
        let q = top1(&logits)?;
        agree += usize::from(f == q);
        float_ok += usize::from(sample.label == Some(f));
        int8_ok += usize::from(sample.label == Some(q));

        let qdq_logits = qdq.run(&sample.input)?;
        qdq_agree += usize::from(top1(&qdq_logits)? == q);
        for (&real, &int) in qdq_logits.iter().zip(&logits) {
            let steps =
                f64::from(real / out_info.scale) - f64::from(i32::from(int) - out_info.zero_point);
            max_steps = max_steps.max(steps.abs());
            beyond += usize::from(steps.abs() > 1.0 + 1e-3);
            compared += 1;
        }
    }
    let n = test.samples.len().max(1) as f64;
    Ok(Fidelity {
        n: test.samples.len(),
        agreement: agree as f64 / n,
        float_accuracy: float_ok as f64 / n,
        int8_accuracy: int8_ok as f64 / n,
        qdq_agreement: qdq_agree as f64 / n,
        qdq_max_steps: max_steps,
        qdq_beyond_one_step: beyond as f64 / compared.max(1) as f64,
    })
}
