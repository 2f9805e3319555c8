//! The messages frames carry, and their payload layouts (little-endian).

use core::fmt;

use heapless::Vec;

use crate::frame::{Frame, FrameWriter, Kind, TooLong, MAX_PAYLOAD, MAX_RAW};

/// Bumped whenever a payload layout changes; the host refuses a device that differs.
pub const PROTOCOL_VERSION: u8 = 1;
/// Input bytes one `Input` frame carries at most (its payload also holds the offset).
pub const MAX_CHUNK: usize = MAX_PAYLOAD - 4;
/// Output bytes one `Output` reply carries at most (after the two counts).
pub const MAX_OUTPUT: usize = MAX_PAYLOAD - 16;

/// What the host asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Payload: empty.
    Hello,
    /// Payload: `offset u32 | data`. The chunk that completes the input runs the model.
    Input { offset: u32, data: &'a [u8] },
}

/// What the device's latency counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CounterUnit {
    Cycles,
    Instructions,
}

impl CounterUnit {
    pub fn label(self) -> &'static str {
        match self {
            CounterUnit::Cycles => "cycles",
            CounterUnit::Instructions => "instructions",
        }
    }
}

/// The device's answer to `Hello`.
///
/// Payload: `version u8 | unit u8 | status (9 bytes, see DeviceError) | model_crc u32 |
/// input_len u32 | output_len u32 | needed u32 | capacity u32 | board (u8 len + UTF-8) |
/// build (u8 len + UTF-8)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    pub version: u8,
    pub unit: CounterUnit,
    /// `Err` when the device cannot evaluate (no valid model, too little RAM, ...).
    pub status: Result<(), DeviceError>,
    /// The CRC field of the model blob the device runs (0 without a model).
    pub model_crc: u32,
    pub input_len: u32,
    pub output_len: u32,
    /// RAM the model needs on the device: arena, input and output.
    pub needed: u32,
    /// RAM the firmware set aside for the model.
    pub capacity: u32,
    /// Board name from `firmware/boards.toml`.
    pub board: &'a str,
    /// The firmware build (crate, version, target).
    pub build: &'a str,
}

/// The model's answer for one complete input.
///
/// Payload: `model_count u64 | link_count u64 | data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output<'a> {
    /// The latency counter across the inference alone.
    pub model_count: u64,
    /// The counter spent on the link since the previous output: reading, checking and
    /// answering frames, but not idle waiting.
    pub link_count: u64,
    /// The int8 output tensor, as bytes.
    pub data: &'a [u8],
}

/// What the device answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    Identity(Identity<'a>),
    /// Payload: `received u32`, the input bytes the device holds so far.
    Ack {
        received: u32,
    },
    Output(Output<'a>),
    /// Payload: empty.
    Nak,
    /// Payload: the error (9 bytes).
    Failed(DeviceError),
}

/// Why the device cannot do what was asked. On the wire: `code u8 | a u32 | b u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeviceError {
    /// No blob the core accepts where the firmware reads its model (the device log says why).
    NoModel,
    /// The model needs more RAM than the firmware set aside for it.
    BufferTooSmall { needed: u32, capacity: u32 },
    /// The model's output does not fit one reply frame.
    OutputTooLarge { len: u32, max: u32 },
    /// An input chunk did not start where the previous one ended.
    InputOutOfOrder { expected: u32, offset: u32 },
    /// An input chunk runs past the end of the model's input.
    InputTooLong { end: u32, len: u32 },
    /// The core failed during the inference (the device log says why).
    Inference,
    /// A request the device could not parse: the two ends speak different protocols.
    Malformed,
}

impl DeviceError {
    fn to_wire(self) -> (u8, u32, u32) {
        match self {
            DeviceError::NoModel => (1, 0, 0),
            DeviceError::BufferTooSmall { needed, capacity } => (2, needed, capacity),
            DeviceError::OutputTooLarge { len, max } => (3, len, max),
            DeviceError::InputOutOfOrder { expected, offset } => (4, expected, offset),
            DeviceError::InputTooLong { end, len } => (5, end, len),
            DeviceError::Inference => (6, 0, 0),
            DeviceError::Malformed => (7, 0, 0),
        }
    }

    /// `None` for code 0 (no error), `Err` for an unknown code.
    fn from_wire(code: u8, a: u32, b: u32) -> Result<Option<Self>, Malformed> {
        Ok(Some(match code {
            0 => return Ok(None),
            1 => DeviceError::NoModel,
            2 => DeviceError::BufferTooSmall {
                needed: a,
                capacity: b,
            },
            3 => DeviceError::OutputTooLarge { len: a, max: b },
            4 => DeviceError::InputOutOfOrder {
                expected: a,
                offset: b,
            },
            5 => DeviceError::InputTooLong { end: a, len: b },
            6 => DeviceError::Inference,
            7 => DeviceError::Malformed,
            _ => return Err(Malformed),
        }))
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeviceError::NoModel => write!(f, "the device holds no valid model blob"),
            DeviceError::BufferTooSmall { needed, capacity } => write!(
                f,
                "the model needs {needed} bytes of RAM (arena, input and output) but the \
                 firmware set aside {capacity}"
            ),
            DeviceError::OutputTooLarge { len, max } => write!(
                f,
                "the model's output has {len} bytes; one reply carries at most {max}"
            ),
            DeviceError::InputOutOfOrder { expected, offset } => write!(
                f,
                "an input chunk started at byte {offset}, the device expected byte {expected}"
            ),
            DeviceError::InputTooLong { end, len } => write!(
                f,
                "an input chunk ends at byte {end}, past the model's {len}-byte input"
            ),
            DeviceError::Inference => write!(f, "the core failed during the inference"),
            DeviceError::Malformed => write!(f, "the device could not parse a request"),
        }
    }
}

/// A frame whose CRC is right but whose payload does not match its kind's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Malformed;

impl<'a> Request<'a> {
    pub fn encode<const M: usize>(&self, seq: u16, out: &mut Vec<u8, M>) -> Result<(), TooLong> {
        match *self {
            Request::Hello => FrameWriter::<MAX_RAW>::new(Kind::Hello, seq).finish(out),
            Request::Input { offset, data } => {
                let mut w = FrameWriter::<MAX_RAW>::new(Kind::Input, seq);
                w.u32(offset)?.bytes(data)?;
                w.finish(out)
            }
        }
    }

    pub fn parse(frame: &Frame<'a>) -> Result<Self, Malformed> {
        let mut r = Reader(frame.payload);
        let request = match frame.kind {
            Kind::Hello => Request::Hello,
            Kind::Input => Request::Input {
                offset: r.u32()?,
                data: r.rest(),
            },
            _ => return Err(Malformed),
        };
        r.end()?;
        Ok(request)
    }
}

impl<'a> Reply<'a> {
    pub fn encode<const M: usize>(&self, seq: u16, out: &mut Vec<u8, M>) -> Result<(), TooLong> {
        let kind = match self {
            Reply::Identity(_) => Kind::Identity,
            Reply::Ack { .. } => Kind::Ack,
            Reply::Output(_) => Kind::Output,
            Reply::Nak => Kind::Nak,
            Reply::Failed(_) => Kind::Failed,
        };
        let mut w = FrameWriter::<MAX_RAW>::new(kind, seq);
        match *self {
            Reply::Identity(id) => {
                w.u8(id.version)?.u8(match id.unit {
                    CounterUnit::Cycles => 0,
                    CounterUnit::Instructions => 1,
                })?;
                let (code, a, b) = id.status.err().map_or((0, 0, 0), DeviceError::to_wire);
                w.u8(code)?.u32(a)?.u32(b)?;
                w.u32(id.model_crc)?.u32(id.input_len)?.u32(id.output_len)?;
                w.u32(id.needed)?.u32(id.capacity)?;
                short_str(&mut w, id.board)?;
                short_str(&mut w, id.build)?;
            }
            Reply::Ack { received } => {
                w.u32(received)?;
            }
            Reply::Output(o) => {
                w.u64(o.model_count)?.u64(o.link_count)?.bytes(o.data)?;
            }
            Reply::Nak => {}
            Reply::Failed(e) => {
                let (code, a, b) = e.to_wire();
                w.u8(code)?.u32(a)?.u32(b)?;
            }
        }
        w.finish(out)
    }

    /// The reply in `frame`; `Err` for a request or log frame, or a bad payload.
    pub fn parse(frame: &Frame<'a>) -> Result<Self, Malformed> {
        let mut r = Reader(frame.payload);
        let reply = match frame.kind {
            Kind::Identity => {
                let version = r.u8()?;
                let unit = match r.u8()? {
                    0 => CounterUnit::Cycles,
                    1 => CounterUnit::Instructions,
                    _ => return Err(Malformed),
                };
                let (code, a, b) = (r.u8()?, r.u32()?, r.u32()?);
                let status = match DeviceError::from_wire(code, a, b)? {
                    None => Ok(()),
                    Some(e) => Err(e),
                };
                Reply::Identity(Identity {
                    version,
                    unit,
                    status,
                    model_crc: r.u32()?,
                    input_len: r.u32()?,
                    output_len: r.u32()?,
                    needed: r.u32()?,
                    capacity: r.u32()?,
                    board: r.short_str()?,
                    build: r.short_str()?,
                })
            }
            Kind::Ack => Reply::Ack { received: r.u32()? },
            Kind::Output => Reply::Output(Output {
                model_count: r.u64()?,
                link_count: r.u64()?,
                data: r.rest(),
            }),
            Kind::Nak => Reply::Nak,
            Kind::Failed => {
                let (code, a, b) = (r.u8()?, r.u32()?, r.u32()?);
                Reply::Failed(DeviceError::from_wire(code, a, b)?.ok_or(Malformed)?)
            }
            Kind::Hello | Kind::Input | Kind::Log => return Err(Malformed),
        };
        r.end()?;
        Ok(reply)
    }
}

/// A `Log` frame of `defmt` bytes; `N` bounds the raw frame, so a logger's buffers stay small.
pub fn encode_log<const N: usize, const M: usize>(
    seq: u16,
    bytes: &[u8],
    out: &mut Vec<u8, M>,
) -> Result<(), TooLong> {
    let mut w = FrameWriter::<N>::new(Kind::Log, seq);
    w.bytes(bytes)?;
    w.finish(out)
}

/// A string of at most 255 bytes, cut at a character boundary if longer.
fn short_str<const N: usize>(w: &mut FrameWriter<N>, s: &str) -> Result<(), TooLong> {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    w.u8(end as u8)?.bytes(&s.as_bytes()[..end])?;
    Ok(())
}

/// Reads a payload front to back; every read checks the length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let (lo, hi) = (self.u32()?, self.u32()?);
        Ok(u64::from(lo) | (u64::from(hi) << 32))
    }

    fn short_str(&mut self) -> Result<&'a str, Malformed> {
        let len = usize::from(self.u8()?);
        core::str::from_utf8(self.take(len)?).map_err(|_| Malformed)
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }

    fn end(self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, MAX_ENCODED};

    fn round_trip_reply(reply: &Reply<'_>, check: impl FnOnce(Reply<'_>)) {
        let mut wire = Vec::<u8, MAX_ENCODED>::new();
        reply.encode(77, &mut wire).expect("fits");
        let mut inner = wire[1..wire.len() - 1].to_vec();
        let frame = decode(&mut inner).expect("valid frame");
        assert_eq!(frame.seq, 77);
        check(Reply::parse(&frame).expect("valid reply"));
    }

    #[test]
    fn every_reply_round_trips() {
        let identity = Reply::Identity(Identity {
            version: PROTOCOL_VERSION,
            unit: CounterUnit::Instructions,
            status: Err(DeviceError::BufferTooSmall {
                needed: 9000,
                capacity: 4096,
            }),
            model_crc: 0xDEAD_BEEF,
            input_len: 784,
            output_len: 10,
            needed: 9000,
            capacity: 4096,
            board: "mps2-an386",
            build: "cbam-firmware-cortex-m 0.1.0",
        });
        let output = Reply::Output(Output {
            model_count: 1 << 40,
            link_count: 12_345,
            data: &[0x80, 0, 0x7F],
        });
        for reply in [
            identity,
            output,
            Reply::Ack { received: 1020 },
            Reply::Nak,
            Reply::Failed(DeviceError::InputOutOfOrder {
                expected: 4,
                offset: 8,
            }),
            Reply::Failed(DeviceError::Inference),
        ] {
            round_trip_reply(&reply, |back| assert_eq!(back, reply));
        }
    }

    #[test]
    fn requests_round_trip_and_a_full_chunk_fits_one_frame() {
        let data = [0xAB; MAX_CHUNK];
        for request in [
            Request::Hello,
            Request::Input {
                offset: 2040,
                data: &data,
            },
        ] {
            let mut wire = Vec::<u8, MAX_ENCODED>::new();
            request.encode(3, &mut wire).expect("fits");
            let mut inner = wire[1..wire.len() - 1].to_vec();
            let frame = decode(&mut inner).expect("valid");
            assert_eq!(Request::parse(&frame), Ok(request));
        }
    }

    #[test]
    fn payloads_of_the_wrong_size_are_malformed() {
        let frame = Frame {
            kind: Kind::Ack,
            seq: 0,
            payload: &[1, 2, 3],
        };
        assert_eq!(Reply::parse(&frame), Err(Malformed));
        let frame = Frame {
            kind: Kind::Hello,
            seq: 0,
            payload: &[1],
        };
        assert_eq!(Request::parse(&frame), Err(Malformed));
        let frame = Frame {
            kind: Kind::Failed,
            seq: 0,
            payload: &[0; 9],
        };
        assert_eq!(Reply::parse(&frame), Err(Malformed), "code 0 is no failure");
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let board = "é".repeat(200);
        let reply = Reply::Identity(Identity {
            version: 1,
            unit: CounterUnit::Cycles,
            status: Ok(()),
            model_crc: 0,
            input_len: 0,
            output_len: 0,
            needed: 0,
            capacity: 0,
            board: &board,
            build: "",
        });
        round_trip_reply(&reply, |back| match back {
            Reply::Identity(id) => assert_eq!(id.board.len(), 254),
            other => panic!("{other:?}"),
        });
    }
}
