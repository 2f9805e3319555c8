//! The host end of the debug link: `cbam-link`'s requester over a transport, with real
//! time. Each call sends one request and returns its reply; a damaged, lost or refused
//! frame is resent, and a device that stays silent ends the run with an error.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use cbam_link::{
    CounterUnit, DeviceError, Event, FrameReceiver, LinkError, LinkStats, Reply, Request, Requester,
};

use super::log::DeviceLog;

/// Sends a request this many times at most before the link is declared dead.
const MAX_ATTEMPTS: u32 = 8;
/// The wait for a reply before resending, until a reply of the same kind sets the pace.
/// A resend costs little: the device answers a repeated request from its memory.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The shortest wait for a reply before resending.
const MIN_RETRY: Duration = Duration::from_millis(100);
/// A reply may take this many times the slowest one seen before the request is resent.
const RETRY_FACTOR: u32 = 8;

/// Bytes from the device: link frames, and log bytes from transports that carry the log
/// apart from the link (RTT).
#[derive(Debug, Default)]
pub struct Received {
    pub link: Vec<u8>,
    pub log: Vec<u8>,
}

/// A byte pipe to the device.
pub trait Transport {
    fn send(&mut self, bytes: &[u8]) -> Result<()>;
    /// What arrived by `deadline` (possibly nothing). An error means the device side is
    /// gone (QEMU exited, the probe was unplugged) and says why.
    fn receive(&mut self, deadline: Instant) -> Result<Received>;
}

/// Which kind of exchange a request is: each has its own pace (an inference takes longer
/// than an acknowledged chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    Hello,
    Chunk,
    Inference,
}

/// The device's identity, owned.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub version: u8,
    pub unit: CounterUnit,
    pub status: Result<(), DeviceError>,
    pub model_crc: u32,
    pub input_len: usize,
    pub output_len: usize,
    pub needed: u32,
    pub capacity: u32,
    pub board: String,
    pub build: String,
}

/// A reply, owned.
#[derive(Debug, Clone)]
pub enum Answer {
    Identity(DeviceIdentity),
    Ack {
        received: u32,
    },
    Output {
        model_count: u64,
        link_count: u64,
        data: Vec<u8>,
    },
    Failed(DeviceError),
}

impl Answer {
    fn of(reply: Reply<'_>) -> Result<Self> {
        Ok(match reply {
            Reply::Identity(id) => Answer::Identity(DeviceIdentity {
                version: id.version,
                unit: id.unit,
                status: id.status,
                model_crc: id.model_crc,
                input_len: id.input_len as usize,
                output_len: id.output_len as usize,
                needed: id.needed,
                capacity: id.capacity,
                board: id.board.to_string(),
                build: id.build.to_string(),
            }),
            Reply::Ack { received } => Answer::Ack { received },
            Reply::Output(o) => Answer::Output {
                model_count: o.model_count,
                link_count: o.link_count,
                data: o.data.to_vec(),
            },
            Reply::Failed(e) => Answer::Failed(e),
            Reply::Nak => bail!("the device sent a NAK as a reply"),
        })
    }
}

pub struct Link<'t> {
    transport: Box<dyn Transport>,
    receiver: FrameReceiver,
    requester: Requester,
    /// Received bytes not yet fed to the receiver (what followed the last reply).
    pending: Vec<u8>,
    pub log: DeviceLog<'t>,
    /// The slowest reply seen per exchange kind.
    slowest: [Option<Duration>; 3],
    silence_limit: Duration,
}

impl<'t> Link<'t> {
    /// `silence_limit`: how long the device may stay silent before the run ends.
    pub fn new(transport: Box<dyn Transport>, log: DeviceLog<'t>, silence_limit: Duration) -> Self {
        Link {
            transport,
            receiver: FrameReceiver::new(),
            requester: Requester::new(MAX_ATTEMPTS),
            pending: Vec::new(),
            log,
            slowest: [None; 3],
            silence_limit,
        }
    }

    pub fn stats(&self) -> LinkStats {
        self.requester.stats()
    }

    /// Sends `request` and waits for its reply, resending it when none comes in time
    /// (waiting twice as long each time). A device silent for the whole silence limit,
    /// or a request sent `MAX_ATTEMPTS` times, ends the run.
    pub fn call(&mut self, request: &Request<'_>, kind: Exchange) -> Result<Answer> {
        if let Err(e) = self.requester.request(request) {
            return Err(self.failure(e));
        }
        self.resend()?;
        let mut sent = Instant::now();
        let mut heard = sent;
        let mut patience = self.retry_after(kind);
        loop {
            if let Some(answer) = self.take_pending(&mut sent)? {
                self.record(kind, sent.elapsed());
                return Ok(answer);
            }
            let now = Instant::now();
            if now >= heard + self.silence_limit {
                return Err(self.dead(format!(
                    "the device sent nothing for {:.1} s (--link-timeout)",
                    self.silence_limit.as_secs_f64()
                )));
            }
            if now >= sent + patience {
                if let Err(e) = self.requester.timed_out() {
                    return Err(self.failure(e));
                }
                self.resend()?;
                sent = now;
                patience = (patience * 2).min(self.silence_limit);
            }
            let deadline = (sent + patience).min(heard + self.silence_limit);
            let received = match self.transport.receive(deadline) {
                Ok(received) => received,
                Err(e) => return Err(self.lost(e)),
            };
            self.log.feed(&received.log);
            if !received.link.is_empty() || !received.log.is_empty() {
                heard = Instant::now();
            }
            self.pending.extend_from_slice(&received.link);
        }
    }

    /// Feeds the pending bytes to the receiver until a reply completes the request.
    fn take_pending(&mut self, sent: &mut Instant) -> Result<Option<Answer>> {
        let mut used_total = 0;
        let mut answer = None;
        let mut resend = false;
        while used_total < self.pending.len() && answer.is_none() {
            let (used, frame) = self.receiver.push(&self.pending[used_total..]);
            used_total += used;
            let Some(frame) = frame else { continue };
            match self.requester.accept(frame) {
                Ok(Event::Reply(reply)) => answer = Some(Answer::of(reply)?),
                Ok(Event::Resend) => resend = true,
                Ok(Event::Log(bytes)) => self.log.feed(bytes),
                Ok(Event::Ignored) => {}
                Err(e) => return Err(self.failure(e)),
            }
        }
        self.pending.drain(..used_total);
        if resend && answer.is_none() {
            self.resend()?;
            *sent = Instant::now();
        }
        Ok(answer)
    }

    /// Sends the outstanding request (again).
    fn resend(&mut self) -> Result<()> {
        match self.transport.send(self.requester.frame()) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// The transport says the device side is gone (QEMU exited, the probe went away).
    fn lost(&self, e: anyhow::Error) -> anyhow::Error {
        e.context(format!(
            "the device went away while cbam waited for it (the evaluation firmware runs \
             until cbam closes the link; a firmware given with --firmware may not be one){}",
            self.log.tail()
        ))
    }

    fn retry_after(&self, kind: Exchange) -> Duration {
        match self.slowest[kind as usize] {
            None => FIRST_RETRY.min(self.silence_limit),
            Some(slowest) => (slowest * RETRY_FACTOR)
                .max(MIN_RETRY)
                .min(self.silence_limit),
        }
    }

    fn record(&mut self, kind: Exchange, took: Duration) {
        let slot = &mut self.slowest[kind as usize];
        *slot = Some(slot.map_or(took, |s| s.max(took)));
    }

    fn failure(&self, e: LinkError) -> anyhow::Error {
        match e {
            LinkError::Unanswered { attempts } => self.dead(format!(
                "a request went unanswered after {attempts} attempts"
            )),
            LinkError::Malformed { kind } => anyhow!(
                "the device answered with a {kind:?} frame this cbam cannot read: the firmware \
                 speaks another protocol version; rebuild it from this checkout"
            ),
            LinkError::TooLong => anyhow!("internal error: a request does not fit one frame"),
        }
    }

    fn dead(&self, what: String) -> anyhow::Error {
        let stats = self.requester.stats();
        anyhow!(
            "the debug link is dead: {what} ({} requests, {} resent, {} damaged frames, {} \
             NAKs).{}",
            stats.requests,
            stats.resent,
            stats.corrupt,
            stats.naks,
            self.log.tail()
        )
    }
}
