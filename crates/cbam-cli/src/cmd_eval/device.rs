//! `cbam eval --device BOARD`: the test set through the evaluation firmware on the board,
//! one input at a time over the debug link, every output compared byte for byte with the
//! host core's on the same input, the latency measured on the device.
//!
//! QEMU boards are started here (the firmware built on first use), real boards flashed
//! and attached through probe-rs. The protocol is `cbam-link`, the same crate the
//! firmware runs.

mod faults;
mod link;
mod log;
mod probe;
mod qemu;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cbam_compiler::data::{self, Dataset};
use cbam_core::le::{as_i8, as_u8};
use cbam_core::Model;
use cbam_link::{DeviceError, Request, MAX_CHUNK, PROTOCOL_VERSION};
use clap::Args;

use super::{accuracy, agreement, predict, prepare, Engine, EvalArgs, Predictions, Prepared, Subject};
use crate::firmware_build::{self, Purpose};
use crate::flash::boards::{self, Board, ModelPlacement};
use crate::model_file::ModelKind;
use crate::progress;
use link::{Answer, DeviceIdentity, Exchange, Link, Transport};
use report::{DeviceReport, Firmware, LinkReport, Reference, Spread};

/// Images listed by index in the report when outputs differ.
const LISTED_MISMATCHES: usize = 20;

#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Evaluate on a board from firmware/boards.toml through its firmware and debug link
    /// (QEMU boards run here; real boards are flashed through a debug probe)
    #[arg(long, value_name = "BOARD")]
    pub device: Option<String>,
    /// With --device: run this evaluation firmware ELF instead of building it
    #[arg(long, value_name = "ELF", requires = "device")]
    pub firmware: Option<PathBuf>,
    /// With --device on a real board: the debug probe, as VID:PID[:SERIAL]
    #[arg(long, value_name = "SELECTOR", requires = "device")]
    pub probe: Option<String>,
    /// With --device: seconds the device may stay silent before the run stops
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub link_timeout: f64,
    /// Test hook: the fraction of link transfers damaged, cut, dropped or doubled on
    /// purpose, in both directions
    #[arg(long, hide = true, default_value_t = 0.0, value_name = "P")]
    pub link_fault_rate: f64,
}

pub fn run(
    args: &EvalArgs,
    board_name: &str,
    subject: &Subject,
    reference: Option<&Subject>,
) -> Result<()> {
    let opts = &args.device;
    ensure!(
        opts.link_timeout.is_finite() && opts.link_timeout > 0.0,
        "--link-timeout must be a positive number of seconds, got {}",
        opts.link_timeout
    );
    ensure!(
        (0.0..1.0).contains(&opts.link_fault_rate),
        "--link-fault-rate must be in [0, 1), got {}",
        opts.link_fault_rate
    );
    ensure!(
        subject.kind == ModelKind::Blob,
        "--device runs a .cbam blob, the int8 model the firmware executes; make one from {} \
         with `cbam quantize`",
        subject.path.display()
    );
    let boards = boards::builtin()?;
    let board = boards::by_name(&boards, board_name)?.clone();
    let Prepared {
        engine,
        reference_engine,
        dataset,
        mut notes,
    } = prepare(args, subject, reference)?;
    let Engine::Core(model) = engine else {
        bail!("internal error: a .cbam blob opened as an ONNX model");
    };
    check_region(&board, &subject.path, subject.bytes.len())?;

    let elf_path = match &opts.firmware {
        Some(path) => path.clone(),
        None => {
            let embedded = board.model_placement == ModelPlacement::Embedded;
            firmware_build::build(&board, Purpose::Eval, embedded.then_some(&*subject.path))?
        }
    };
    let elf = std::fs::read(&elf_path)
        .with_context(|| format!("cannot read the firmware {}", elf_path.display()))?;
    let (transport, description) = open_transport(args, &board, &elf_path, &elf, subject)?;
    let transport: Box<dyn Transport> = if opts.link_fault_rate > 0.0 {
        notes.push(format!(
            "test hook: {:.0}% of link transfers were damaged on purpose",
            opts.link_fault_rate * 100.0
        ));
        Box::new(faults::Faulty::new(transport, opts.link_fault_rate, 0x5EED))
    } else {
        transport
    };
    let silence = Duration::from_secs_f64(opts.link_timeout);
    let table = log::table(&elf);
    let mut link = Link::new(transport, log::DeviceLog::new(table.as_ref()), silence);

    let identity = hello(&mut link, &board, &model, &subject.path)?;
    let streamed = stream(&mut link, &model, &dataset, &board.name)?;
    let stats = link.stats();
    drop(link);

    let predictions = &streamed.predictions;
    let unit = identity.unit.label();
    let mut report = DeviceReport {
        data: args.data.display().to_string(),
        model: subject.path.display().to_string(),
        board: board.name.clone(),
        firmware: Firmware {
            build: identity.build.clone(),
            elf: elf_path.display().to_string(),
        },
        n: dataset.len(),
        accuracy: accuracy(&predictions.classes, &dataset),
        ties: predictions.ties,
        host_mismatches: streamed.mismatches.len(),
        mismatched_images: streamed
            .mismatches
            .iter()
            .take(LISTED_MISMATCHES)
            .copied()
            .collect(),
        agreement: None,
        reference: None,
        latency: Spread::of(&streamed.model_counts, unit),
        images_per_second: dataset.len() as f64 / streamed.seconds.max(1e-9),
        link_overhead: Spread::of(streamed.link_counts.get(1..).unwrap_or_default(), unit),
        link: LinkReport {
            transport: description,
            requests: stats.requests,
            resent: stats.resent,
            damaged_frames: stats.corrupt,
            naks: stats.naks,
            timeouts: stats.timeouts,
        },
        notes,
    };
    if let (Some(r), Some(engine)) = (reference, &reference_engine) {
        let (reference_predictions, _) = predict(r, engine, &dataset)?;
        report.agreement = Some(agreement(&predictions.classes, &reference_predictions.classes));
        report.reference = Some(Reference {
            model: r.path.display().to_string(),
            accuracy: accuracy(&reference_predictions.classes, &dataset),
        });
    }
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out!("{}", report.render())?;
    }
    if report.host_mismatches > 0 {
        bail!(
            "{} of {} outputs from {} differ from the host core's: the firmware does not \
             compute what the host does",
            report.host_mismatches,
            report.n,
            board.name
        );
    }
    Ok(())
}

/// A blob bound for a model region must fit it.
fn check_region(board: &Board, path: &Path, len: usize) -> Result<()> {
    if let (ModelPlacement::Region, Some(size)) = (board.model_placement, board.model_size) {
        ensure!(
            len as u64 <= size,
            "{} has {len} bytes; the model region of {} holds {size}. Make the model smaller \
             with `cbam prune`",
            path.display(),
            board.name
        );
    }
    Ok(())
}

/// QEMU for emulated boards, the debug probe for real ones; and how to describe it.
fn open_transport(
    args: &EvalArgs,
    board: &Board,
    elf_path: &Path,
    elf: &[u8],
    subject: &Subject,
) -> Result<(Box<dyn Transport>, String)> {
    if board.is_emulated() {
        let model = match (board.model_placement, board.model_origin) {
            (ModelPlacement::Region, Some(origin)) => Some((origin, subject.path.as_path())),
            _ => None,
        };
        let qemu = qemu::Qemu::launch(board, elf_path, model)?;
        let what = format!("QEMU {}, semihosting", board.qemu_machine);
        return Ok((Box::new(qemu), what));
    }
    let probe = probe::Probe::open(board, elf, &subject.bytes, args.device.probe.as_deref())?;
    Ok((Box::new(probe), format!("{} over RTT (probe-rs)", board.chip)))
}

/// Says hello and checks that the device runs this model, on this board, and can.
fn hello(link: &mut Link<'_>, board: &Board, model: &Model<'_>, path: &Path) -> Result<DeviceIdentity> {
    let id = match link.call(&Request::Hello, Exchange::Hello)? {
        Answer::Identity(id) => id,
        other => bail!("the device answered hello with {other:?}"),
    };
    ensure!(
        id.version == PROTOCOL_VERSION,
        "the firmware speaks link protocol {} and this cbam {PROTOCOL_VERSION}: rebuild the \
         firmware from this checkout (or drop --firmware)",
        id.version
    );
    ensure!(
        id.board == board.name,
        "the firmware answering was built for board {}, not {}",
        id.board,
        board.name
    );
    if let Err(e) = id.status {
        bail!("{} cannot evaluate {}: {e}. {}{}", board.name, path.display(), remedy(e), link.log.tail());
    }
    ensure!(
        id.model_crc == model.crc(),
        "{} runs the model with CRC {:#010x}, not {} ({:#010x}); write this one into its model \
         region with `cbam flash --model-only`",
        board.name,
        id.model_crc,
        path.display(),
        model.crc()
    );
    ensure!(
        (id.input_len, id.output_len) == (model.input().len(), model.output().len()),
        "the device's model takes {} and gives {} bytes, the host's {} and {}",
        id.input_len,
        id.output_len,
        model.input().len(),
        model.output().len()
    );
    Ok(id)
}

fn remedy(e: DeviceError) -> &'static str {
    match e {
        DeviceError::BufferTooSmall { .. } => {
            "Make the model smaller with `cbam prune`, or pick a board with more RAM"
        }
        DeviceError::NoModel => {
            "The firmware found no valid blob where it reads its model; its log says why"
        }
        DeviceError::OutputTooLarge { .. } => "cbam eval --device supports classifier outputs",
        _ => "",
    }
}

/// Per-image results of the stream.
struct Streamed {
    predictions: Predictions,
    model_counts: Vec<u64>,
    link_counts: Vec<u64>,
    mismatches: Vec<usize>,
    seconds: f64,
}

/// Sends every sample's int8 input, takes the device's output and compares it with the
/// host core's on the same bytes.
fn stream(link: &mut Link<'_>, model: &Model<'_>, dataset: &Dataset, board: &str) -> Result<Streamed> {
    let input = model.input();
    let raw = model.input_is_raw_pixels();
    let mut arena = vec![0u8; model.arena_size()];
    let mut host = vec![0i8; model.output().len()];
    let mut out = Streamed {
        predictions: Predictions::default(),
        model_counts: Vec::with_capacity(dataset.len()),
        link_counts: Vec::with_capacity(dataset.len()),
        mismatches: Vec::new(),
        seconds: 0.0,
    };
    let bar = progress::bar(dataset.len(), board);
    link.log.show_above(&bar);
    let start = Instant::now();
    for (i, sample) in dataset.samples.iter().enumerate() {
        let q = data::core_input_for(sample, &input, raw)
            .with_context(|| format!("sample {i} does not fit the blob's input"))?;
        let (model_count, link_count, device) =
            infer(link, as_u8(&q)).with_context(|| format!("image {i} on {board}"))?;
        model
            .run(&mut arena, &q, &mut host)
            .map_err(|e| anyhow::anyhow!("the host core failed on sample {i}: {e}"))?;
        if device != as_u8(&host) {
            out.mismatches.push(i);
        }
        out.predictions
            .push(as_i8(&device))
            .context("the model has an empty output")?;
        out.model_counts.push(model_count);
        out.link_counts.push(link_count);
        bar.inc(1);
    }
    out.seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(out)
}

/// One input through the device: its chunks, then the output and the two counts.
fn infer(link: &mut Link<'_>, input: &[u8]) -> Result<(u64, u64, Vec<u8>)> {
    let mut offset = 0;
    for chunk in input.chunks(MAX_CHUNK) {
        let end = offset + chunk.len();
        let last = end == input.len();
        let request = Request::Input {
            offset: offset as u32,
            data: chunk,
        };
        let kind = if last {
            Exchange::Inference
        } else {
            Exchange::Chunk
        };
        match link.call(&request, kind)? {
            Answer::Ack { received } if !last && received as usize == end => {}
            Answer::Output {
                model_count,
                link_count,
                data,
            } if last => return Ok((model_count, link_count, data)),
            Answer::Failed(e) => bail!("the device refused the input: {e}{}", link.log.tail()),
            other => bail!("the device answered an input chunk with {other:?}"),
        }
        offset = end;
    }
    bail!("an empty input tensor: nothing to send")
}
