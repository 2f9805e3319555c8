use super::*;
use crate::calib::CalibMethod;
use crate::quant::testing::{calibrate_synthetic, synthetic_deep_classifier};
use crate::quant::{self, LowerOptions, QOpKind};
use crate::tune::core_run::run_each;

/// Every op's output, by op index, during one core run.
#[derive(Default)]
struct CaptureAll(Vec<Vec<i8>>);

impl cbam_core::Observer for CaptureAll {
    fn op_end(&mut self, index: usize, _code: cbam_core::OpCode, output: &[i8]) {
        if self.0.len() <= index {
            self.0.resize(index + 1, Vec::new());
        }
        self.0[index] = output.to_vec();
    }
}

fn lowered() -> (QModel, Vec<Vec<f32>>) {
    let (graph, float, images) = synthetic_deep_classifier();
    let ranges = calibrate_synthetic(&graph, &float, &images).ranges(CalibMethod::MinMax);
    let model = quant::lower(&graph, &ranges, &LowerOptions::default()).unwrap();
    (model, images)
}

/// Per image, every tensor's value in a run from the input.
fn full_runs(model: &QModel, images: &[Vec<f32>]) -> Vec<Vec<Option<Vec<i8>>>> {
    let outputs = run_each(model, images, &mut CaptureAll::default(), |c, _| {
        std::mem::take(&mut c.0)
    })
    .unwrap();
    outputs
        .into_iter()
        .zip(images)
        .map(|(ops, image)| {
            let mut tensors = vec![None; model.tensors.len()];
            tensors[model.input] = Some(device_input(&model.tensors[model.input], image));
            for (op, out) in model.ops.iter().zip(ops) {
                tensors[op.output] = Some(out);
            }
            tensors
        })
        .collect()
}

/// Checks every tensor live at the current boundary against runs from the input; returns
/// how many tensors it compared.
fn assert_live_equal(run: &Resumable, full: &[Vec<Option<Vec<i8>>>], what: &str) -> usize {
    let mut compared = 0;
    for (image, tensors) in full.iter().enumerate() {
        for &(t, _, _) in &run.live {
            let expected = tensors[t].as_deref().unwrap();
            assert_eq!(
                run.tensor(image, t),
                Some(expected),
                "{what}: image {image}, tensor #{t} at boundary {}",
                run.boundary
            );
            compared += 1;
        }
    }
    compared
}

/// Walking the boundaries one by one, each image's live tensors are bit for bit what a
/// run from the input computes; stepping back starts again from the input.
#[test]
fn resumed_states_equal_full_runs_at_every_boundary() {
    let (model, images) = lowered();
    let full = full_runs(&model, &images);
    let mut run = Resumable::new(&model, &images).unwrap();
    let mut compared = 0;
    for b in 0..=model.ops.len() {
        run.advance(&model, &images, b).unwrap();
        compared += assert_live_equal(&run, &full, "forward");
    }
    // The residual's skip tensor is live beside the branch at some boundaries.
    assert!(compared > (model.ops.len() + 1) * images.len());
    run.advance(&model, &images, 2).unwrap();
    assert_live_equal(&run, &full, "after stepping back");
    // A tensor not live at the boundary is not handed out.
    assert!(run.tensor(0, model.output).is_none());
    assert!(run.tensor(images.len(), model.input).is_none());
}

/// The ops after the boundary may change between steps (a corrected bias): the resumed
/// run then equals a full run of the changed model, not of the first one.
#[test]
fn resuming_under_changed_parameters_equals_a_full_run_of_the_changed_model() {
    let (model, images) = lowered();
    let convs: Vec<usize> = (0..model.ops.len())
        .filter(|&i| matches!(model.ops[i].kind, QOpKind::Conv(_)))
        .collect();
    let &changed = convs.last().unwrap();
    assert!(changed > 0, "the test needs ops before the changed conv");
    let mut run = Resumable::new(&model, &images).unwrap();
    run.advance(&model, &images, changed).unwrap();
    let mut shifted = model.clone();
    if let QOpKind::Conv(p) = &mut shifted.ops[changed].kind {
        for b in &mut p.bias {
            *b += 4000;
        }
    }
    run.advance(&shifted, &images, model.ops.len()).unwrap();
    assert!(run.tensor(0, model.output).is_some());
    assert_live_equal(&run, &full_runs(&shifted, &images), "changed");
    let first = full_runs(&model, &images);
    let differs = (0..images.len()).any(|i| {
        run.live
            .iter()
            .any(|&(t, _, _)| run.tensor(i, t) != first[i][t].as_deref())
    });
    assert!(differs, "the bias change reached no live tensor");
}

/// The state kept per image never exceeds the arena, and holds at least the input.
#[test]
fn state_bytes_lie_between_the_input_and_the_arena() {
    let (model, _) = lowered();
    let plan = plan::plan(&model).unwrap();
    let bytes = Resumable::state_bytes(&model, 0..model.ops.len()).unwrap();
    assert!(bytes >= model.tensors[model.input].len());
    assert!(bytes <= plan.arena_size as usize);
}
