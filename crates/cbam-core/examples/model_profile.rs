//! Where a model's inference time goes: runs a `.cbam` blob on fixed pseudo-random input
//! and prints the wall time of every op (median over the runs), its MACs and MAC rate.
//!
//! Usage: `model_profile MODEL.cbam [RUNS [WARMUP]]` (default 200 runs after 20 warm-up
//! runs; instruction counters such as callgrind or a QEMU log take `RUNS` and `RUNS + k`
//! with no warm-up and divide the difference by `k`).
//! Build with `--release`: the numbers of a debug build say nothing.

use cbam_core::{Model, Observer, OpCode};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Records every op's duration of one run.
struct OpTimer {
    started: Instant,
    /// `times[op][run]`.
    times: Vec<Vec<Duration>>,
}

impl Observer for OpTimer {
    fn op_start(&mut self, _index: usize, _code: OpCode) {
        self.started = Instant::now();
    }

    fn op_end(&mut self, index: usize, _code: OpCode, _output: &[i8]) {
        let took = self.started.elapsed();
        if let Some(runs) = self.times.get_mut(index) {
            runs.push(took);
        }
    }
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn profile(path: &str, runs: usize, warmup: usize) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let model = Model::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
    // Packed once, as the CLI does: the profile is of the steady state.
    let mut packing = vec![0i32; model.packed_weights_len().map_err(|e| e.to_string())?];
    model
        .pack_weights(&mut packing)
        .map_err(|e| e.to_string())?;
    let model = model
        .with_packed_weights(&packing)
        .map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = vec![0i8; model.output().len()];
    let mut seed = 0x9E37_79B9u32;
    let input: Vec<i8> = (0..model.input().len())
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 24) as i8
        })
        .collect();
    let mut timer = OpTimer {
        started: Instant::now(),
        times: vec![Vec::with_capacity(runs); model.n_ops()],
    };
    for _ in 0..warmup {
        model
            .run(&mut arena, &input, &mut out)
            .map_err(|e| e.to_string())?;
    }
    let mut whole = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        model
            .run_observed(&mut arena, &input, &mut out, &mut timer)
            .map_err(|e| e.to_string())?;
        whole.push(start.elapsed());
    }
    let total = median(&mut whole);
    // A reader that stops early (`| head`) is not an error.
    match report(&model, path, runs, total, &mut timer) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.map_err(|e| format!("writing the table: {e}")),
    }
}

fn report(
    model: &Model,
    path: &str,
    runs: usize,
    total: Duration,
    timer: &mut OpTimer,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{path}: median {:.1} us per inference over {runs} runs",
        micros(total)
    )?;
    writeln!(
        out,
        "{:>3} {:<16} {:>14} {:>10} {:>9} {:>6} {:>10}",
        "op", "code", "output hwc", "MACs", "us", "share", "GMAC/s"
    )?;
    for (index, runs) in timer.times.iter_mut().enumerate() {
        let Some(info) = model.op(index) else {
            continue;
        };
        let t = median(runs);
        let (h, w, c) = info.output;
        writeln!(
            out,
            "{:>3} {:<16} {:>14} {:>10} {:>9.1} {:>5.1}% {:>10.2}",
            index,
            format!("{:?}", info.code),
            format!("{h}x{w}x{c}"),
            info.macs,
            micros(t),
            100.0 * t.as_secs_f64() / total.as_secs_f64().max(1e-12),
            info.macs as f64 / t.as_secs_f64().max(1e-12) / 1e9,
        )?;
    }
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runs = match args.get(2).map(|n| n.parse::<usize>()) {
        None => Ok(200),
        Some(Ok(n)) if n > 0 => Ok(n),
        Some(_) => Err(()),
    };
    let warmup = match args.get(3).map(|n| n.parse::<usize>()) {
        None => Ok(20),
        Some(Ok(n)) => Ok(n),
        Some(_) => Err(()),
    };
    match (args.get(1), runs, warmup) {
        (Some(path), Ok(runs), Ok(warmup)) => match profile(path, runs, warmup) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("model_profile: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: model_profile MODEL.cbam [RUNS > 0 [WARMUP]]");
            ExitCode::from(2)
        }
    }
}
