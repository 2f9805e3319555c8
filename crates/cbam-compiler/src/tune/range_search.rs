//! Per-tensor choice of the calibration range by the error it causes at the model output.
//!
//! A range that is best for one tensor in isolation (the least quantization MSE of its own
//! values) is not always best for the model: clipping a rare large activation may cost a
//! class decision downstream, and a wide range may drown a small but decisive one. So each
//! activation tensor, in execution order, tries the ranges of every candidate method; the
//! whole int8 model runs on the core for each try and the range with the least squared
//! error of the output logits against tract's float logits is kept (greedy coordinate
//! descent, as AIMET's and onnxruntime's range searches do per tensor).

use super::core_run::{run_each, CoreRunError};
use crate::calib::{CalibMethod, Calibrator, Range, Ranges};
use crate::ir::{Graph, Op};
use crate::quant::{self, LowerOptions, QModel, QuantError};

#[derive(Debug, thiserror::Error)]
pub enum RangeSearchError {
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error("the range search could not run the int8 model")]
    Run(#[from] CoreRunError),
}

/// A tensor whose range the search moved off the base method.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RangeChoice {
    pub tensor: String,
    pub method: String,
    pub range: Range,
}

/// Only a clear gain moves a tensor off the base range: the search sees a few hundred
/// images and should not chase their noise.
const MIN_RELATIVE_GAIN: f64 = 0.01;

/// What the search needs besides the ranges.
pub struct SearchInputs<'a> {
    pub graph: &'a Graph,
    pub calibrator: &'a Calibrator,
    pub opts: &'a LowerOptions,
    /// NCHW float inputs.
    pub images: &'a [Vec<f32>],
    /// Tract's float logits for `images`.
    pub float_logits: &'a [Vec<f32>],
    /// Applied to every candidate set of ranges before lowering (e.g. the sigmoid-span clip).
    pub adjust: &'a dyn Fn(&mut Ranges),
}

/// Returns the improved ranges and the tensors that changed.
pub fn search(
    inputs: &SearchInputs<'_>,
    base: &Ranges,
    candidates: &[CalibMethod],
) -> Result<(Ranges, Vec<RangeChoice>), RangeSearchError> {
    let mut best = base.clone();
    let mut best_err = logit_error(inputs, &best)?;
    let mut choices: Vec<RangeChoice> = Vec::new();
    for name in searched_tensors(inputs.graph) {
        let Some(hist) = inputs.calibrator.histogram(&name) else {
            continue;
        };
        let mut winner: Option<(f64, CalibMethod, Ranges)> = None;
        for method in candidates {
            let mut trial = best.clone();
            trial.insert(name.clone(), hist.range(*method));
            (inputs.adjust)(&mut trial);
            if trial.get(&name) == best.get(&name) {
                continue;
            }
            let err = logit_error(inputs, &trial)?;
            if err < best_err * (1.0 - MIN_RELATIVE_GAIN)
                && winner.as_ref().is_none_or(|(e, _, _)| err < *e)
            {
                winner = Some((err, *method, trial));
            }
        }
        if let Some((err, method, trial)) = winner {
            best_err = err;
            if let Some(range) = trial.get(&name).copied() {
                choices.retain(|c| c.tensor != name);
                choices.push(RangeChoice {
                    tensor: name.clone(),
                    method: method.to_string(),
                    range,
                });
            }
            best = trial;
        }
    }
    Ok((best, choices))
}

/// Every activation whose range the lowering reads, in execution order (the model input's
/// quantization is fixed by its pixel format, so it is not searched).
fn searched_tensors(graph: &Graph) -> Vec<String> {
    let mut names = Vec::new();
    for node in &graph.nodes {
        if let Op::Cbam(c) = &node.op {
            names.extend(c.values.quantized().cloned());
        }
        // These keep their input's quantization (or none): their own range is never read.
        let keeps_input_q = matches!(
            node.op,
            Op::Flatten
                | Op::Identity
                | Op::Softmax
                | Op::MaxPool(_)
                | Op::AvgPool(_)
                | Op::GlobalMaxPool
        );
        if !keeps_input_q {
            names.extend(graph.tensors.get(node.output).map(|t| t.name.clone()));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Mean squared error of the int8 model's dequantized logits against the float logits.
fn logit_error(inputs: &SearchInputs<'_>, ranges: &Ranges) -> Result<f64, RangeSearchError> {
    let model = quant::lower(inputs.graph, ranges, inputs.opts)?;
    let logits = run_core(&model, inputs.images)?;
    let (mut sum, mut count) = (0.0, 0usize);
    for (q, f) in logits.iter().zip(inputs.float_logits) {
        for (a, b) in q.iter().zip(f) {
            let d = f64::from(*a) - f64::from(*b);
            sum += d * d;
            count += 1;
        }
    }
    Ok(sum / count.max(1) as f64)
}

/// The core's dequantized output for every image.
pub(super) fn run_core(
    model: &QModel,
    images: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>, RangeSearchError> {
    let output_t = model
        .tensors
        .get(model.output)
        .ok_or_else(|| CoreRunError::Missing("its output tensor".into()))?;
    Ok(run_each(
        model,
        images,
        &mut cbam_core::NoObserver,
        |_, out| out.iter().map(|v| output_t.q.dequantize(*v)).collect(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searched_tensors_follow_execution_order_with_cbam_internals() {
        let (g, _) = crate::quant::testing::small_cbam_graph();
        let names = searched_tensors(&g);
        assert_eq!(names.first().map(String::as_str), Some("conv1"));
        let cbam_at = names.iter().position(|n| n == "cbam1");
        let logit_at = names.iter().position(|n| n == "cbam1.logit");
        assert!(logit_at.is_some() && logit_at < cbam_at, "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("logits"));
        assert!(!names
            .iter()
            .any(|n| ["flat", "probs", "pool1"].contains(&n.as_str())));
    }

    #[test]
    fn the_search_never_leaves_the_output_error_worse() {
        use crate::quant::testing::{calibrate_synthetic, synthetic_classifier};
        let (graph, float, images) = synthetic_classifier();
        let calibrator = calibrate_synthetic(&graph, &float, &images);
        let float_logits: Vec<Vec<f32>> = images.iter().map(|i| float.run(i).unwrap()).collect();
        let opts = LowerOptions::default();
        let inputs = SearchInputs {
            graph: &graph,
            calibrator: &calibrator,
            opts: &opts,
            images: &images,
            float_logits: &float_logits,
            adjust: &|_| {},
        };
        // Percentile 60 clips hard: the search must not pick it where it hurts.
        let base = calibrator.ranges(CalibMethod::MinMax);
        let candidates = [CalibMethod::Percentile(60.0), CalibMethod::Mse];
        let (ranges, choices) = search(&inputs, &base, &candidates).unwrap();
        let before = logit_error(&inputs, &base).unwrap();
        let after = logit_error(&inputs, &ranges).unwrap();
        assert!(after <= before, "{after} > {before}");
        assert_eq!(choices.is_empty(), after == before, "{choices:?}");
        for c in &choices {
            assert_eq!(ranges.get(&c.tensor), Some(&c.range));
        }
    }
}
