//! `cbam flash`: check that a model fits a chip, then write firmware and model through a
//! debug probe (probe-rs), verify, reset and stream the device's defmt log.
//!
//! The fit check runs before any hardware is touched: chip memory from probe-rs's target
//! registry, board addresses and the model region from `firmware/boards.toml`, firmware
//! sizes from its ELF, and the arena from the blob header.

mod blob;
pub(crate) mod boards;
mod budget;
mod chip;
mod error;
mod image;
mod plan;
pub(crate) mod probe;
pub(crate) mod rtt_log;
pub(crate) mod session;

use std::path::{Path, PathBuf};

use clap::Args;

use boards::{Board, ModelPlacement};
use budget::{total, Budget, Demand, FirmwareSizes};
use chip::ChipMap;
pub use error::FlashError;
use image::{FirmwareImage, Layout};
use plan::{ModelSlot, Plan};

/// Stack reserved beside the arena unless `--stack` says otherwise.
const DEFAULT_STACK: u64 = 16 * 1024;

#[derive(Debug, Clone, Args)]
#[command(
    about = "Check that a model fits a chip, then flash firmware and model through a debug probe",
    after_help = "\
Examples:
  # Build the board's firmware, then the fit check with its real code size (no probe)
  cbam flash --board nucleo-f411re --model models/fmnist_cbam.cbam --dry-run
  # Build, flash firmware + model, verify, run and stream the defmt log
  cbam flash --board nucleo-f411re --model models/fmnist_cbam.cbam
  # The boards (firmware/boards.toml, or your own file with --boards)
  cbam flash --list-boards
  # Flash firmware + model, verify, run and stream the defmt log
  cbam flash --chip STM32F411RETx --model models/example.cbam \\
      --firmware firmware/cortex-m/target/thumbv7em-none-eabihf/release/cbam-firmware
  # Replace only the model in the board's model region (firmware stays)
  cbam flash --board nrf52840dk --model pruned.cbam --model-only
  # ESP32-C3 through its built-in USB-JTAG (model linked into the firmware)
  cbam flash --chip esp32c3 --model models/example.cbam --firmware ESP_ELF

Boards (firmware/boards.toml) give the model region and RAM window, and the firmware crate,
feature and target: without --firmware, cbam builds that firmware with cargo from the
repository's firmware/ sources (found from the current directory, or CBAM_FIRMWARE_DIR) into
the crate's own target/ directory, so `cargo build` there and firmware/test.sh share it. A chip
without a board gets its whole flash and largest RAM region from probe-rs, with the model
embedded, and needs --firmware."
)]
pub struct FlashArgs {
    /// probe-rs chip name, e.g. STM32F411RETx, nRF52840_xxAA, RP2040, esp32c3 [default: the board's]
    #[arg(long)]
    pub chip: Option<String>,
    /// The .cbam model blob (from `cbam quantize`)
    #[arg(long, value_name = "M.cbam", required_unless_present = "list_boards")]
    pub model: Option<PathBuf>,
    /// Board from firmware/boards.toml (or --boards) [default: the board built around --chip]
    #[arg(long)]
    pub board: Option<String>,
    /// Firmware ELF to flash; also sizes code and static RAM and decodes the defmt log
    /// [default: the board's firmware, built from the repository's firmware/ sources]
    #[arg(long, value_name = "ELF")]
    pub firmware: Option<PathBuf>,
    /// Do not build the board's firmware: the fit check counts model, arena and stack only
    #[arg(long, conflicts_with = "firmware")]
    pub no_build: bool,
    /// Board table to use instead of the built-in firmware/boards.toml (same format)
    #[arg(long, value_name = "FILE")]
    pub boards: Option<PathBuf>,
    /// Print the boards (name, chip, target, firmware crate and feature, memory) and exit
    #[arg(long)]
    pub list_boards: bool,
    /// Write only the model region; the firmware on the chip stays
    #[arg(long)]
    pub model_only: bool,
    /// Stop after the fit check (exit 0 when it fits)
    #[arg(long)]
    pub dry_run: bool,
    /// Debug probe as VID:PID or VID:PID:SERIAL (hex) when several are attached
    #[arg(long, value_name = "SELECTOR")]
    pub probe: Option<String>,
    /// Do not stream the device log after flashing
    #[arg(long)]
    pub no_log: bool,
    /// Stack bytes to reserve in RAM beside the arena and static data
    #[arg(long, default_value_t = DEFAULT_STACK, value_name = "BYTES")]
    pub stack: u64,
}

pub fn run(args: &FlashArgs) -> anyhow::Result<()> {
    let boards = match &args.boards {
        Some(path) => boards::from_file(path)?,
        None => boards::builtin()?,
    };
    if args.list_boards {
        crate::out!("{}", boards::render(&boards))?;
        return Ok(());
    }
    let model = args
        .model
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--model M.cbam is required"))?;
    let (board, _) = resolve_target(&boards, args.board.as_deref(), args.chip.as_deref())?;
    let firmware = match (&args.firmware, board) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(board)) if wants_build(args, board) => {
            if args.boards.is_some() {
                same_as_firmware_table(board)?;
            }
            Some(build_firmware(board, model)?)
        }
        (None, _) => None,
    };
    let checked = fit_check(args, model, firmware.as_deref(), &boards)?;
    if args.dry_run {
        crate::outln!("fits; --dry-run: nothing was flashed")?;
        return Ok(());
    }
    flash(args, model, checked)?;
    Ok(())
}

/// Whether flashing or the dry run needs the board's firmware built here.
fn wants_build(args: &FlashArgs, board: &Board) -> bool {
    // A QEMU board is only fit-checked (flashing it is refused); --model-only keeps the
    // firmware on the chip.
    !args.no_build && !args.model_only && (args.dry_run || !board.is_emulated())
}

/// A board from a user's table can only be built if the firmware links it the same way:
/// the firmware's linker script comes from `firmware/boards.toml`, row by cargo feature.
fn same_as_firmware_table(board: &Board) -> anyhow::Result<()> {
    let root = crate::firmware_build::firmware_root()?;
    let table = boards::from_file(&root.join("boards.toml"))?;
    let Some(linked) = table.iter().find(|b| b.feature == board.feature) else {
        anyhow::bail!(
            "{}/boards.toml has no board with feature `{}`, so the firmware cannot be built \
             for {}: add the board there and to firmware/{} (README: \"Adding a board\"), or \
             pass --firmware ELF",
            root.display(),
            board.feature,
            board.name,
            board.firmware_dir
        );
    };
    let memory = |b: &Board| {
        (
            b.target.clone(),
            b.firmware_dir.clone(),
            b.flash_origin,
            b.flash_size,
            b.ram_origin,
            b.ram_size,
            b.model_placement,
            b.model_origin,
            b.model_size,
        )
    };
    anyhow::ensure!(
        memory(linked) == memory(board),
        "board {} of --boards differs from {} in {}/boards.toml (target, crate or memory \
         map), which the firmware is linked with: change that row (README: \"Adding a \
         board\"), or pass --firmware ELF",
        board.name,
        linked.name,
        root.display()
    );
    Ok(())
}

/// The board's application firmware, built with `model` as its linked-in blob (the model
/// region, where the board has one, is written with the same blob).
fn build_firmware(board: &Board, model: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let elf = crate::firmware_build::build(board, crate::firmware_build::Purpose::App, Some(model))
        .with_context(|| {
            format!(
                "cannot build the firmware for {}; pass --firmware ELF (one you built), or \
                 --no-build for a fit check of the model alone",
                board.name
            )
        })?;
    crate::errln!("firmware: {}", elf.display());
    Ok(elf)
}

/// Everything the fit check read, kept for flashing.
struct Checked<'b> {
    blob: Vec<u8>,
    board: Option<&'b Board>,
    chip: Option<ChipMap>,
    plan: Plan,
    firmware: Option<Vec<u8>>,
    /// Whether the firmware's linked-in model is this blob (`None`: it links none).
    embedded_matches: Option<bool>,
}

/// Reads blob, target and firmware, prints the budget table, and fails when it does not fit.
fn fit_check<'b>(
    args: &FlashArgs,
    model: &Path,
    firmware: Option<&Path>,
    boards: &'b [Board],
) -> Result<Checked<'b>, FlashError> {
    let blob = read(model)?;
    let blob_info = blob::inspect(model, &blob)?;
    let (board, chip) = resolve_target(boards, args.board.as_deref(), args.chip.as_deref())?;
    let plan = Plan::new(board, chip.as_ref())?;
    let (firmware, image) = match firmware {
        Some(path) => {
            let elf = read(path)?;
            let image = FirmwareImage::measure(&elf, &layout(&plan, chip.as_ref()))?;
            (Some(elf), Some(image))
        }
        None => (None, None),
    };
    let demand = Demand {
        blob_bytes: blob_info.len,
        arena_bytes: blob_info.arena,
        stack_bytes: args.stack,
        firmware: image.as_ref().map(sizes),
    };
    let mut budget = Budget::check(&plan, &demand);
    let embedded_matches = image
        .as_ref()
        .and_then(|i| i.embedded_model.as_deref())
        .map(|embedded| embedded == blob.as_slice());
    if embedded_matches == Some(false) {
        budget.notes.push(format!(
            "the firmware ELF embeds a different model than {}",
            model.display()
        ));
    }
    crate::out!("{}", budget.render()).map_err(FlashError::Output)?;
    budget.into_result(suggestion(boards, board, &demand))?;
    Ok(Checked {
        blob,
        board,
        chip,
        plan,
        firmware,
        embedded_matches,
    })
}

/// Refuses what cannot be flashed as asked, then programs through the one attached probe.
fn flash(args: &FlashArgs, model: &Path, checked: Checked) -> Result<(), FlashError> {
    let Checked {
        blob,
        board,
        chip,
        plan,
        firmware,
        embedded_matches,
    } = checked;
    let Some(chip) = chip else {
        let board = board.ok_or(FlashError::NoTarget)?;
        return Err(FlashError::EmulatedBoard {
            board: board.name.clone(),
            firmware_dir: board.firmware_dir.clone(),
        });
    };
    let model_address = match (&plan.model, args.model_only) {
        (ModelSlot::Region(r), _) => Some(r.start),
        (ModelSlot::Embedded, true) => {
            return Err(FlashError::NoModelRegion { target: plan.label })
        }
        (ModelSlot::Embedded, false) => None,
    };
    if !args.model_only {
        if firmware.is_none() {
            return Err(FlashError::NeedFirmware {
                firmware_dir: board.map_or("cortex-m", |b| b.firmware_dir.as_str()).into(),
            });
        }
        if model_address.is_none() && embedded_matches == Some(false) {
            return Err(FlashError::EmbeddedModelMismatch {
                path: model.to_path_buf(),
            });
        }
    }

    let probe = probe::select(&probe_rs::probe::list::Lister::new(), args.probe.as_deref())?;
    let elf = firmware.as_deref();
    session::flash_and_run(&session::Job {
        probe,
        chip: &chip.name,
        firmware: if args.model_only { None } else { elf },
        model: model_address.map(|a| (a, blob.as_slice())),
        log_elf: if args.no_log { None } else { elf },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, FlashError> {
    let cap = cbam_compiler::limits::MAX_MODEL_FILE_BYTES;
    cbam_compiler::fsio::read_regular(path, cap, "no blob or firmware is that large").map_err(
        |source| FlashError::Read {
            path: path.to_path_buf(),
            source,
        },
    )
}

/// The board and the chip's memory map from `--board` and/or `--chip`: either names the
/// other; given both, they must agree.
fn resolve_target<'b>(
    boards: &'b [Board],
    board: Option<&str>,
    chip: Option<&str>,
) -> Result<(Option<&'b Board>, Option<ChipMap>), FlashError> {
    let registry = chip::registry();
    match (board, chip) {
        (None, None) => Err(FlashError::NoTarget),
        (Some(name), chip_name) => {
            let board = boards::by_name(boards, name)?;
            let map = match (board.is_emulated(), chip_name) {
                (true, None) => None,
                (true, Some(c)) => {
                    return Err(FlashError::BoardChipMismatch {
                        board: board.name.clone(),
                        board_chip: "(none: emulated)".into(),
                        chip: c.to_string(),
                    })
                }
                (false, given) => {
                    let map = chip::memory_map(&registry, &board.chip)?;
                    if let Some(c) = given {
                        let wanted = chip::memory_map(&registry, c)?;
                        if wanted.name != map.name {
                            return Err(FlashError::BoardChipMismatch {
                                board: board.name.clone(),
                                board_chip: board.chip.clone(),
                                chip: c.to_string(),
                            });
                        }
                    }
                    Some(map)
                }
            };
            Ok((Some(board), map))
        }
        (None, Some(c)) => {
            let map = chip::memory_map(&registry, c)?;
            Ok((boards::by_chip(boards, &map.name), Some(map)))
        }
    }
}

/// Which ELF addresses are model region and which are RAM on this target.
fn layout(plan: &Plan, chip: Option<&ChipMap>) -> Layout {
    let mut ram = chip.map(|c| c.ram.clone()).unwrap_or_default();
    ram.push(plan.ram.clone());
    Layout {
        model_region: match &plan.model {
            ModelSlot::Region(r) => Some(r.clone()),
            ModelSlot::Embedded => None,
        },
        ram,
    }
}

fn sizes(image: &FirmwareImage) -> FirmwareSizes {
    FirmwareSizes {
        code_bytes: image.code_bytes,
        static_ram_bytes: image.static_ram_bytes,
        arena_buffer: image.arena_buffer,
    }
}

/// What to do about a model that does not fit, naming boards where it would.
fn suggestion(boards: &[Board], current: Option<&Board>, demand: &Demand) -> String {
    let mut text = String::from(
        "Make the model smaller with `cbam prune` (fewer channels: a smaller blob and arena) \
         and quantize it again",
    );
    if demand.firmware.is_some_and(|f| f.arena_buffer.is_some()) {
        text.push_str(", rebuild the firmware for this model (its arena buffer is fixed)");
    }
    text.push_str(", lower --stack if the firmware needs less");
    let roomier: Vec<String> = boards
        .iter()
        .filter(|b| !b.is_emulated() && current.is_none_or(|c| c.name != b.name))
        .filter(|b| board_holds(b, demand))
        .map(|b| format!("{} ({})", b.name, b.chip))
        .collect();
    if roomier.is_empty() {
        text.push('.');
    } else {
        text.push_str(&format!(", or use a bigger board: {}.", roomier.join(", ")));
    }
    text
}

/// Whether `board`'s table figures hold the model (firmware sizes as measured here).
fn board_holds(board: &Board, demand: &Demand) -> bool {
    let code = demand.firmware.map_or(0, |f| f.code_bytes);
    let static_ram = demand.firmware.map_or(0, |f| f.static_ram_bytes);
    let flash_ok = match (board.model_placement, board.model_origin, board.model_size) {
        (ModelPlacement::Region, Some(origin), Some(size)) => {
            demand.blob_bytes <= size && code <= origin.saturating_sub(board.flash_origin)
        }
        _ => total(&[code, demand.blob_bytes]) <= board.flash_size,
    };
    flash_ok && total(&[static_ram, demand.arena_bytes, demand.stack_bytes]) <= board.ram_size
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn demand(blob: u64, arena: u64) -> Demand {
        Demand {
            blob_bytes: blob,
            arena_bytes: arena,
            stack_bytes: DEFAULT_STACK,
            firmware: Some(FirmwareSizes {
                code_bytes: 32 * 1024,
                static_ram_bytes: 4 * 1024,
                arena_buffer: None,
            }),
        }
    }

    fn budget_for(board: &Board, d: &Demand) -> Budget {
        let boards = boards::builtin().unwrap();
        let (b, map) = resolve_target(&boards, Some(&board.name), None).unwrap();
        Budget::check(&Plan::new(b, map.as_ref()).unwrap(), d)
    }

    fn row<'b>(budget: &'b Budget, resource: &str) -> &'b budget::Row {
        budget
            .rows
            .iter()
            .find(|r| r.resource == resource)
            .unwrap_or_else(|| panic!("no row {resource} in\n{}", budget.render()))
    }

    #[test]
    fn every_board_fits_a_small_model_and_rejects_an_oversized_one() {
        for board in boards::builtin().unwrap() {
            let small = budget_for(&board, &demand(8 * 1024, 8 * 1024));
            assert!(small.fits(), "{}:\n{}", board.name, small.render());

            let model_room = match board.model_placement {
                ModelPlacement::Region => board.model_size.unwrap(),
                ModelPlacement::Embedded => board.flash_size,
            };
            let big = budget_for(&board, &demand(model_room + 1, board.ram_size + 1));
            assert!(!big.fits(), "{}:\n{}", board.name, big.render());
            let flash_row = match board.model_placement {
                ModelPlacement::Region => row(&big, "flash: model region"),
                ModelPlacement::Embedded => row(&big, "flash: firmware+model"),
            };
            assert!(!flash_row.fits(), "{}", board.name);
            assert!(!row(&big, "RAM").fits(), "{}", board.name);
        }
    }

    #[test]
    fn nucleo_f411re_numbers() {
        let boards = boards::builtin().unwrap();
        let board = boards::by_name(&boards, "nucleo-f411re").unwrap();
        let budget = budget_for(board, &demand(100_000, 60_000));
        let code = row(&budget, "flash: firmware");
        assert_eq!((code.used, code.available), (32_768, 256 * 1024));
        let model = row(&budget, "flash: model region");
        assert_eq!((model.used, model.available), (100_000, 256 * 1024));
        let ram = row(&budget, "RAM");
        assert_eq!(
            (ram.used, ram.available),
            (60_000 + 16_384 + 4_096, 128 * 1024)
        );
        assert!(budget.fits());
        // 111,000 + 16,384 stack + 4,096 static = 131,480 > 131,072 B of SRAM.
        assert!(!budget_for(board, &demand(100_000, 111_000)).fits());
        assert!(budget_for(board, &demand(100_000, 110_592)).fits());
    }

    #[test]
    fn esp32c3_embeds_the_model_and_uses_the_probe_rs_sram_window() {
        let boards = boards::builtin().unwrap();
        let board = boards::by_name(&boards, "esp32c3-devkit").unwrap();
        let budget = budget_for(board, &demand(1_000_000, 100_000));
        let flash = row(&budget, "flash: firmware+model");
        assert_eq!(
            (flash.used, flash.available),
            (32_768 + 1_000_000, 4 * 1024 * 1024)
        );
        // boards.toml says 400 KB of SRAM; the data bus window probe-rs maps is 384 KB.
        assert_eq!(row(&budget, "RAM").available, 384 * 1024);
        assert!(
            budget.notes.iter().any(|n| n.contains("RAM")),
            "{:?}",
            budget.notes
        );
    }

    #[test]
    fn a_chip_without_a_board_row_gets_the_whole_chip() {
        let boards = boards::builtin().unwrap();
        let (board, map) = resolve_target(&boards, None, Some("STM32F407VGTx")).unwrap();
        assert!(board.is_none());
        let plan = Plan::new(board, map.as_ref()).unwrap();
        assert_eq!(plan.model, ModelSlot::Embedded);
        assert_eq!(plan.flash.end - plan.flash.start, 1024 * 1024);
    }

    #[test]
    fn a_chip_finds_its_board() {
        let boards = boards::builtin().unwrap();
        let (board, map) = resolve_target(&boards, None, Some("nrf52840_xxaa")).unwrap();
        assert_eq!(board.map(|b| b.name.as_str()), Some("nrf52840dk"));
        assert_eq!(map.map(|m| m.name), Some("nRF52840_xxAA".to_string()));
    }

    #[test]
    fn an_unknown_chip_is_an_error_with_close_names() {
        let boards = boards::builtin().unwrap();
        let err = resolve_target(&boards, None, Some("nRF52841_xxAA")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FlashError::UnknownChip { .. }), "{text}");
        assert!(text.contains("nRF52840_xxAA"), "{text}");
    }

    #[test]
    fn a_board_and_a_different_chip_disagree() {
        let boards = boards::builtin().unwrap();
        let err = resolve_target(&boards, Some("nucleo-f411re"), Some("RP2040")).unwrap_err();
        assert!(matches!(err, FlashError::BoardChipMismatch { .. }), "{err}");
    }

    #[test]
    fn an_oversized_model_suggests_pruning_and_boards_that_hold_it() {
        let boards = boards::builtin().unwrap();
        let nucleo = boards::by_name(&boards, "nucleo-f411re").unwrap();
        let d = demand(200_000, 150_000);
        let err = budget_for(nucleo, &d)
            .into_result(suggestion(&boards, Some(nucleo), &d))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cbam prune"), "{err}");
        assert!(err.contains("RAM needs 170,480 B but 131,072 B"), "{err}");
        assert!(err.contains("nrf52840dk"), "{err}");
        assert!(!err.contains("bigger board: nucleo"), "{err}");
    }

    fn args(board: &str, model_only: bool) -> FlashArgs {
        FlashArgs {
            chip: None,
            model: Some("m.cbam".into()),
            board: Some(board.into()),
            firmware: None,
            no_build: false,
            boards: None,
            list_boards: false,
            model_only,
            dry_run: false,
            probe: None,
            no_log: true,
            stack: DEFAULT_STACK,
        }
    }

    /// The state `fit_check` hands to `flash` for a model that fits `board`.
    fn checked<'b>(boards: &'b [Board], board: &str) -> Checked<'b> {
        let (board, chip) = resolve_target(boards, Some(board), None).unwrap();
        Checked {
            blob: vec![0; 64],
            board,
            plan: Plan::new(board, chip.as_ref()).unwrap(),
            chip,
            firmware: None,
            embedded_matches: None,
        }
    }

    #[test]
    fn flashing_a_model_region_without_a_probe_fails_at_the_probe() {
        let boards = boards::builtin().unwrap();
        if !probe_rs::probe::list::Lister::new().list_all().is_empty() {
            return; // a probe is attached here; this checks the no-probe path only
        }
        let err = flash(
            &args("nucleo-f411re", true),
            Path::new("m.cbam"),
            checked(&boards, "nucleo-f411re"),
        )
        .unwrap_err();
        assert!(matches!(err, FlashError::NoProbe { .. }), "{err}");
    }

    #[test]
    fn what_cannot_be_flashed_is_refused_before_looking_for_a_probe() {
        let boards = boards::builtin().unwrap();
        let m = Path::new("m.cbam");
        let qemu = flash(
            &args("mps2-an386", false),
            m,
            checked(&boards, "mps2-an386"),
        );
        assert!(matches!(qemu, Err(FlashError::EmulatedBoard { .. })));
        let esp = flash(
            &args("esp32c3-devkit", true),
            m,
            checked(&boards, "esp32c3-devkit"),
        );
        assert!(matches!(esp, Err(FlashError::NoModelRegion { .. })));
        let no_elf = flash(&args("rpi-pico", false), m, checked(&boards, "rpi-pico"));
        assert!(matches!(no_elf, Err(FlashError::NeedFirmware { .. })));
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flash: FlashArgs,
    }

    #[test]
    fn the_arguments_parse_and_the_help_has_examples() {
        let cli = Cli::try_parse_from([
            "cbam",
            "--chip",
            "esp32c3",
            "--model",
            "m.cbam",
            "--dry-run",
            "--stack",
            "8192",
        ])
        .unwrap();
        assert_eq!(cli.flash.chip.as_deref(), Some("esp32c3"));
        assert!(cli.flash.dry_run && !cli.flash.model_only);
        assert_eq!(cli.flash.stack, 8192);
        Cli::command().debug_assert();
        // As the subcommand `Flash(FlashArgs)` builds it: struct-level help included.
        let mut command = FlashArgs::augment_args(clap::Command::new("flash"));
        let help = command.render_long_help().to_string();
        assert!(help.contains("--model-only"), "{help}");
        assert!(help.contains("Examples:"), "{help}");
    }
}
