//! The device end: every request is carried out once, whatever the link did to it.

use heapless::Vec;

use crate::frame::{Frame, FrameError, TooLong, MAX_ENCODED};
use crate::message::{DeviceError, Reply, Request};

/// What a received frame asks of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A new request: carry it out, then answer with [`Responder::reply`].
    Request { seq: u16, request: Request<'a> },
    /// The request answered last, sent again because its reply was lost or damaged:
    /// send [`Responder::last_reply`] again, without carrying the request out twice.
    Repeat,
    /// A damaged frame: send [`Responder::nak`] so the host resends at once.
    Corrupt,
    /// A well-formed frame with a payload this protocol version does not know: answer
    /// [`DeviceError::Malformed`] with [`Responder::reply`].
    Malformed { seq: u16 },
    /// A frame no host sends (a device frame): nothing to do.
    Ignore,
}

/// Remembers the last request answered and its reply, for retransmissions.
pub struct Responder {
    last_seq: Option<u16>,
    reply: Vec<u8, MAX_ENCODED>,
    nak: Vec<u8, 16>,
}

impl Default for Responder {
    fn default() -> Self {
        Self::new()
    }
}

impl Responder {
    pub fn new() -> Self {
        let mut nak = Vec::new();
        // Cannot fail: an empty payload fits any frame buffer of 16 bytes.
        let _ = Reply::Nak.encode(0, &mut nak);
        Self {
            last_seq: None,
            reply: Vec::new(),
            nak,
        }
    }

    /// Classifies a frame from the receiver. `Hello` is always new: it starts a session,
    /// whatever number a previous host left behind.
    pub fn accept<'a>(&self, received: Result<Frame<'a>, FrameError>) -> Incoming<'a> {
        let Ok(frame) = received else {
            return Incoming::Corrupt;
        };
        if !frame.kind.is_request() {
            return Incoming::Ignore;
        }
        let Ok(request) = Request::parse(&frame) else {
            return Incoming::Malformed { seq: frame.seq };
        };
        if request != Request::Hello && self.last_seq == Some(frame.seq) {
            return Incoming::Repeat;
        }
        Incoming::Request {
            seq: frame.seq,
            request,
        }
    }

    /// Encodes and remembers the reply to request `seq`; returns the bytes to send.
    pub fn reply(&mut self, seq: u16, reply: &Reply<'_>) -> Result<&[u8], TooLong> {
        self.last_seq = Some(seq);
        if let Err(e) = reply.encode(seq, &mut self.reply) {
            // Keep a reply the host can act on for the repeats of this request.
            let _ = Reply::Failed(DeviceError::OutputTooLarge { len: 0, max: 0 })
                .encode(seq, &mut self.reply);
            return Err(e);
        }
        Ok(&self.reply)
    }

    /// The last reply's bytes (empty before the first).
    pub fn last_reply(&self) -> &[u8] {
        &self.reply
    }

    /// The bytes of a NAK frame.
    pub fn nak(&self) -> &[u8] {
        &self.nak
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, Kind};

    fn frame_of(request: Request<'_>, seq: u16) -> std::vec::Vec<u8> {
        let mut wire = Vec::<u8, MAX_ENCODED>::new();
        request.encode(seq, &mut wire).expect("fits");
        wire[1..wire.len() - 1].to_vec()
    }

    #[test]
    fn a_repeated_number_is_a_repeat_but_hello_never_is() {
        let mut responder = Responder::new();
        let mut input = frame_of(
            Request::Input {
                offset: 0,
                data: &[1],
            },
            5,
        );
        let mut first = input.clone();
        let incoming = responder.accept(decode(&mut first));
        assert!(matches!(incoming, Incoming::Request { seq: 5, .. }));
        responder
            .reply(5, &Reply::Ack { received: 1 })
            .expect("fits");
        assert_eq!(responder.accept(decode(&mut input)), Incoming::Repeat);
        let mut hello = frame_of(Request::Hello, 5);
        assert_eq!(
            responder.accept(decode(&mut hello)),
            Incoming::Request {
                seq: 5,
                request: Request::Hello
            }
        );
    }

    #[test]
    fn damaged_and_foreign_frames_are_told_apart() {
        let responder = Responder::new();
        assert_eq!(responder.accept(Err(FrameError::Cobs)), Incoming::Corrupt);
        let echo = Frame {
            kind: Kind::Output,
            seq: 1,
            payload: &[],
        };
        assert_eq!(responder.accept(Ok(echo)), Incoming::Ignore);
        let odd = Frame {
            kind: Kind::Input,
            seq: 2,
            payload: &[1, 2],
        };
        assert_eq!(responder.accept(Ok(odd)), Incoming::Malformed { seq: 2 });
    }

    #[test]
    fn the_nak_is_a_valid_frame() {
        let responder = Responder::new();
        let wire = responder.nak();
        let mut inner = wire[1..wire.len() - 1].to_vec();
        assert_eq!(decode(&mut inner).map(|f| f.kind), Ok(Kind::Nak));
    }
}
