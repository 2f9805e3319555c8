//! Every export style in the zoo (`models/zoo/*.onnx`: ResNet, MobileNet and VGG shapes,
//! CBAM as in the paper, the official code and timm, light CBAM, SE and spatial-only
//! attention, legacy and dynamo exports) goes through import, quantization and the int8
//! core, and the core's top-1 agrees with the float model (tract) on real images.
//!
//! The zoo's weights are random, so agreement is the only meaningful number, and a loose
//! one with few calibration images: the bound catches a model the chain breaks (a wrong
//! layout or arithmetic lands near chance, 0.1), not a quantization a little worse. The
//! per-model agreement is printed; `models/zoo/STATUS.md` has the CLI's numbers on 256
//! calibration and 256 test images.

use std::path::Path;

use cbam_compiler::qdq::compare;
use cbam_core::OpCode;
use cbam_e2e::{fidelity, paths, workers};

/// Calibration and test images per model: a few, so 32 models fit in the suite's time.
const CALIB_IMAGES: usize = 32;
const TEST_IMAGES: usize = 64;

/// Lowest top-1 agreement accepted, of the core with float and of the QDQ model with the
/// core. Measured with these images: 0.859 and 0.828 at the lowest (MobileNetV3 with
/// hard-sigmoid SE); a chain that breaks a model lands near chance.
const MIN_AGREEMENT: f64 = 0.75;

/// Test images on which the QDQ model's channel pools are compared with the core's, op by
/// op on identical int8 inputs.
const COMPARED_IMAGES: usize = 4;

/// What one zoo model measured.
struct Measured {
    fidelity: fidelity::Fidelity,
    /// CHANNEL_POOL ops in the blob, and the largest difference of their QDQ form from
    /// the core's on identical inputs (in steps; the QDQ model writes them exactly).
    channel_pools: (usize, u32),
}

/// Quantizes `model` and measures the core against tract; the error says which step failed.
fn measure(model: &Path) -> Result<Measured, String> {
    let (calib, test) = paths::rgb_folders_64();
    let calib = fidelity::load_data(model, &calib, None, CALIB_IMAGES, &fidelity::imagenet())
        .map_err(|e| format!("calibration data: {e}"))?;
    let compiled = fidelity::quantize(model, &calib, &fidelity::imagenet())
        .map_err(|e| format!("quantize: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let qdq_path = dir.path().join("model.int8.onnx");
    let qdq = compiled.qdq.as_ref().ok_or("no QDQ model")?;
    std::fs::write(&qdq_path, qdq).map_err(|e| e.to_string())?;
    let test = fidelity::load_data(model, &test, None, TEST_IMAGES, &fidelity::imagenet())
        .map_err(|e| format!("test data: {e}"))?;
    let fidelity =
        fidelity::measure(model, &compiled, &qdq_path, &test).map_err(|e| format!("run: {e}"))?;
    let core = cbam_core::Model::parse(&compiled.blob).map_err(|e| format!("blob: {e}"))?;
    let is_pool = |i| core.op(i).is_some_and(|o| o.code == OpCode::ChannelPool);
    let pools = (0..core.n_ops()).filter(|&i| is_pool(i)).count();
    let mut worst = 0;
    if pools > 0 {
        let samples = test.samples.get(..COMPARED_IMAGES).unwrap_or(&test.samples);
        let a = compare::compare(qdq, &compiled.blob, samples)
            .map_err(|e| format!("QDQ compare: {e}"))?;
        let compared = a.layers.iter().filter(|l| l.code == OpCode::ChannelPool);
        worst = compared.map(|l| l.isolated.max).max().unwrap_or(u32::MAX);
    }
    Ok(Measured {
        fidelity,
        channel_pools: (pools, worst),
    })
}

#[test]
fn every_zoo_model_runs_in_the_core_and_agrees_with_float() {
    let models = paths::zoo_models();
    assert!(
        models.len() >= 30,
        "models/zoo holds {} models",
        models.len()
    );
    let results = workers::on_two_cores(&models, |model| measure(model));
    let mut failures = Vec::new();
    for (model, result) in models.iter().zip(&results) {
        let name = model.file_stem().unwrap_or_default().to_string_lossy();
        match result {
            Ok(m) => {
                let (f, (pools, steps)) = (&m.fidelity, m.channel_pools);
                eprintln!(
                    "{name:45} agreement {:.3}  QDQ-vs-core {:.3}  (n={})  channel pools {pools}",
                    f.agreement, f.qdq_agreement, f.n
                );
                if f.agreement.min(f.qdq_agreement) < MIN_AGREEMENT {
                    failures.push(format!(
                        "{name}: agreement {:.3}, QDQ with the core {:.3}",
                        f.agreement, f.qdq_agreement
                    ));
                }
                if steps > 0 {
                    failures.push(format!(
                        "{name}: a CHANNEL_POOL's QDQ form differs from the core by {steps} steps"
                    ));
                }
            }
            Err(e) => {
                eprintln!("{name:45} FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
