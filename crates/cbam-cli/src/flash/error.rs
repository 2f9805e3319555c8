//! Everything `cbam flash` can refuse or fail at, each saying what to do next.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{} is not a valid model blob: {reason}", .path.display())]
    BadBlob { path: PathBuf, reason: String },

    #[error("the firmware ELF cannot be used: {reason}")]
    BadFirmware { reason: String },

    #[error("the board table is invalid: {0}")]
    BoardTable(String),

    #[error(
        "unknown board `{name}`; {}boards.toml knows: {}",
        .nearest.as_ref().map(|n| format!("did you mean `{n}`? ")).unwrap_or_default(),
        .known.join(", ")
    )]
    UnknownBoard {
        name: String,
        nearest: Option<String>,
        known: Vec<String>,
    },

    #[error("cannot print the fit check")]
    Output(#[source] std::io::Error),

    #[error("board `{board}` carries chip `{board_chip}`, not `{chip}`; drop --chip or pick the matching --board")]
    BoardChipMismatch {
        board: String,
        board_chip: String,
        chip: String,
    },

    #[error("unknown chip `{name}`. Close names probe-rs knows: {}. (`probe-rs chip list` prints them all.)", .close.join(", "))]
    UnknownChip { name: String, close: Vec<String> },

    #[error("chip name `{name}` matches several chips ({matches}); give the full name")]
    AmbiguousChip { name: String, matches: String },

    #[error("probe-rs target registry: {0}")]
    Registry(String),

    #[error("name a target: --chip CHIP (a probe-rs chip name) or --board BOARD (from firmware/boards.toml)")]
    NoTarget,

    #[error("{target}\nthe model does not fit:\n  {}\n{suggestion}", .over.join("\n  "))]
    DoesNotFit {
        target: String,
        over: Vec<String>,
        suggestion: String,
    },

    #[error("`{board}` is a QEMU board: nothing to flash. Run it with `cargo run --release` in firmware/{firmware_dir}")]
    EmulatedBoard { board: String, firmware_dir: String },

    #[error("{target} has no model region: the model is linked into the firmware. Rebuild the firmware with this model embedded and flash it with --firmware (without --model-only)")]
    NoModelRegion { target: String },

    #[error("flashing needs the firmware ELF: pass --firmware PATH (built in firmware/{firmware_dir}), --board BOARD without --no-build to build it here, or --model-only to replace just the model")]
    NeedFirmware { firmware_dir: String },

    #[error("the firmware ELF embeds a different model than {}: rebuild the firmware with this model, or use the blob it was built with", .path.display())]
    EmbeddedModelMismatch { path: PathBuf },

    #[error("{}\ncheck: the probe (ST-Link, J-Link, CMSIS-DAP, ESP USB-JTAG) is plugged in and powered, the board's debug USB port is used, and you may access it (udev rules: https://probe.rs/docs/getting-started/probe-setup/)", no_probe_summary(.selector.as_deref(), .found))]
    NoProbe {
        selector: Option<String>,
        found: Vec<String>,
    },

    #[error("{} debug probes are attached; choose one with --probe VID:PID[:SERIAL]:\n  {}", .found.len(), .found.join("\n  "))]
    ManyProbes { found: Vec<String> },

    #[error("--probe `{selector}` is not a probe selector ({reason}); write VID:PID or VID:PID:SERIAL in hex, e.g. 0483:374b")]
    BadProbeSelector { selector: String, reason: String },

    #[error("{step} failed: {reason}")]
    Hardware { step: &'static str, reason: String },
}

fn no_probe_summary(selector: Option<&str>, found: &[String]) -> String {
    let listed = if found.is_empty() {
        "no debug probes were found".to_string()
    } else {
        format!("found:\n  {}", found.join("\n  "))
    };
    match selector {
        Some(s) => format!("no attached probe matches --probe {s}; {listed}"),
        None => format!("{listed}; nothing to flash with"),
    }
}

impl FlashError {
    /// Wraps a probe-rs failure with the step it happened in.
    pub fn hardware(step: &'static str) -> impl FnOnce(String) -> FlashError {
        move |reason| FlashError::Hardware { step, reason }
    }
}
