//! `cbam-bench`: frames/s of one model three ways, measured side by side in one process on
//! the same images: tract on the float ONNX, tract on the QDQ int8 ONNX, and the int8 core
//! on the `.cbam` blob. A benchmark, not a test: it prints numbers and never fails on them.
//!
//! Each engine gets one untimed warm-up pass (tract compiles its plan lazily), then the
//! passes are timed round-robin so a noisy neighbour on a shared machine slows all three,
//! and each engine's frames/s is that of its median pass, which one slow pass cannot move.
//! Every engine times inference only: tract's inputs are normalised and the core's
//! quantized before the clock starts, as a camera pipeline would prepare the next frame
//! while the current one runs.

#[path = "../packed_weights.rs"]
mod packed_weights;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cbam_compiler::data::{self, DataSource, InputSpec};
use cbam_compiler::float_run::FloatModel;
use cbam_compiler::import;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "cbam-bench",
    about = "Frames/s of tract float, tract QDQ int8 and the int8 core, side by side",
    after_help = "\
Example (scripts/bench-pi.sh makes the blob and the QDQ model first):
  cbam-bench --float models/fmnist_cbam.onnx --qdq m.int8.onnx --blob m.cbam \\
      --data models/data/test64_images.u8 --rounds 10"
)]
struct Args {
    /// The float ONNX model (also gives the input normalisation for all three)
    #[arg(long, value_name = "MODEL.onnx")]
    float: PathBuf,
    /// The QDQ ONNX written by `cbam quantize --qdq`
    #[arg(long, value_name = "MODEL.int8.onnx")]
    qdq: PathBuf,
    /// The .cbam blob written by `cbam quantize --out`
    #[arg(long, value_name = "MODEL.cbam")]
    blob: PathBuf,
    /// Images: a .u8 file, IDX, .npy or ImageFolder (see `cbam eval --help`)
    #[arg(long, value_name = "DATA")]
    data: PathBuf,
    /// Timed passes over the data per engine
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// One engine: runs sample `i`, returns its top-1 class (so the work cannot be optimised
/// away and the engines' agreement is visible).
type Engine<'a> = Box<dyn FnMut(usize) -> Result<usize> + 'a>;

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let graph = import::load_onnx(&args.float)
        .with_context(|| format!("cannot import {}", args.float.display()))?;
    let spec = InputSpec::from_graph(&graph)?;
    let source = DataSource {
        data: args.data.clone(),
        labels: None,
        limit: None,
    };
    let dataset = data::load(&source, &spec)
        .with_context(|| format!("cannot load {}", args.data.display()))?;
    ensure!(
        !dataset.is_empty(),
        "{} holds no images",
        args.data.display()
    );

    let float = FloatModel::load(&args.float)?;
    let qdq = FloatModel::load(&args.qdq)?;
    let blob_bytes = std::fs::read(&args.blob)
        .with_context(|| format!("cannot read {}", args.blob.display()))?;
    let blob = cbam_core::Model::parse(&blob_bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.blob.display()))?;
    let packing = OnceLock::new();
    let blob = packed_weights::with_packed_weights(&args.blob, blob, &packing)?;
    let (mut arena, mut out) = (vec![0u8; blob.arena_size()], vec![0i8; blob.output().len()]);
    let (info, raw) = (blob.input(), blob.input_is_raw_pixels());
    let quantized = dataset
        .samples
        .iter()
        .map(|s| data::core_input_for(s, &info, raw))
        .collect::<Result<Vec<_>, _>>()?;
    let sample = |i: usize| dataset.samples.get(i).context("sample index out of range");

    let mut engines: Vec<(&str, Engine)> = vec![
        (
            "tract float",
            Box::new(|i| top1(&float.run(&sample(i)?.input)?)),
        ),
        (
            "tract QDQ int8",
            Box::new(|i| top1(&qdq.run(&sample(i)?.input)?)),
        ),
        (
            "int8 core",
            Box::new(|i| {
                let q = quantized.get(i).context("sample index out of range")?;
                blob.run(&mut arena, q, &mut out)
                    .map_err(|e| anyhow::anyhow!("core: {e}"))?;
                cbam_core::argmax(&out).context("empty output")
            }),
        ),
    ];
    let mut passes = vec![Vec::with_capacity(args.rounds); engines.len()];
    // The untimed warm-up pass also gives each engine's agreement with the first's.
    let mut agree = Vec::with_capacity(engines.len());
    let mut reference = None;
    for (_, engine) in engines.iter_mut() {
        let classes = pass(engine, dataset.len())?;
        let reference = reference.get_or_insert_with(|| classes.clone());
        agree.push(
            classes
                .iter()
                .zip(reference.iter())
                .filter(|(a, b)| a == b)
                .count(),
        );
    }
    for _ in 0..args.rounds {
        for (i, (_, engine)) in engines.iter_mut().enumerate() {
            let start = Instant::now();
            pass(engine, dataset.len())?;
            if let Some(times) = passes.get_mut(i) {
                times.push(start.elapsed());
            }
        }
    }
    let frames = dataset.len() as f64;
    let fps: Vec<f64> = passes
        .iter_mut()
        .map(|times| frames / median(times).as_secs_f64().max(1e-9))
        .collect();
    println!(
        "{} on {} ({} images x {} rounds, median round), {}",
        args.float.display(),
        args.data.display(),
        dataset.len(),
        args.rounds,
        std::env::consts::ARCH
    );
    println!(
        "{:<16} {:>10} {:>10} {:>16} {:>14}",
        "engine", "frames/s", "ms/frame", "vs tract float", "top-1 = float"
    );
    let base = fps.first().copied().unwrap_or(1.0);
    for (((name, _), fps), agree) in engines.iter().zip(&fps).zip(&agree) {
        println!(
            "{:<16} {:>10.1} {:>10.3} {:>15.2}x {:>9}/{}",
            name,
            fps,
            1e3 / fps,
            fps / base,
            agree,
            dataset.len()
        );
    }
    Ok(())
}

fn pass(engine: &mut Engine, samples: usize) -> Result<Vec<usize>> {
    (0..samples).map(engine).collect()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The predicted class, by the tie rule every backend shares.
fn top1(scores: &[f32]) -> Result<usize> {
    cbam_core::argmax(scores).context("the model output is empty")
}
