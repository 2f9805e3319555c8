//! Patch-based schedules against the whole-tensor one, bit for bit: every example model
//! (the grayscale ones and the RGB ones) quantized once, then planned again with random
//! stages, band heights and CBAM look-ahead (and with the planner's own patch plan), each blob run on the
//! core with the same real images as the layer-by-layer blob.

use std::path::Path;

use cbam_compiler::blob;
use cbam_compiler::data;
use cbam_compiler::plan::{plan_with, Plan, Stage};
use cbam_compiler::schedule::{self, ScheduleChoice};
use cbam_core::Model;
use cbam_e2e::fidelity::{self, Normalization};
use cbam_e2e::paths;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Calibration images: bit-exactness does not depend on how good the ranges are.
const CALIB_IMAGES: usize = 8;
/// Real images each pair of blobs is compared on.
const INPUTS: usize = 2;
/// Random stages per model.
const CASES: u32 = 24;

fn outputs(blob: &[u8], inputs: &[Vec<i8>]) -> Vec<Vec<i8>> {
    let model = Model::parse(blob).unwrap_or_else(|e| panic!("the blob does not parse: {e}"));
    let mut arena = vec![0u8; model.arena_size()];
    inputs
        .iter()
        .map(|x| {
            let mut y = vec![0i8; model.output().len()];
            model.run(&mut arena, x, &mut y).expect("run");
            y
        })
        .collect()
}

fn check_model(onnx: &Path, images: &Path, norm: &Normalization) {
    let name = onnx.display();
    let calib = fidelity::load_data(onnx, images, None, CALIB_IMAGES, norm)
        .unwrap_or_else(|e| panic!("{name}: calibration data: {e}"));
    let compiled = fidelity::quantize_fast(onnx, &calib, norm)
        .unwrap_or_else(|e| panic!("{name}: quantize: {e}"));
    let model = &compiled.model;
    let write = |plan: &Plan| blob::write(model, plan, &compiled.meta).expect("write");

    // The reference: every op on whole tensors, nothing in place.
    let layer_blob = write(&plan_with(model, false, &[]).unwrap());
    let core = Model::parse(&layer_blob).unwrap();
    let xs: Vec<Vec<i8>> = calib.samples[..INPUTS]
        .iter()
        .map(|s| data::core_input_for(s, &core.input(), core.input_is_raw_pixels()).unwrap())
        .collect();
    let reference = outputs(&layer_blob, &xs);

    assert_eq!(
        outputs(&compiled.blob, &xs),
        reference,
        "{name}: the in-place blob"
    );
    let (patch, arenas) = schedule::choose(model, ScheduleChoice::Patch).unwrap();
    assert_eq!(
        outputs(&write(&patch), &xs),
        reference,
        "{name}: planner's patch plan {:?}",
        patch.stages
    );
    assert!(
        arenas.patch <= arenas.in_place && arenas.in_place <= arenas.layer_by_layer,
        "{name}: {arenas:?}"
    );

    // Every stage the planner accepts (band height 1 decides legality), with and without
    // the CBAM look-ahead, then random ones.
    let n = model.ops.len();
    let legal: Vec<(usize, usize, bool)> = (0..n)
        .flat_map(|first| (first + 1..=n.min(first + 32)).map(move |end| (first, end)))
        .flat_map(|(first, end)| [(first, end, false), (first, end, true)])
        .filter(|&(first, end, lookahead)| {
            plan_with(
                model,
                true,
                &[Stage {
                    first,
                    end,
                    band_rows: 1,
                    lookahead,
                }],
            )
            .is_ok()
        })
        .collect();
    assert!(
        legal.iter().any(|&(f, e, _)| e - f >= 3),
        "{name}: no stage of 3 ops or more: {legal:?}"
    );
    assert!(
        legal.iter().any(|&(_, _, lookahead)| lookahead),
        "{name}: no look-ahead stage: {legal:?}"
    );
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(0..legal.len(), 1usize..=20), |(pick, band_rows)| {
            let (first, end, lookahead) = legal[pick];
            let stage = Stage {
                first,
                end,
                band_rows,
                lookahead,
            };
            let plan = plan_with(model, true, &[stage]).unwrap();
            prop_assert_eq!(
                outputs(&write(&plan), &xs),
                reference.clone(),
                "{}: {:?}",
                name,
                stage
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn patch_schedules_match_the_whole_tensor_schedule_on_the_grayscale_models() {
    let images = paths::calibration_images().expect("calibration images in models/data");
    let top = paths::workspace_root().join("models");
    let models: Vec<_> = paths::example_models()
        .into_iter()
        .filter(|m| m.parent() == Some(top.as_path()))
        .collect();
    assert!(!models.is_empty());
    for onnx in models {
        check_model(&onnx, &images, &None);
    }
}

#[test]
fn patch_schedules_match_the_whole_tensor_schedule_on_the_rgb_models() {
    let models = paths::rgb_models();
    assert!(!models.is_empty());
    for m in models {
        check_model(&m.onnx, &m.calib, &fidelity::imagenet());
    }
}
