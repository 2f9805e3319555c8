//! `cbam-bench`: frames/s of one model three ways, measured side by side in one process on
//! the same images: tract on the float ONNX, tract on the QDQ int8 ONNX, and the int8 core
//! on the `.cbam` blob. A benchmark, not a test: it prints numbers and never fails on them.
//!
//! Each engine gets one untimed warm-up pass (tract compiles its plan lazily), then the
//! passes are timed round-robin so a noisy neighbour on a shared machine slows all three.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cbam_compiler::data::{self, DataSource, Dataset, InputSpec};
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

/// One engine: runs a sample, returns its top-1 class (so the work cannot be optimised away
/// and the engines' agreement is visible).
type Engine<'a> = Box<dyn FnMut(&data::Sample) -> Result<usize> + 'a>;

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
    let (mut arena, mut out) = (vec![0u8; blob.arena_size()], vec![0i8; blob.output().len()]);
    let (info, raw) = (blob.input(), blob.input_is_raw_pixels());

    let mut engines: Vec<(&str, Engine)> = vec![
        (
            "tract float",
            Box::new(|s: &data::Sample| top1(&float.run(&s.input)?)),
        ),
        (
            "tract QDQ int8",
            Box::new(|s: &data::Sample| top1(&qdq.run(&s.input)?)),
        ),
        (
            "int8 core",
            Box::new(|s: &data::Sample| {
                let q = data::core_input_for(s, &info, raw)?;
                blob.run(&mut arena, &q, &mut out)
                    .map_err(|e| anyhow::anyhow!("core: {e}"))?;
                cbam_core::argmax(&out).context("empty output")
            }),
        ),
    ];
    let mut elapsed = vec![Duration::ZERO; engines.len()];
    let mut agree = vec![0usize; engines.len()];
    let mut reference = Vec::new();
    for (i, (_, engine)) in engines.iter_mut().enumerate() {
        let classes = pass(engine, &dataset)?;
        if i == 0 {
            reference = classes.clone();
        }
        agree[i] = classes
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a == b)
            .count();
    }
    for _ in 0..args.rounds {
        for (i, (_, engine)) in engines.iter_mut().enumerate() {
            let start = Instant::now();
            pass(engine, &dataset)?;
            elapsed[i] += start.elapsed();
        }
    }
    let frames = (dataset.len() * args.rounds) as f64;
    let fps: Vec<f64> = elapsed
        .iter()
        .map(|e| frames / e.as_secs_f64().max(1e-9))
        .collect();
    println!(
        "{} on {} ({} images x {} rounds), {}",
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
    for (i, (name, _)) in engines.iter().enumerate() {
        let base = fps.first().copied().unwrap_or(1.0);
        println!(
            "{:<16} {:>10.1} {:>10.3} {:>15.2}x {:>9}/{}",
            name,
            fps[i],
            1e3 / fps[i],
            fps[i] / base,
            agree[i],
            dataset.len()
        );
    }
    Ok(())
}

fn pass(engine: &mut Engine, dataset: &Dataset) -> Result<Vec<usize>> {
    let mut classes = Vec::with_capacity(dataset.len());
    for sample in &dataset.samples {
        classes.push(engine(sample)?);
    }
    Ok(classes)
}

fn top1(scores: &[f32]) -> Result<usize> {
    scores
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_nan())
        .fold(None, |best: Option<(usize, f32)>, (i, &s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        })
        .map(|(i, _)| i)
        .context("the model output is empty")
}
