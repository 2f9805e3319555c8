//! The host end: stop-and-wait with retransmission.
//!
//! One request is outstanding at a time. A reply carrying its number completes it; a NAK,
//! a damaged frame or a timeout sends it again, up to a limit, after which the link is
//! declared dead. Replies to earlier requests (duplicates of a reply already taken) are
//! ignored, so no reply is ever taken for the wrong request.

use heapless::Vec;

use crate::frame::{Frame, FrameError, Kind, TooLong, MAX_ENCODED};
use crate::message::{Malformed, Reply, Request};

/// What a received frame means for the outstanding request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The reply to the outstanding request.
    Reply(Reply<'a>),
    /// Send [`Requester::frame`] again now.
    Resend,
    /// `defmt` bytes from the device.
    Log(&'a [u8]),
    /// Nothing to do (a stale duplicate, or a frame while nothing is outstanding).
    Ignored,
}

/// Why the link cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The request was sent `attempts` times without a valid reply.
    Unanswered { attempts: u32 },
    /// A reply with a valid CRC but a payload this host cannot read: the device speaks
    /// another protocol version.
    Malformed { kind: Kind },
    /// The request does not fit a frame (a caller's bug: chunk inputs to `MAX_CHUNK`).
    TooLong,
}

impl From<TooLong> for LinkError {
    fn from(_: TooLong) -> Self {
        LinkError::TooLong
    }
}

/// Counts of what happened on the link, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub requests: u64,
    /// Requests sent again, for any reason.
    pub resent: u64,
    /// Damaged frames received.
    pub corrupt: u64,
    pub naks: u64,
    pub timeouts: u64,
    /// Replies to requests already answered.
    pub stale: u64,
}

pub struct Requester {
    next_seq: u16,
    outstanding: Option<u16>,
    frame: Vec<u8, MAX_ENCODED>,
    attempts: u32,
    max_attempts: u32,
    stats: LinkStats,
}

impl Requester {
    /// A requester that gives up after sending one request `max_attempts` times.
    pub fn new(max_attempts: u32) -> Self {
        Self {
            next_seq: 0,
            outstanding: None,
            frame: Vec::new(),
            attempts: 0,
            max_attempts: max_attempts.max(1),
            stats: LinkStats::default(),
        }
    }

    /// Encodes the next request; returns the bytes to send.
    pub fn request(&mut self, request: &Request<'_>) -> Result<&[u8], LinkError> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        request.encode(seq, &mut self.frame)?;
        self.outstanding = Some(seq);
        self.attempts = 1;
        self.stats.requests += 1;
        Ok(&self.frame)
    }

    /// The outstanding request's bytes, to send again.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    pub fn is_waiting(&self) -> bool {
        self.outstanding.is_some()
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// What a frame from the receiver means.
    pub fn accept<'a>(
        &mut self,
        received: Result<Frame<'a>, FrameError>,
    ) -> Result<Event<'a>, LinkError> {
        let frame = match received {
            Ok(frame) => frame,
            Err(_) => {
                self.stats.corrupt += 1;
                return self.again();
            }
        };
        match frame.kind {
            Kind::Log => Ok(Event::Log(frame.payload)),
            Kind::Nak => {
                self.stats.naks += 1;
                self.again()
            }
            kind if kind.is_request() => Ok(Event::Ignored),
            kind => {
                if self.outstanding != Some(frame.seq) {
                    self.stats.stale += 1;
                    return Ok(Event::Ignored);
                }
                let reply =
                    Reply::parse(&frame).map_err(|Malformed| LinkError::Malformed { kind })?;
                self.outstanding = None;
                Ok(Event::Reply(reply))
            }
        }
    }

    /// No reply came in time: the bytes to send again, or the verdict that the link is dead.
    pub fn timed_out(&mut self) -> Result<&[u8], LinkError> {
        self.stats.timeouts += 1;
        self.again()?;
        Ok(&self.frame)
    }

    fn again<'a>(&mut self) -> Result<Event<'a>, LinkError> {
        if self.outstanding.is_none() {
            return Ok(Event::Ignored);
        }
        if self.attempts >= self.max_attempts {
            return Err(LinkError::Unanswered {
                attempts: self.attempts,
            });
        }
        self.attempts += 1;
        self.stats.resent += 1;
        Ok(Event::Resend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode;
    use crate::message::{Output, Reply};

    fn reply_frame(reply: Reply<'_>, seq: u16) -> std::vec::Vec<u8> {
        let mut wire = Vec::<u8, MAX_ENCODED>::new();
        reply.encode(seq, &mut wire).expect("fits");
        wire[1..wire.len() - 1].to_vec()
    }

    #[test]
    fn only_the_reply_with_the_outstanding_number_completes_a_request() {
        let mut host = Requester::new(4);
        host.request(&Request::Hello).expect("fits");
        host.request(&Request::Input {
            offset: 0,
            data: &[1],
        })
        .expect("fits");
        let ack = Reply::Ack { received: 1 };
        let mut stale = reply_frame(ack, 0);
        assert_eq!(host.accept(decode(&mut stale)), Ok(Event::Ignored));
        let mut current = reply_frame(ack, 1);
        let mut first = current.clone();
        assert_eq!(host.accept(decode(&mut first)), Ok(Event::Reply(ack)));
        assert!(!host.is_waiting());
        assert_eq!(host.accept(decode(&mut current)), Ok(Event::Ignored));
        assert_eq!(host.stats().stale, 2);
    }

    #[test]
    fn damage_and_naks_resend_until_the_limit() {
        let mut host = Requester::new(3);
        host.request(&Request::Hello).expect("fits");
        assert_eq!(host.accept(Err(FrameError::Cobs)), Ok(Event::Resend));
        let mut nak = reply_frame(Reply::Nak, 0);
        assert_eq!(host.accept(decode(&mut nak)), Ok(Event::Resend));
        assert_eq!(
            host.timed_out().map(|f| f.len()),
            Err(LinkError::Unanswered { attempts: 3 })
        );
        assert_eq!(host.stats().resent, 2);
    }

    #[test]
    fn a_reply_the_host_cannot_read_is_a_protocol_error() {
        let mut host = Requester::new(3);
        host.request(&Request::Hello).expect("fits");
        let frame = Frame {
            kind: Kind::Ack,
            seq: 0,
            payload: &[1],
        };
        assert_eq!(
            host.accept(Ok(frame)),
            Err(LinkError::Malformed { kind: Kind::Ack })
        );
        let output = Reply::Output(Output {
            model_count: 1,
            link_count: 2,
            data: &[3],
        });
        let mut ok = reply_frame(output, 0);
        assert_eq!(host.accept(decode(&mut ok)), Ok(Event::Reply(output)));
    }
}
