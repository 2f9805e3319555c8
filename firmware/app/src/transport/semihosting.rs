//! QEMU's debug link: semihosting stdin (host to device) and stdout (device to host).
//!
//! `cbam eval --device` starts QEMU and holds both ends of its pipes. A read blocks inside
//! QEMU until bytes arrive, at no instruction cost to the guest, so the instruction counter
//! sees the link's work and nothing of the host's pace. QEMU's UARTs take one byte per
//! main-loop turn (a few KB/s), semihosting moves whole buffers.
//!
//! The defmt log rides the same stdout as `Log` frames (this module's global logger), so
//! log lines and replies can never tear each other apart.

use core::cell::UnsafeCell;

use cbam_link::frame::MAX_ENCODED;
use heapless::Vec;
use semihosting::io::{Read as _, Stdin, Stdout, Write as _};

/// The semihosting console as the evaluation firmware's port.
pub struct SemihostingPort {
    stdin: Stdin,
    stdout: Stdout,
}

/// A semihosting call failed (the host closed a pipe, or QEMU runs without semihosting).
#[derive(Debug, Clone, Copy)]
pub struct PortError;

impl core::fmt::Display for PortError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a semihosting call failed")
    }
}

impl core::error::Error for PortError {}

impl embedded_io::Error for PortError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::BrokenPipe
    }
}

impl SemihostingPort {
    pub fn open() -> Result<Self, PortError> {
        Ok(Self {
            stdin: semihosting::io::stdin().map_err(|_| PortError)?,
            stdout: semihosting::io::stdout().map_err(|_| PortError)?,
        })
    }
}

impl embedded_io::ErrorType for SemihostingPort {
    type Error = PortError;
}

impl embedded_io::Read for SemihostingPort {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, PortError> {
        self.stdin.read(buf).map_err(|_| PortError)
    }
}

impl embedded_io::ReadReady for SemihostingPort {
    /// Always: a read waits inside the host, not on the device.
    fn read_ready(&mut self) -> Result<bool, PortError> {
        Ok(true)
    }
}

impl embedded_io::Write for SemihostingPort {
    fn write(&mut self, buf: &[u8]) -> Result<usize, PortError> {
        self.stdout.write(buf).map_err(|_| PortError)
    }

    fn flush(&mut self) -> Result<(), PortError> {
        Ok(())
    }
}

/// Largest defmt frame carried; a longer one is dropped whole (a torn defmt frame would
/// only garble the host's decoder).
const LOG_PAYLOAD: usize = 512;
const LOG_RAW: usize = LOG_PAYLOAD + 16;

#[defmt::global_logger]
struct LinkLog;

/// What a log frame is built in; the encoder lives apart so that its output callback may
/// borrow this while the encoder is borrowed.
struct LogFrame {
    frame: Vec<u8, LOG_PAYLOAD>,
    too_long: bool,
    wire: Vec<u8, MAX_ENCODED>,
    seq: u16,
    stdout: Option<Stdout>,
    restore: critical_section::RestoreState,
}

/// A logger static, touched only between `acquire` and `release`, i.e. inside the critical
/// section `acquire` enters.
struct Cell<T>(UnsafeCell<T>);

// SAFETY: accessed only inside the critical section held from acquire to release.
unsafe impl<T> Sync for Cell<T> {}

static ENCODER: Cell<defmt::Encoder> = Cell(UnsafeCell::new(defmt::Encoder::new()));
static LOG: Cell<LogFrame> = Cell(UnsafeCell::new(LogFrame {
    frame: Vec::new(),
    too_long: false,
    wire: Vec::new(),
    seq: 0,
    stdout: None,
    restore: critical_section::RestoreState::invalid(),
}));

/// Runs `f` on the encoder and the frame.
///
/// # Safety
/// Only inside the logger's critical section (between `acquire` and `release`), and not
/// from within `f` (`append` reaches the frame on its own).
unsafe fn with_encoder(f: impl FnOnce(&mut defmt::Encoder)) {
    // SAFETY: the caller holds the critical section; nothing else borrows the encoder.
    f(unsafe { &mut *ENCODER.0.get() });
}

/// # Safety
/// As [`with_encoder`]; no other reference to the frame may be alive.
unsafe fn log_frame() -> &'static mut LogFrame {
    // SAFETY: the caller holds the critical section and no other reference.
    unsafe { &mut *LOG.0.get() }
}

fn append(bytes: &[u8]) {
    // SAFETY: the encoder calls this inside the critical section, while no other
    // reference to the frame is alive.
    let log = unsafe { log_frame() };
    if log.frame.extend_from_slice(bytes).is_err() {
        log.too_long = true;
    }
}

// SAFETY: defmt's contract: acquire/release bracket every frame, and the critical section
// makes the frame exclusive.
unsafe impl defmt::Logger for LinkLog {
    fn acquire() {
        // SAFETY: released in `release`, which defmt always calls after `acquire`.
        let restore = unsafe { critical_section::acquire() };
        // SAFETY: inside the critical section; the reference ends before the encoder runs.
        let log = unsafe { log_frame() };
        log.restore = restore;
        log.frame.clear();
        log.too_long = false;
        // SAFETY: inside the critical section.
        unsafe { with_encoder(|e| e.start_frame(append)) };
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called after `acquire`, inside its critical section.
        unsafe { with_encoder(|e| e.end_frame(append)) };
        // SAFETY: as above; the encoder is done.
        let log = unsafe { log_frame() };
        if !log.too_long {
            emit(log);
        }
        let restore = log.restore;
        // SAFETY: pairs with the `acquire` above.
        unsafe { critical_section::release(restore) };
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between `acquire` and `release`.
        unsafe { with_encoder(|e| e.write(bytes, append)) };
    }
}

/// Sends the finished defmt frame as one `Log` frame; a log that cannot be sent is lost,
/// the evaluation goes on.
fn emit(log: &mut LogFrame) {
    let encoded =
        cbam_link::message::encode_log::<LOG_RAW, MAX_ENCODED>(log.seq, &log.frame, &mut log.wire);
    if encoded.is_err() {
        return;
    }
    log.seq = log.seq.wrapping_add(1);
    if log.stdout.is_none() {
        log.stdout = semihosting::io::stdout().ok();
    }
    if let Some(out) = log.stdout.as_mut() {
        let _ = out.write_all(&log.wire);
    }
}
