//! The float reference: an ONNX model run by tract with batch 1, optionally exposing
//! intermediate values by their ONNX names (what calibration observes and pruning measures).
//! The one place the compiler hands a model to tract.
//!
//! tract trusts its input, so every model first passes [`import::check_model`] and every
//! tract call runs under [`guarded`]: a panic inside tract becomes [`FloatRunError::Panicked`]
//! and, before a plan first runs, every value's shape is checked against
//! [`limits::MAX_TENSOR_VALUES`] so no run allocates without bound.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::import::{self, ImportError};
use crate::limits;

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
    #[error("tract crashed while it {stage} ({why}); the model is malformed: check it with `cbam inspect` or export it again")]
    Panicked { stage: &'static str, why: String },
    #[error("the model's value {name:?} would have shape {shape}: {why}")]
    TooLarge {
        name: String,
        shape: String,
        why: String,
    },
}

thread_local! {
    static IN_TRACT: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside a [`guarded`] tract call: a panic hook can stay quiet
/// then, since the panic becomes an error the caller reports.
pub fn in_tract() -> bool {
    IN_TRACT.with(Cell::get)
}

/// Runs `f` (a tract call), turning a panic into [`FloatRunError::Panicked`] and tract's
/// error into `error`.
fn guarded<T>(
    stage: &'static str,
    f: impl FnOnce() -> TractResult<T>,
    error: impl FnOnce(String) -> FloatRunError,
) -> Result<T, FloatRunError> {
    let outer = IN_TRACT.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_TRACT.with(|c| c.set(outer));
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(why(e))),
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(FloatRunError::Panicked { stage, why })
        }
    }
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
        let bytes = import::read_model_file(path)?;
        let proto = import::decode_model(&bytes, path)?;
        Self::from_proto(&proto, path.parent())
    }

    /// `model_dir` resolves external tensor data, if any.
    pub fn from_proto(proto: &ModelProto, model_dir: Option<&Path>) -> Result<Self, FloatRunError> {
        let (_, input_shape) = import::input_of(proto)?;
        Self::with_input_shape(proto, model_dir, input_shape)
    }

    /// As [`from_proto`](Self::from_proto), with the input fixed to `input_shape` (batch
    /// included) instead of the declared one.
    pub fn with_input_shape(
        proto: &ModelProto,
        model_dir: Option<&Path>,
        input_shape: Vec<usize>,
    ) -> Result<Self, FloatRunError> {
        import::check_model(proto, model_dir)?;
        // Dynamo writes a symbolic batch into the output and value_info shapes too; tract
        // would try to unify it with the fixed 1, so those declarations are ignored.
        let onnx = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true);
        let dir = model_dir.and_then(Path::to_str);
        let load = |why| FloatRunError::Load { why };
        let mut model = guarded(
            "loaded the model",
            || Ok(onnx.parse(proto, dir)?.model),
            load,
        )?;
        let fact = f32::fact(&input_shape);
        guarded(
            "set the input shape",
            || model.set_input_fact(0, fact.into()),
            load,
        )?;
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

    /// The shape of the model output (batch included), as tract infers it.
    pub fn output_shape(&self) -> Result<Vec<usize>, FloatRunError> {
        let prepared = self.plan(std::slice::from_ref(&self.output_name))?;
        let model = prepared.plan.model();
        let outlet = model
            .outputs
            .first()
            .copied()
            .ok_or_else(|| FloatRunError::Load {
                why: "the graph has no output".into(),
            })?;
        let fact = model
            .outlet_fact(outlet)
            .map_err(|e| FloatRunError::Load { why: why(e) })?;
        fact.shape
            .as_concrete()
            .map(<[usize]>::to_vec)
            .ok_or_else(|| FloatRunError::Load {
                why: format!("the output shape {:?} is not fixed", fact.shape),
            })
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
        let compile = |why| FloatRunError::Compile {
            outputs: names.to_vec(),
            why,
        };
        let typed = guarded(
            "inferred the shapes",
            || {
                model.select_output_outlets(&outlets)?;
                model.into_typed()
            },
            compile,
        )?;
        // Before code generation, which allocates tables as large as the geometry says.
        check_sizes(&typed)?;
        let plan = guarded(
            "compiled the model",
            || typed.into_optimized()?.into_runnable(),
            compile,
        )?;
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
        let run_err = |why| FloatRunError::Run { why };
        let tensor = Tensor::from_shape(&self.input_shape, input)
            .map_err(|e| FloatRunError::Run { why: why(e) })?;
        let reused = prepared.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut state = match reused {
            Some(state) => state,
            None => guarded("prepared a run", || prepared.plan.spawn(), run_err)?,
        };
        // A state a panic interrupted is dropped, not reused.
        let outputs = guarded("ran the model", || state.run(tvec!(tensor.into())), run_err)?;
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
    /// the names in [`CbamValues`](crate::ir::CbamValues)) for one NCHW input, each
    /// flattened in NCHW order, in the order asked.
    pub fn run_values(
        &self,
        input: &[f32],
        names: &[String],
    ) -> Result<Vec<Vec<f32>>, FloatRunError> {
        let outputs = self.execute(input, names)?;
        if outputs.len() != names.len() {
            return Err(FloatRunError::Run {
                why: format!("{} values asked, {} returned", names.len(), outputs.len()),
            });
        }
        names
            .iter()
            .zip(outputs.iter())
            .map(|(name, v)| to_vec(Some(v), name))
            .collect()
    }

    /// [`run_values`](Self::run_values) keyed by name.
    pub fn run_with_values(
        &self,
        input: &[f32],
        names: &[String],
    ) -> Result<HashMap<String, Vec<f32>>, FloatRunError> {
        let values = self.run_values(input, names)?;
        Ok(names.iter().cloned().zip(values).collect())
    }
}

/// Every value of a compiled plan must have a fixed shape within the tensor cap, so that a
/// model whose geometry is absurd (huge pads, a giant constant) fails here, not in `malloc`.
fn check_sizes(model: &TypedModel) -> Result<(), FloatRunError> {
    for node in &model.nodes {
        for (slot, output) in node.outputs.iter().enumerate() {
            let shape = &output.fact.shape;
            let too_large = |why: String| FloatRunError::TooLarge {
                name: if slot == 0 {
                    node.name.clone()
                } else {
                    format!("{}:{slot}", node.name)
                },
                shape: format!("{shape:?}"),
                why,
            };
            let Some(dims) = shape.as_concrete() else {
                return Err(too_large("it is not fixed for batch 1".into()));
            };
            limits::tensor_values(|| "it".into(), dims).map_err(|e| too_large(e.to_string()))?;
        }
    }
    Ok(())
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

/// Index of the largest logit (first on ties; NaN never wins).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if v.get(best).is_some_and(|b| x > b) {
            best = i;
        }
    }
    best
}

/// Top-1 accuracy in percent of `model` on labelled samples.
pub fn accuracy(
    model: &FloatModel,
    samples: &[Vec<f32>],
    labels: &[usize],
) -> Result<f64, FloatRunError> {
    let mut correct = 0usize;
    for (x, &y) in samples.iter().zip(labels) {
        if argmax(&model.run(x)?) == y {
            correct += 1;
        }
    }
    Ok(100.0 * correct as f64 / samples.len().max(1) as f64)
}

/// The typed tract model of `proto` with the input fixed to `[1, ..input_chw]`, for shape
/// inference; checked and guarded like every run.
pub fn typed_model(proto: &ModelProto, input_chw: &[usize]) -> Result<TypedModel, FloatRunError> {
    import::check_model(proto, None)?;
    let mut shape = vec![1usize];
    shape.extend_from_slice(input_chw);
    let model = guarded(
        "inferred the shapes",
        || {
            // As in `with_input_shape`: dynamo's symbolic batch in the declared shapes
            // would not unify with the fixed 1.
            tract_onnx::onnx()
                .with_ignore_output_shapes(true)
                .with_ignore_value_info(true)
                .model_for_proto_model(proto)?
                .with_input_fact(0, f32::fact(shape.as_slice()).into())?
                .into_typed()
        },
        |why| FloatRunError::Load { why },
    )?;
    check_sizes(&model)?;
    Ok(model)
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
    fn a_panic_inside_tract_becomes_an_error_and_the_flag_is_cleared() {
        let result: Result<(), FloatRunError> = guarded(
            "ran the model",
            || panic!("index out of bounds"),
            |why| FloatRunError::Run { why },
        );
        match result {
            Err(FloatRunError::Panicked { stage, why }) => {
                assert_eq!(
                    (stage, why.as_str()),
                    ("ran the model", "index out of bounds")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!in_tract());
    }

    #[test]
    fn a_value_past_the_tensor_cap_is_refused_before_tract_allocates_it() {
        // A 1x1 conv padded by 2^16 on each side: an output of 131,074^2 values per channel.
        let mut b = OnnxBuilder::new(&[1, 1, 2, 2], 13);
        let w = b.init(&[4, 1, 1, 1], vec![1.0; 4]);
        let pads = crate::import::testing::ints("pads", &[65_536; 4]);
        let out = b.node("Conv", &["x", &w], vec![pads]);
        let err = FloatModel::from_proto(&b.build(&out), None).unwrap_err();
        assert!(matches!(err, FloatRunError::TooLarge { .. }), "{err}");
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
