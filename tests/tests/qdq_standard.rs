//! The standard-form QDQ model (`cbam quantize --qdq`'s default: ordinary ops between
//! QuantizeLinear and DequantizeLinear, which runtimes fuse into their int8 kernels) run by
//! tract against the int8 core on Fashion-MNIST test images, and the batch axis of a
//! dynamic-batch export. Speed in onnxruntime and tract: `tools/qdq_speed.py`.
//!
//! The standard form rounds every op once, half to even, where the core rounds twice
//! through Q31 multipliers and its sigmoid tables half away from zero; the CBAM blocks'
//! means, pooled MLP and spatial conv are float ops between Q/DQ pairs. Those differences
//! stay a few output steps at the logits; top-1 agrees with the core on nearly every image.

use std::path::Path;

use cbam_compiler::import;
use cbam_compiler::ir::Batch;
use cbam_compiler::qdq::QdqForm;
use cbam_e2e::fidelity::{self, Fidelity};
use cbam_e2e::{paths, workers};

/// Top-1 agreement of the standard QDQ model (tract) with the core, at least.
const MIN_TOP1_AGREEMENT: f64 = 0.98;

fn measure(model: &Path, test: &paths::TestSet) -> Fidelity {
    let n = std::env::var("CBAM_E2E_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let calib_images = paths::calibration_images().expect("calibration images in models/data");
    let calib = fidelity::load_data(model, &calib_images, None, 256, &None)
        .unwrap_or_else(|e| panic!("{}: calibration data: {e}", model.display()));
    let compiled = fidelity::quantize_qdq(model, &calib, QdqForm::default(), &None)
        .unwrap_or_else(|e| panic!("{}: quantize: {e}", model.display()));
    let dir = tempfile::tempdir().unwrap();
    let qdq_path = dir.path().join("model.int8.onnx");
    std::fs::write(&qdq_path, compiled.qdq.as_ref().expect("QDQ requested")).unwrap();
    let data = fidelity::load_data(model, &test.images, Some(&test.labels), n, &None)
        .unwrap_or_else(|e| panic!("{}: test data: {e}", model.display()));
    fidelity::measure(model, &compiled, &qdq_path, &data)
        .unwrap_or_else(|e| panic!("{}: measure: {e}", model.display()))
}

#[test]
fn standard_qdq_agrees_with_the_core_on_test_images() {
    let Some(test) = paths::fashion_mnist_test() else {
        panic!("no Fashion-MNIST test set: run scripts/setup.sh (installs dataset-fashion-mnist)");
    };
    let root = paths::workspace_root().join("models");
    let models = [
        root.join("fmnist_cbam.onnx"),
        root.join("fmnist_cbam_res.onnx"),
    ];
    let results = workers::on_two_cores(&models, |m| measure(m, &test));
    for (model, f) in models.iter().zip(&results) {
        eprintln!(
            "{}: standard QDQ (tract) vs core on {} images: top-1 agreement {:.2}%, \
             max logit difference {:.1} steps, {:.2}% of logits beyond one step; \
             QDQ accuracy vs float: core {:.2}%, float {:.2}%",
            model.display(),
            f.n,
            f.qdq_agreement * 100.0,
            f.qdq_max_steps,
            f.qdq_beyond_one_step * 100.0,
            f.int8_accuracy * 100.0,
            f.float_accuracy * 100.0,
        );
        assert!(
            f.qdq_agreement >= MIN_TOP1_AGREEMENT,
            "{}: standard QDQ top-1 agrees with the core on {:.2}% < {:.0}%",
            model.display(),
            f.qdq_agreement * 100.0,
            MIN_TOP1_AGREEMENT * 100.0
        );
    }
}

#[test]
fn a_dynamic_batch_export_keeps_its_symbolic_batch() {
    let root = paths::workspace_root().join("models");
    let dynamic = import::load_onnx(&root.join("variants/fmnist_cbam_dynamo_op18.onnx")).unwrap();
    assert_eq!(dynamic.meta.batch, Batch::Symbolic("batch".into()));
    let fixed = import::load_onnx(&root.join("fmnist_cbam.onnx")).unwrap();
    assert_eq!(fixed.meta.batch, Batch::One);
}
