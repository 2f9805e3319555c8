//! The three arena plans of every example model, as a Markdown table: layer by layer
//! (TensorFlow Lite Micro's greedy plan: whole tensors, nothing in place), in place (the
//! fused CBAM op over its input) and patch-based (the first stages band by band), with the
//! multiply-accumulates the patch plan recomputes (at most 15% of the model's); last, the
//! smallest arena band-by-band stages reach when the recomputation is not limited.
//!
//! `cargo run -p cbam-e2e --example arenas`. The plans depend on the shapes alone, so a few
//! calibration images are enough.

use std::path::Path;

use cbam_compiler::schedule::{self, ScheduleChoice, ScheduleError};
use cbam_e2e::fidelity::{self, Normalization};
use cbam_e2e::paths;

const CALIB_IMAGES: usize = 4;

fn row(onnx: &Path, images: &Path, norm: &Normalization) -> Result<String, fidelity::Error> {
    let calib = fidelity::load_data(onnx, images, None, CALIB_IMAGES, norm)?;
    let compiled = fidelity::quantize_fast(onnx, &calib, norm)?;
    let model = &compiled.model;
    let (_, a) = schedule::choose(model, ScheduleChoice::Patch)?;
    // The smallest arena whatever the recomputation costs: the refusal of a 1-byte budget.
    let smallest = match schedule::choose(model, ScheduleChoice::Budget(1)) {
        Err(ScheduleError::OverBudget {
            best, extra_macs, ..
        }) => format!(
            "{best} ({:.2}x, +{:.1}%)",
            best as f64 / f64::from(a.layer_by_layer.max(1)),
            extra_macs as f64 * 100.0 / model.macs.max(1) as f64
        ),
        other => format!("{other:?}"),
    };
    let name = onnx.file_stem().unwrap_or_default().to_string_lossy();
    let ratio = |x: u32| f64::from(x) / f64::from(a.layer_by_layer.max(1));
    let stages: Vec<String> = a.patch_stages.iter().map(|s| s.to_string()).collect();
    Ok(format!(
        "| `{name}` | {} | {} ({:.2}x) | {} ({:.2}x) | {} (+{:.1}%) | {} | {smallest} |",
        a.layer_by_layer,
        a.in_place,
        ratio(a.in_place),
        a.patch,
        ratio(a.patch),
        a.patch_extra_macs,
        a.patch_extra_macs as f64 * 100.0 / model.macs.max(1) as f64,
        stages.join(", ")
    ))
}

fn main() -> Result<(), fidelity::Error> {
    let images = paths::calibration_images().ok_or("no calibration images in models/data")?;
    println!(
        "| model | layer by layer (B) | in place (B) | patch-based (B) | patch extra MACs | patch stages (ops, output rows per band) | smallest patch-based, any extra MACs (B) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for onnx in paths::example_models()
        .into_iter()
        .filter(|m| m.parent() == Some(paths::workspace_root().join("models").as_path()))
    {
        println!("{}", row(&onnx, &images, &None)?);
    }
    for m in paths::rgb_models() {
        println!("{}", row(&m.onnx, &m.calib, &fidelity::imagenet())?);
    }
    Ok(())
}
