//! The hardware half of `cbam flash`: attach, program firmware and model, verify, reset,
//! then hand over to the log stream.

use std::io::Cursor;

use probe_rs::flashing::{
    image_format, DownloadOptions, ElfLoader, ElfOptions, FlashProgress, ImageLoader, ProgressEvent,
};
use probe_rs::probe::DebugProbeInfo;
use probe_rs::{Permissions, Session};

use super::chip;
use super::error::FlashError;
use super::rtt_log;

/// The section the firmware links its build-time blob into when the board has a model
/// region (firmware/build-support `linker.rs`); the new blob replaces it.
const MODEL_SECTION: &str = ".cbam_model";

/// Everything to write and how to run it afterwards.
pub struct Job<'a> {
    pub probe: DebugProbeInfo,
    /// The resolved probe-rs chip name.
    pub chip: &'a str,
    /// The firmware ELF to program (`None` with `--model-only`).
    pub firmware: Option<&'a [u8]>,
    /// The blob and the flash address of the model region (`None` when embedded).
    pub model: Option<(u64, &'a [u8])>,
    /// The ELF whose defmt table decodes the log; `None` skips the log.
    pub log_elf: Option<&'a [u8]>,
}

pub fn flash_and_run(job: &Job) -> Result<(), FlashError> {
    let mut session = flash_and_reset(job)?;
    let mut core = session
        .core(0)
        .map_err(|e| FlashError::hardware("selecting core 0")(e.to_string()))?;
    match job.log_elf {
        Some(elf) => rtt_log::stream(&mut core, elf),
        None => {
            crate::errln!("no firmware ELF given: not streaming the defmt log (pass --firmware)");
            Ok(())
        }
    }
}

/// Attaches, programs and verifies, then resets the chip; the session stays open for
/// whoever talks to the firmware next (the log stream, or `cbam eval --device`).
pub(crate) fn flash_and_reset(job: &Job) -> Result<Session, FlashError> {
    let registry = chip::registry();
    let probe = job
        .probe
        .open()
        .map_err(|e| FlashError::hardware("opening the probe")(e.to_string()))?;
    let mut session = probe
        .attach_with_registry(job.chip, Permissions::default(), &registry)
        .map_err(|e| FlashError::hardware("attaching to the chip")(e.to_string()))?;
    crate::errln!("attached to {} through {}", job.chip, job.probe);

    program(&mut session, job)?;

    session
        .core(0)
        .map_err(|e| FlashError::hardware("selecting core 0")(e.to_string()))?
        .reset()
        .map_err(|e| FlashError::hardware("resetting the chip")(e.to_string()))?;
    crate::errln!("reset; the firmware is running");
    Ok(session)
}

/// Stages the firmware image and the blob in one flash loader, so sectors shared by both
/// are erased once, then programs and verifies them.
fn program(session: &mut Session, job: &Job) -> Result<(), FlashError> {
    let mut loader = session.target().flash_loader();
    if let Some(elf) = job.firmware {
        // probe-rs knows each target's native image format (ELF, or an ESP-IDF app image
        // with bootloader and partition table for the ESP32 family).
        let format_name = session
            .target()
            .default_format
            .clone()
            .unwrap_or_else(|| "elf".into());
        let format: Box<dyn ImageLoader> = match (format_name.as_str(), job.model) {
            // Two images for the same addresses would be refused: drop the firmware's copy.
            ("elf", Some(_)) => Box::new(ElfLoader(ElfOptions {
                skip_sections: vec![MODEL_SECTION.into()],
            })),
            _ => image_format(&format_name)
                .ok_or_else(|| FlashError::Hardware {
                    step: "loading the firmware",
                    reason: format!("probe-rs has no `{format_name}` image format registered"),
                })?
                .create_loader(None),
        };
        loader
            .load_image(session, &mut Cursor::new(elf), format, None)
            .map_err(|e| FlashError::hardware("loading the firmware")(e.to_string()))?;
    }
    if let Some((address, blob)) = job.model {
        loader
            .add_data(address, blob)
            .map_err(|e| FlashError::hardware("staging the model")(e.to_string()))?;
    }

    let mut options = DownloadOptions::default();
    options.verify = true;
    // Only the model is written with --model-only: whatever else shares its sectors stays.
    options.keep_unwritten_bytes = job.firmware.is_none();
    options.progress = FlashProgress::new(report_progress);
    loader
        .commit(session, options)
        .map_err(|e| FlashError::hardware("programming flash")(e.to_string()))?;
    crate::errln!("flashed and verified");
    Ok(())
}

fn report_progress(event: ProgressEvent) {
    match event {
        ProgressEvent::Started(op) => crate::errln!("  {op:?}..."),
        ProgressEvent::Failed(op) => crate::errln!("  {op:?} failed"),
        ProgressEvent::Finished(op) => crate::errln!("  {op:?} done"),
        _ => {}
    }
}
