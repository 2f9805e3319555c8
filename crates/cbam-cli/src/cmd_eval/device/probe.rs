//! Real boards: flash the evaluation firmware (and the model into its region) through a
//! debug probe, then talk over RTT: down channel 0 and up channel 1 ("cbam-link") carry
//! the link, up channel 0 ("defmt") the log (`firmware/app/src/transport/rtt.rs`).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use probe_rs::probe::DebugProbeInfo;
use probe_rs::rtt::Rtt;
use probe_rs::Session;

use super::link::{Received, Transport};
use crate::flash::boards::{Board, ModelPlacement};
use crate::flash::{rtt_log, session};

const LINK_CHANNEL: &str = "cbam-link";
const LOG_CHANNEL: &str = "defmt";
const POLL: Duration = Duration::from_millis(1);

pub struct Probe {
    session: Session,
    rtt: Rtt,
    link_up: usize,
    link_down: usize,
    log_up: Option<usize>,
}

impl Probe {
    /// Flashes `elf` (and `blob` into the model region when the board has one) through
    /// `probe`, resets the chip and attaches to the firmware's RTT channels.
    pub fn open(board: &Board, probe: DebugProbeInfo, elf: &[u8], blob: &[u8]) -> Result<Self> {
        let model = match (board.model_placement, board.model_origin) {
            (ModelPlacement::Region, Some(origin)) => Some((origin, blob)),
            _ => None,
        };
        let job = session::Job {
            probe,
            chip: &board.chip,
            firmware: Some(elf),
            model,
            log_elf: None,
        };
        let mut session = session::flash_and_reset(&job)?;
        let mut core = session.core(0).context("selecting core 0")?;
        let mut rtt = rtt_log::attach(&mut core, rtt_log::rtt_address(elf))?;
        drop(core);
        let link_up = channel(rtt.up_channels().iter().map(|c| c.name()), LINK_CHANNEL)?;
        let link_down = channel(rtt.down_channels().iter().map(|c| c.name()), LINK_CHANNEL)?;
        let log_up = channel(rtt.up_channels().iter().map(|c| c.name()), LOG_CHANNEL).ok();
        Ok(Probe {
            session,
            rtt,
            link_up,
            link_down,
            log_up,
        })
    }
}

/// The index of the channel called `name`.
fn channel<'a>(names: impl Iterator<Item = Option<&'a str>>, name: &str) -> Result<usize> {
    names
        .into_iter()
        .position(|n| n == Some(name))
        .ok_or_else(|| {
            anyhow!(
                "the firmware has no RTT channel `{name}`: it is not the evaluation firmware \
                 (build it with the `eval` feature, or let cbam build it: drop --firmware)"
            )
        })
}

impl Transport for Probe {
    fn send(&mut self, mut bytes: &[u8]) -> Result<()> {
        let mut core = self.session.core(0).context("selecting core 0")?;
        let down = self
            .rtt
            .down_channel(self.link_down)
            .context("the RTT down channel")?;
        while !bytes.is_empty() {
            let n = down.write(&mut core, bytes).context("writing RTT")?;
            bytes = &bytes[n..];
            if n == 0 {
                std::thread::sleep(POLL);
            }
        }
        Ok(())
    }

    fn receive(&mut self, deadline: Instant) -> Result<Received> {
        let mut core = self.session.core(0).context("selecting core 0")?;
        let mut buf = vec![0u8; 4096];
        loop {
            let mut received = Received::default();
            for (index, sink) in [(Some(self.link_up), 0), (self.log_up, 1)] {
                let Some(index) = index else { continue };
                let up = self.rtt.up_channel(index).context("an RTT up channel")?;
                let n = up.read(&mut core, &mut buf).context("reading RTT")?;
                let into = if sink == 0 {
                    &mut received.link
                } else {
                    &mut received.log
                };
                into.extend_from_slice(&buf[..n]);
            }
            if !received.link.is_empty() || !received.log.is_empty() || Instant::now() >= deadline {
                return Ok(received);
            }
            std::thread::sleep(POLL);
        }
    }
}
