//! Streams the firmware's defmt log over RTT, decoded with the ELF's defmt table, until
//! the firmware stops the core (its exit) or the user presses Ctrl-C.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use defmt_decoder::{DecodeError, StreamDecoder, Table};
use object::{Object, ObjectSymbol};
use probe_rs::rtt::{Rtt, ScanRegion};
use probe_rs::Core;

use super::error::FlashError;

/// The RTT control block symbol every RTT implementation (defmt-rtt, rtt-target) exports.
const RTT_SYMBOL: &str = "_SEGGER_RTT";
/// The firmware sets up RTT within its first milliseconds; give it this long.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

pub fn stream(core: &mut Core, elf: &[u8]) -> Result<(), FlashError> {
    let stop: &AtomicBool = crate::interrupt::stop_flag();
    let table = Table::parse(elf).map_err(|e| FlashError::BadFirmware {
        reason: format!("its defmt table cannot be read ({e})"),
    })?;
    let mut rtt = attach(core, rtt_address(elf))?;
    let channel = rtt.up_channel(0).ok_or_else(|| FlashError::Hardware {
        step: "reading the log",
        reason: "the firmware's RTT block has no up channel".into(),
    })?;
    crate::errln!("streaming the device log (Ctrl-C to stop)");

    let mut printer = Printer::new(table.as_ref());
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let n = channel
            .read(core, &mut buf)
            .map_err(|e| FlashError::hardware("reading RTT")(e.to_string()))?;
        if n > 0 {
            printer.received(buf.get(..n).unwrap_or_default());
            continue;
        }
        let halted = core
            .core_halted()
            .map_err(|e| FlashError::hardware("polling the core")(e.to_string()))?;
        if halted {
            crate::errln!("the firmware stopped the core: done");
            return Ok(());
        }
        sleep(POLL);
    }
    crate::errln!("stopped by Ctrl-C; the firmware keeps running");
    Ok(())
}

pub(crate) fn rtt_address(elf: &[u8]) -> Option<u64> {
    let file = object::File::parse(elf).ok()?;
    let symbol = file.symbols().find(|s| s.name() == Ok(RTT_SYMBOL))?;
    Some(symbol.address())
}

/// Retries until the firmware has written its RTT control block.
pub(crate) fn attach(core: &mut Core, address: Option<u64>) -> Result<Rtt, FlashError> {
    let region = address.map_or(ScanRegion::Ram, ScanRegion::Exact);
    let started = Instant::now();
    loop {
        match Rtt::attach_region(core, &region) {
            Ok(rtt) => return Ok(rtt),
            Err(e) if started.elapsed() > ATTACH_TIMEOUT => {
                return Err(FlashError::Hardware {
                    step: "attaching to the RTT log",
                    reason: format!("{e}; is the firmware built with defmt-rtt, and did it start?"),
                })
            }
            Err(_) => sleep(POLL),
        }
    }
}

/// Decodes defmt frames when the ELF has a table, else passes text through.
struct Printer<'t> {
    decoder: Option<Box<dyn StreamDecoder + Send + Sync + 't>>,
    /// rzcobs frames resynchronise after a lost byte; raw ones cannot.
    can_recover: bool,
    colored: bool,
}

impl<'t> Printer<'t> {
    fn new(table: Option<&'t Table>) -> Self {
        Printer {
            decoder: table.map(Table::new_stream_decoder),
            can_recover: table.is_some_and(|t| t.encoding().can_recover()),
            colored: std::io::stdout().is_terminal(),
        }
    }

    fn received(&mut self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let Some(decoder) = self.decoder.as_mut() else {
            let _ = out.write_all(bytes);
            return;
        };
        decoder.received(bytes);
        loop {
            match decoder.decode() {
                Ok(frame) => {
                    let _ = writeln!(out, "{}", frame.display(self.colored));
                }
                Err(DecodeError::UnexpectedEof) => break,
                Err(DecodeError::Malformed) => {
                    let _ = writeln!(out, "(malformed defmt frame: bytes were lost)");
                    if !self.can_recover {
                        break;
                    }
                }
            }
        }
        let _ = out.flush();
    }
}
