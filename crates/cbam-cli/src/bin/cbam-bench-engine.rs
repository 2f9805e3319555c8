//! `cbam-bench-engine`: the Rust side of `tools/bench_runtimes.py`. Loads one model (a
//! `.cbam` blob for the int8 core, an `.onnx` for tract float) and the benchmark's inputs,
//! then times passes over them on request, so the Python driver can alternate rounds between
//! this process and the runtimes it hosts itself (onnxruntime, LiteRT) on the same images.
//!
//! Requests, one per line on stdin; one JSON line answers each on stdout:
//! - `latency`: every input once, batch 1, one after the other on one thread:
//!   `{"ms": [per-input milliseconds], "top1": [class per input]}`; `latency T` splits
//!   each input's layers over T threads (the core only, as `cbam run --split-layers`);
//! - `stream T`: every input once over T worker threads (frames in parallel, each worker
//!   with its own arena), results in input order: `{"seconds": wall time, "frames": N}`;
//! - `quit` (or end of input) ends the process.
//!
//! Only inference is timed: inputs are quantized (core) or copied into tensors (tract)
//! before the clock starts, as in `cbam-bench`.

#[path = "../packed_weights.rs"]
mod packed_weights;
// The CLI's own worker pool; this binary uses only `map_ordered` of it.
#[path = "../parallel.rs"]
#[allow(dead_code)]
mod parallel;
// The CLI's layer splitting, as `cbam run --split-layers` uses it.
#[path = "../layer_threads.rs"]
mod layer_threads;
#[path = "../spin_pool.rs"]
mod spin_pool;

use layer_threads::LayerThreads;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use cbam_compiler::data::{self, DataSource, InputSpec};
use cbam_compiler::float_run::FloatModel;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "cbam-bench-engine",
    about = "Times the int8 core (.cbam) or tract (.onnx) on request, for tools/bench_runtimes.py",
    after_help = "\
Example:
  printf 'latency\\nstream 2\\n' | cbam-bench-engine m.cbam --inputs x.npy

INPUTS is a float32 .npy [N,C,H,W], already normalised as the model expects."
)]
struct Args {
    /// A .cbam blob (int8 core) or a float .onnx (tract)
    #[arg(value_name = "MODEL")]
    model: PathBuf,
    /// The inputs, float32 NCHW .npy
    #[arg(long, value_name = "X.npy")]
    inputs: PathBuf,
}

/// One engine over the prepared inputs: `run(worker_state, i)` gives input `i`'s top-1 class.
trait Engine: Sync {
    type Worker;
    /// State for one worker whose inferences each run on `layer_threads` threads.
    fn worker(&self, layer_threads: usize) -> Result<Self::Worker>;
    fn run(&self, worker: &mut Self::Worker, i: usize) -> Result<usize>;
    fn len(&self) -> usize;
}

struct Core<'b> {
    model: cbam_core::Model<'b>,
    inputs: Vec<Vec<i8>>,
}

impl Engine for Core<'_> {
    /// The arena, output and layer threads of one worker.
    type Worker = (Vec<u8>, Vec<i8>, LayerThreads);

    fn worker(&self, layer_threads: usize) -> Result<Self::Worker> {
        Ok((
            vec![0u8; self.model.arena_size()],
            vec![0i8; self.model.output().len()],
            LayerThreads::new(layer_threads)?,
        ))
    }

    fn run(&self, (arena, out, layers): &mut Self::Worker, i: usize) -> Result<usize> {
        let input = self.inputs.get(i).context("input index out of range")?;
        layers
            .run(&self.model, arena, input, out)
            .map_err(|e| anyhow::anyhow!("the core failed on input {i}: {e}"))?;
        cbam_core::argmax(out).context("empty output")
    }

    fn len(&self) -> usize {
        self.inputs.len()
    }
}

struct Tract {
    model: FloatModel,
    inputs: Vec<Vec<f32>>,
}

impl Engine for Tract {
    type Worker = ();

    fn worker(&self, layer_threads: usize) -> Result<()> {
        ensure!(
            layer_threads <= 1,
            "tract runs each input on one thread; ask `latency` without a thread count"
        );
        Ok(())
    }

    fn run(&self, _: &mut (), i: usize) -> Result<usize> {
        let input = self.inputs.get(i).context("input index out of range")?;
        let scores = self.model.run(input)?;
        cbam_core::argmax(&scores).context("empty output")
    }

    fn len(&self) -> usize {
        self.inputs.len()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    if bytes.starts_with(&cbam_core::MAGIC) {
        let model = cbam_core::Model::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.model.display()))?;
        let packing = OnceLock::new();
        let model = packed_weights::with_packed_weights(&args.model, model, &packing)?;
        let info = model.input();
        let dataset = load(&args, [info.c, info.h, info.w])?;
        let inputs = dataset
            .samples
            .iter()
            .map(|s| data::core_input_for(s, &info, false))
            .collect::<Result<Vec<_>, _>>()?;
        serve(&Core { model, inputs }, "int8-core")
    } else {
        let model = FloatModel::load(&args.model)?;
        let shape = model_chw(&model)?;
        let dataset = load(&args, shape)?;
        let inputs = dataset.samples.into_iter().map(|s| s.input).collect();
        serve(&Tract { model, inputs }, "tract")
    }
}

fn model_chw(model: &FloatModel) -> Result<[usize; 3]> {
    match model.input_shape() {
        [1, c, h, w] => Ok([*c, *h, *w]),
        other => bail!("expected a [1,C,H,W] model input, found {other:?}"),
    }
}

fn load(args: &Args, chw: [usize; 3]) -> Result<data::Dataset> {
    let spec = InputSpec::new(chw, &[], &[])?;
    let source = DataSource {
        data: args.inputs.clone(),
        labels: None,
        limit: None,
    };
    let dataset = data::load(&source, &spec)
        .with_context(|| format!("cannot load {}", args.inputs.display()))?;
    ensure!(
        !dataset.is_empty(),
        "{} holds no inputs",
        args.inputs.display()
    );
    Ok(dataset)
}

fn serve<E: Engine>(engine: &E, name: &str) -> Result<()> {
    // One worker per layer-thread count for the whole run, as the Python side keeps one
    // onnxruntime session or LiteRT interpreter per thread count: a pool's threads are
    // started once, not per request.
    let mut workers: std::collections::HashMap<usize, E::Worker> = Default::default();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::json!({"ready": true, "engine": name, "frames": engine.len()})
    )?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["latency"] => latency(engine, &mut workers, 1)?,
            ["latency", threads] => {
                let threads: usize = threads
                    .parse()
                    .with_context(|| format!("`latency {threads}`: not a thread count"))?;
                latency(engine, &mut workers, parallel::resolve_threads(threads))?
            }
            ["stream", threads] => {
                let threads: usize = threads
                    .parse()
                    .with_context(|| format!("`stream {threads}`: not a thread count"))?;
                stream(engine, parallel::resolve_threads(threads))?
            }
            ["quit"] | [] => break,
            _ => bail!("unknown request `{line}`; expected `latency [T]`, `stream T` or `quit`"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

fn latency<E: Engine>(
    engine: &E,
    workers: &mut std::collections::HashMap<usize, E::Worker>,
    layer_threads: usize,
) -> Result<serde_json::Value> {
    let worker = match workers.entry(layer_threads) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(engine.worker(layer_threads)?),
    };
    let mut ms = Vec::with_capacity(engine.len());
    let mut top1 = Vec::with_capacity(engine.len());
    for i in 0..engine.len() {
        let start = Instant::now();
        top1.push(engine.run(worker, i)?);
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(serde_json::json!({"ms": ms, "top1": top1}))
}

fn stream<E: Engine>(engine: &E, threads: usize) -> Result<serde_json::Value> {
    let start = Instant::now();
    let classes = parallel::map_ordered(
        engine.len(),
        threads,
        || engine.worker(1),
        |w, i| engine.run(w, i),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({"seconds": seconds, "frames": classes.len(), "threads": threads}))
}
