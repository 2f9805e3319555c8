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
mod stream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cbam_core::Model;
use cbam_link::{DeviceError, Request, PROTOCOL_VERSION};
use clap::Args;
use probe_rs::probe::list::Lister;
use probe_rs::probe::DebugProbeInfo;

use super::{accuracy, agreement, predict, prepare, Engine, EvalArgs, Prepared, Subject};
use crate::firmware_build::{self, Purpose};
use crate::flash::boards::{self, Board, ModelPlacement};
use crate::model_file::ModelKind;
use link::{Answer, DeviceIdentity, Exchange, Link, Transport};
use report::{DeviceRam, DeviceReport, Firmware, LinkReport, Reference, Spread};

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
    /// With --device: seconds the device may stay silent (an inference included) before
    /// the run stops
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        requires = "device"
    )]
    pub link_timeout: f64,
    /// Test hook: the fraction of link transfers damaged, cut, dropped or doubled on
    /// purpose, in both directions
    #[arg(
        long,
        hide = true,
        default_value_t = 0.0,
        value_name = "P",
        requires = "device"
    )]
    pub link_fault_rate: f64,
    /// Test hook: after this many requests the link carries nothing more either way
    #[arg(long, hide = true, value_name = "N", requires = "device")]
    pub link_cut_after: Option<u64>,
}

impl DeviceArgs {
    fn check(&self, board: &Board) -> Result<()> {
        ensure!(
            self.link_timeout.is_finite() && self.link_timeout > 0.0,
            "--link-timeout must be a positive number of seconds, got {}",
            self.link_timeout
        );
        ensure!(
            (0.0..1.0).contains(&self.link_fault_rate),
            "--link-fault-rate must be in [0, 1), got {}",
            self.link_fault_rate
        );
        ensure!(
            self.probe.is_none() || !board.is_emulated(),
            "--probe chooses the debug probe of a real board; {} runs under QEMU here",
            board.name
        );
        Ok(())
    }

    /// The transport with the test hooks in between, when any is asked for.
    fn hooked(&self, transport: Box<dyn Transport>, notes: &mut Vec<String>) -> Box<dyn Transport> {
        let faults = faults::Faults {
            rate: self.link_fault_rate,
            cut_after: self.link_cut_after,
        };
        if faults.rate == 0.0 && faults.cut_after.is_none() {
            return transport;
        }
        notes.push(format!(
            "test hook: the link was damaged on purpose ({faults})"
        ));
        Box::new(faults::Faulty::new(transport, faults, 0x5EED))
    }
}

pub fn run(
    args: &EvalArgs,
    board_name: &str,
    subject: &Subject,
    reference: Option<&Subject>,
) -> Result<()> {
    let opts = &args.device;
    ensure!(
        subject.kind == ModelKind::Blob,
        "--device runs a .cbam blob, the int8 model the firmware executes; make one from {} \
         with `cbam quantize`",
        subject.path.display()
    );
    let boards = boards::builtin()?;
    let board = boards::by_name(&boards, board_name)?.clone();
    opts.check(&board)?;
    let Prepared {
        engine,
        reference_engine,
        dataset,
        mut notes,
        ..
    } = prepare(args, subject, reference)?;
    let Engine::Core(model) = engine else {
        bail!("internal error: a .cbam blob opened as an ONNX model");
    };
    check_region(&board, &subject.path, subject.bytes.len())?;
    // Before the firmware build, which takes minutes the first time.
    let probe = match board.is_emulated() {
        true => None,
        false => Some(crate::flash::probe::select(
            &Lister::new(),
            opts.probe.as_deref(),
        )?),
    };

    let elf_path = firmware(opts, &board, &subject.path)?;
    let elf = std::fs::read(&elf_path)
        .with_context(|| format!("cannot read the firmware {}", elf_path.display()))?;
    let (transport, description) = open_transport(&board, probe, &elf_path, &elf, subject)?;
    let transport = opts.hooked(transport, &mut notes);
    let table = log::table(&elf);
    let silence = Duration::from_secs_f64(opts.link_timeout);
    let mut link = Link::new(transport, log::DeviceLog::new(table.as_ref()), silence);

    let identity = hello(&mut link, &board, &model, &subject.path)?;
    let streamed = stream::stream(&mut link, &model, &dataset, &board.name)?;
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
        ram: DeviceRam {
            needed: identity.needed,
            capacity: identity.capacity,
        },
        link: LinkReport::new(description, &stats),
        notes,
    };
    if let (Some(r), Some(engine)) = (reference, &reference_engine) {
        let (reference_predictions, _) = predict(
            r,
            engine,
            &dataset,
            crate::parallel::ThreadPlan::new(args.threads, args.split_layers),
        )?;
        report.agreement = Some(agreement(
            &predictions.classes,
            &reference_predictions.classes,
        ));
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
    ensure!(
        report.host_mismatches == 0,
        "{} of {} outputs from {} differ from the host core's: the firmware does not compute \
         what the host does",
        report.host_mismatches,
        report.n,
        board.name
    );
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

/// `--firmware`, or the evaluation firmware built for the board (the model linked in
/// where the board has no model region).
fn firmware(opts: &DeviceArgs, board: &Board, model: &Path) -> Result<PathBuf> {
    if let Some(path) = &opts.firmware {
        return Ok(path.clone());
    }
    let embedded = board.model_placement == ModelPlacement::Embedded;
    firmware_build::build(board, Purpose::Eval, embedded.then_some(model))
}

/// QEMU for emulated boards, the debug probe for real ones; and how to describe it.
fn open_transport(
    board: &Board,
    probe: Option<DebugProbeInfo>,
    elf_path: &Path,
    elf: &[u8],
    subject: &Subject,
) -> Result<(Box<dyn Transport>, String)> {
    let Some(probe) = probe else {
        let model = match (board.model_placement, board.model_origin) {
            (ModelPlacement::Region, Some(origin)) => Some((origin, subject.path.as_path())),
            _ => None,
        };
        let qemu = qemu::Qemu::launch(board, elf_path, model)?;
        let what = format!("QEMU {}, semihosting", board.qemu_machine);
        return Ok((Box::new(qemu), what));
    };
    let what = format!("{} over RTT ({probe})", board.chip);
    let probe = probe::Probe::open(board, probe, elf, &subject.bytes)?;
    Ok((Box::new(probe), what))
}

/// Says hello and checks that the device runs this model, on this board, and can.
fn hello(
    link: &mut Link<'_>,
    board: &Board,
    model: &Model<'_>,
    path: &Path,
) -> Result<DeviceIdentity> {
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
        bail!(
            "{} cannot evaluate {}: {e}. {}{}",
            board.name,
            path.display(),
            remedy(e),
            link.log.tail()
        );
    }
    ensure!(
        id.model_crc == model.crc(),
        "{} runs the model with CRC {:#010x}, not {} ({:#010x}); {}",
        board.name,
        id.model_crc,
        path.display(),
        model.crc(),
        match board.model_placement {
            ModelPlacement::Region =>
                "drop --firmware, or write this model into its model \
                                       region with `cbam flash --model-only`",
            ModelPlacement::Embedded => "drop --firmware to build the firmware with this model",
        }
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
