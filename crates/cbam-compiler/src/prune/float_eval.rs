//! Float runs of an ONNX model through tract, returning the model output and any extra
//! named values (the CBAM channel-attention vectors). Used for attention statistics, for
//! float accuracy before/after pruning and by the tests that compare pruned and reference
//! models.

use std::sync::Arc;

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use super::PruneError;

/// A model ready to run on single `[c, h, w]` inputs.
pub struct FloatRunner {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
}

fn tract_err(e: impl std::fmt::Display) -> PruneError {
    PruneError::Tract(format!("{e:#}"))
}

impl FloatRunner {
    /// Builds a runner whose outputs are the model's first output followed by `extra`
    /// (ONNX value names).
    pub fn new(
        proto: &ModelProto,
        input_chw: &[usize],
        extra: &[String],
    ) -> Result<Self, PruneError> {
        let mut input_shape = vec![1usize];
        input_shape.extend_from_slice(input_chw);
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(tract_err)?;
        let mut outputs = vec![*model
            .outputs
            .first()
            .ok_or_else(|| PruneError::Unsupported("the model has no output".into()))?];
        for name in extra {
            let outlet = model
                .find_outlet_label(name)
                .ok_or_else(|| PruneError::Tract(format!("tract has no value named `{name}`")))?;
            outputs.push(outlet);
        }
        model.select_output_outlets(&outputs).map_err(tract_err)?;
        let plan = model
            .with_input_fact(0, f32::fact(input_shape.as_slice()).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(tract_err)?;
        Ok(FloatRunner { plan, input_shape })
    }

    /// Runs one input (`c*h*w` floats, NCHW); returns every output flattened.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>, PruneError> {
        let expected: usize = self.input_shape.iter().product();
        if input.len() != expected {
            return Err(PruneError::InputShape {
                expected: self.input_shape[1..].to_vec(),
                got: input.len(),
            });
        }
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(tract_err)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(tract_err)?;
        outputs
            .iter()
            .map(|o| {
                o.to_plain_array_view::<f32>()
                    .map(|view| view.iter().copied().collect())
                    .map_err(tract_err)
            })
            .collect()
    }
}

/// Top-1 accuracy in percent of `proto` on labelled samples.
pub fn accuracy(
    proto: &ModelProto,
    input_chw: &[usize],
    samples: &[Vec<f32>],
    labels: &[usize],
) -> Result<f64, PruneError> {
    if samples.is_empty() {
        return Err(PruneError::EmptyData("evaluation"));
    }
    let runner = FloatRunner::new(proto, input_chw, &[])?;
    let mut correct = 0usize;
    for (x, &y) in samples.iter().zip(labels) {
        let out = runner.run(x)?;
        if out.first().and_then(|logits| cbam_core::argmax(logits)) == Some(y) {
            correct += 1;
        }
    }
    Ok(100.0 * correct as f64 / samples.len() as f64)
}
