//! The float reference: the ONNX model run by tract with batch 1, optionally exposing
//! intermediate values by their ONNX names (what calibration observes).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::import::{self, ImportError};

#[derive(Debug, thiserror::Error)]
pub enum FloatRunError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("tract cannot load the model: {why}")]
    Load { why: String },
    #[error("tract cannot prepare the model with outputs {outputs:?}: {why}")]
    Compile { outputs: Vec<String>, why: String },
    #[error("the input has {got} values but the model takes {expected:?} ({} values); resize or reshape the data", expected.iter().product::<usize>())]
    InputSize { expected: Vec<usize>, got: usize },
    #[error("no value named {name:?} in the ONNX graph; use the names the IR's tensors and CbamValues carry")]
    UnknownValue { name: String },
    #[error("tract failed running the model: {why}")]
    Run { why: String },
    #[error("value {name:?} is not float32")]
    NotFloat { name: String },
}

/// A compiled plan and the run states it has handed out and got back: spawning a state
/// allocates every intermediate buffer, so states are reused across runs (and threads).
struct Prepared {
    plan: Arc<TypedRunnableModel>,
    idle: Mutex<Vec<TypedSimpleState>>,
}

type Plan = Arc<Prepared>;

/// A float ONNX model prepared for repeated batch-1 runs. Plans (one per set of requested
/// values) are compiled and optimised once and reused.
pub struct FloatModel {
    model: InferenceModel,
    input_shape: Vec<usize>,
    output_name: String,
    plans: Mutex<HashMap<Vec<String>, Plan>>,
}

impl std::fmt::Debug for FloatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloatModel")
            .field("input_shape", &self.input_shape)
            .finish_non_exhaustive()
    }
}

fn why(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

impl FloatModel {
    pub fn load(path: &Path) -> Result<Self, FloatRunError> {
        let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let proto = import::decode_model(&bytes, path)?;
        Self::from_proto(&proto, path.parent())
    }

    /// `model_dir` resolves external tensor data, if any.
    pub fn from_proto(proto: &ModelProto, model_dir: Option<&Path>) -> Result<Self, FloatRunError> {
        let (_, input_shape) = import::input_of(proto)?;
        // Dynamo writes a symbolic batch into the output and value_info shapes too; tract
        // would try to unify it with the fixed 1, so those declarations are ignored.
        let onnx = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true);
        let dir = model_dir.and_then(Path::to_str);
        let mut model = onnx
            .parse(proto, dir)
            .map_err(|e| FloatRunError::Load { why: why(e) })?
            .model;
        model
            .set_input_fact(0, f32::fact(&input_shape).into())
            .map_err(|e| FloatRunError::Load { why: why(e) })?;
        let output_name = proto
            .graph
            .as_ref()
            .and_then(|g| g.output.first())
            .map(|o| o.name.clone())
            .ok_or_else(|| FloatRunError::Load {
                why: "the graph has no output".into(),
            })?;
        let me = FloatModel {
            model,
            input_shape,
            output_name,
            plans: Mutex::new(HashMap::new()),
        };
        me.plan(std::slice::from_ref(&me.output_name))?;
        Ok(me)
    }

    /// `[1, c, h, w]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The ONNX name of the model output.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    fn plan(&self, names: &[String]) -> Result<Plan, FloatRunError> {
        let poisoned = |_| FloatRunError::Run {
            why: "a previous run panicked".into(),
        };
        if let Some(plan) = self.plans.lock().map_err(poisoned)?.get(names) {
            return Ok(plan.clone());
        }
        let mut model = self.model.clone();
        let outlets = names
            .iter()
            .map(|name| {
                model
                    .find_outlet_label(name)
                    .or_else(|| {
                        model
                            .node_by_name(name)
                            .ok()
                            .map(|n| OutletId::new(n.id, 0))
                    })
                    .ok_or_else(|| FloatRunError::UnknownValue { name: name.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let compile = |e| FloatRunError::Compile {
            outputs: names.to_vec(),
            why: why(e),
        };
        model.select_output_outlets(&outlets).map_err(compile)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(compile)?;
        let plan = Arc::new(Prepared {
            plan,
            idle: Mutex::new(Vec::new()),
        });
        self.plans
            .lock()
            .map_err(poisoned)?
            .insert(names.to_vec(), plan.clone());
        Ok(plan)
    }

    fn execute(&self, input: &[f32], names: &[String]) -> Result<TVec<TValue>, FloatRunError> {
        if input.len() != self.input_shape.iter().product::<usize>() {
            return Err(FloatRunError::InputSize {
                expected: self.input_shape.clone(),
                got: input.len(),
            });
        }
        let prepared = self.plan(names)?;
        let run_err = |e| FloatRunError::Run { why: why(e) };
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(run_err)?;
        let reused = prepared.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut state = match reused {
            Some(state) => state,
            None => prepared.plan.spawn().map_err(run_err)?,
        };
        let outputs = state.run(tvec!(tensor.into())).map_err(run_err)?;
        if let Ok(mut idle) = prepared.idle.lock() {
            idle.push(state);
        }
        Ok(outputs)
    }

    /// The model output for one NCHW input, flattened.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>, FloatRunError> {
        let name = std::slice::from_ref(&self.output_name);
        let out = self.execute(input, name)?;
        to_vec(out.first(), &self.output_name)
    }

    /// The values named `names` (ONNX value names: the IR's tensor names, the graph output,
    /// the names in [`CbamValues`](crate::ir::CbamValues)) for one NCHW input, flattened
    /// in NCHW order.
    pub fn run_with_values(
        &self,
        input: &[f32],
        names: &[String],
    ) -> Result<HashMap<String, Vec<f32>>, FloatRunError> {
        let outputs = self.execute(input, names)?;
        names
            .iter()
            .zip(outputs.iter())
            .map(|(name, v)| Ok((name.clone(), to_vec(Some(v), name)?)))
            .collect()
    }
}

fn to_vec(value: Option<&TValue>, name: &str) -> Result<Vec<f32>, FloatRunError> {
    let not_float = || FloatRunError::NotFloat {
        name: name.to_string(),
    };
    let value = value.ok_or_else(not_float)?;
    value
        .to_plain_array_view::<f32>()
        .map(|v| v.iter().copied().collect())
        .map_err(|_| not_float())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::testing::{int, CbamStyle, OnnxBuilder};

    #[test]
    fn runs_and_exposes_intermediate_values() -> Result<(), FloatRunError> {
        let mut b = OnnxBuilder::new(&[1, 1, 2, 2], 13);
        let w = b.init(&[2, 1, 1, 1], vec![1.0, -1.0]);
        let c = b.node("Conv", &["x", &w], vec![]);
        let r = b.node("Relu", &[&c], vec![]);
        let f = b.node("Flatten", &[&r], vec![int("axis", 1)]);
        let model = FloatModel::from_proto(&b.build(&f), None)?;
        let input = [1.0, -2.0, 3.0, -4.0];
        assert_eq!(
            model.run(&input)?,
            vec![1.0, 0.0, 3.0, 0.0, 0.0, 2.0, 0.0, 4.0]
        );
        let values = model.run_with_values(&input, &[c.clone(), f.clone()])?;
        assert_eq!(values[&c], vec![1.0, -2.0, 3.0, -4.0, -1.0, 2.0, -3.0, 4.0]);
        assert_eq!(values[&f].len(), 8);
        Ok(())
    }

    #[test]
    fn symbolic_batch_of_dynamo_exports_is_fixed_to_one() -> Result<(), FloatRunError> {
        let (mut b, out) = OnnxBuilder::cbam_classifier(&CbamStyle::default(), 18);
        // dynamo declares the batch as a symbol on the input and the output.
        b.input_dims = vec![-1, 1, 8, 8];
        b.output_dims = Some(vec![-1, 4]);
        let proto = b.build(&out);
        let model = FloatModel::from_proto(&proto, None)?;
        assert_eq!(model.input_shape(), [1, 1, 8, 8]);
        assert_eq!(model.run(&[0.25; 64])?.len(), 4);
        Ok(())
    }

    #[test]
    fn wrong_input_size_and_unknown_names_are_errors() -> Result<(), FloatRunError> {
        let (b, out) = OnnxBuilder::cbam_classifier(&CbamStyle::default(), 13);
        let model = FloatModel::from_proto(&b.build(&out), None)?;
        assert!(matches!(
            model.run(&[0.0; 10]),
            Err(FloatRunError::InputSize { got: 10, .. })
        ));
        let missing = model.run_with_values(&[0.0; 64], &["nope".to_string()]);
        assert!(matches!(missing, Err(FloatRunError::UnknownValue { .. })));
        Ok(())
    }
}
