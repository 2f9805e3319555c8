//! Real boards' debug link: SEGGER RTT through the probe (probe-rs on the host), with the
//! defmt log on up channel 0 ("defmt") as `cbam flash` reads it.
//!
//! The evaluation firmware adds up channel 1 and down channel 0 ("cbam-link"). The link's
//! up channel blocks when full, so no reply is ever dropped for want of room; the host
//! drains it while it waits for an answer.

#[cfg(feature = "eval")]
use rtt_target::{ChannelMode, DownChannel, UpChannel};

/// The defmt log on RTT up channel 0 (the test firmware: no link).
#[cfg(not(feature = "eval"))]
pub fn init_log() {
    rtt_target::rtt_init_defmt!();
}

/// The RTT control block with the log and link channels. Call once, before any log line.
#[cfg(feature = "eval")]
pub fn open() -> RttPort {
    let channels = rtt_target::rtt_init! {
        up: {
            0: { size: 1024, name: "defmt" }
            1: { size: 2048, mode: ChannelMode::BlockIfFull, name: "cbam-link" }
        }
        down: {
            0: { size: 2048, name: "cbam-link" }
        }
    };
    rtt_target::set_defmt_channel(channels.up.0);
    RttPort {
        up: channels.up.1,
        down: channels.down.0,
        staged: [0; STAGE],
        start: 0,
        end: 0,
    }
}

#[cfg(feature = "eval")]
const STAGE: usize = 64;

/// The link channels as the evaluation firmware's port.
#[cfg(feature = "eval")]
pub struct RttPort {
    up: UpChannel,
    down: DownChannel,
    /// Bytes read from the down channel to answer `read_ready`, not yet handed out.
    staged: [u8; STAGE],
    start: usize,
    end: usize,
}

#[cfg(feature = "eval")]
impl embedded_io::ErrorType for RttPort {
    type Error = core::convert::Infallible;
}

#[cfg(feature = "eval")]
impl embedded_io::ReadReady for RttPort {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        if self.start == self.end {
            self.start = 0;
            self.end = self.down.read(&mut self.staged);
        }
        Ok(self.start < self.end)
    }
}

#[cfg(feature = "eval")]
impl embedded_io::Read for RttPort {
    /// Waits for at least one byte, as `embedded-io` asks: RTT has no end of stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !embedded_io::ReadReady::read_ready(self)? {}
        let n = buf.len().min(self.end - self.start);
        buf[..n].copy_from_slice(&self.staged[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

#[cfg(feature = "eval")]
impl embedded_io::Write for RttPort {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(self.up.write(buf))
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
