//! The evaluation firmware behind `cbam eval --device`: validate the model, say hello,
//! then loop: receive an input over the debug link, run the model, reply with the int8
//! output and the counter's reading for the inference and for the link.
//!
//! The protocol is `cbam-link`'s, the same code the host runs; the board supplies the
//! port (semihosting under QEMU, RTT on real boards) as `embedded-io` traits.

mod meter;
mod serve;
mod session;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_io::{Read, ReadReady, Write};

use crate::counter::Counter;
use crate::runner::{Board, Exit, Identity};

pub use meter::LinkMeter;
pub use serve::serve;
pub use session::{Firmware, Session};

/// Serves `cbam eval --device` with the model in `blob`, cut into `buffer`, until the host
/// closes the link; then exits (pass unless the port failed).
pub fn run_and_exit<C, L, D, X, P>(
    mut board: Board<C, L, D, X>,
    mut port: P,
    blob: &[u8],
    buffer: &mut [u8],
    id: Identity<'_>,
) -> !
where
    C: Counter,
    L: OutputPin,
    D: DelayNs,
    X: Exit,
    P: Read + ReadReady + Write,
{
    info!("{=str}", id.run_tag);
    info!("cbam eval firmware {=str} on {=str}", id.build, id.board);
    let firmware = Firmware {
        board: id.board,
        build: id.build,
        counter: board.counter.kind(),
    };
    let mut session = Session::new(blob, buffer, firmware);
    if session.is_ready() {
        // The LED is a courtesy: its error is not the run's.
        let _ = board.led.set_high();
    }
    let passed = match serve(&mut port, &mut board.counter, &mut session) {
        Ok(()) => {
            info!(
                "the host closed the link after {=u32} inferences",
                session.runs
            );
            true
        }
        Err(e) => {
            error!("the debug link failed: {}", error_kind_name(&e));
            false
        }
    };
    let _ = board.led.set_low();
    board.exit.exit(passed)
}

/// The port error as something a log line can carry.
fn error_kind_name<E: embedded_io::Error>(e: &E) -> &'static str {
    match e.kind() {
        embedded_io::ErrorKind::BrokenPipe => "broken pipe",
        embedded_io::ErrorKind::TimedOut => "timed out",
        embedded_io::ErrorKind::Interrupted => "interrupted",
        _ => "port error",
    }
}
