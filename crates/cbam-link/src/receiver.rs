//! A byte stream cut into frames at the delimiters.

use heapless::Vec;

use crate::frame::{decode, Frame, FrameError, DELIMITER, MAX_ENCODED};

/// Collects the bytes of one frame at a time. Garbage, torn frames and bytes lost on the
/// way all end at the next delimiter, where the receiver starts afresh.
#[derive(Default)]
pub struct FrameReceiver {
    buf: Vec<u8, MAX_ENCODED>,
    /// More bytes than the largest frame arrived since the last delimiter.
    overflowed: bool,
    /// `buf` holds the frame returned last; clear it before taking new bytes.
    consumed: bool,
}

impl FrameReceiver {
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            overflowed: false,
            consumed: false,
        }
    }

    /// Takes bytes up to and including the first delimiter that ends a frame. Returns how
    /// many bytes it took and, when a frame ended, the frame or why it is not one. Call it
    /// again with the rest until every byte is taken.
    pub fn push(&mut self, bytes: &[u8]) -> (usize, Option<Result<Frame<'_>, FrameError>>) {
        if self.consumed {
            self.buf.clear();
            self.consumed = false;
        }
        for (i, &byte) in bytes.iter().enumerate() {
            if byte != DELIMITER {
                if self.buf.push(byte).is_err() {
                    self.overflowed = true;
                }
                continue;
            }
            if core::mem::take(&mut self.overflowed) {
                self.buf.clear();
                return (i + 1, Some(Err(FrameError::Overflow)));
            }
            if self.buf.is_empty() {
                continue; // the delimiter that opens a frame, or back-to-back delimiters
            }
            self.consumed = true;
            return (i + 1, Some(decode(&mut self.buf)));
        }
        (bytes.len(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameWriter, Kind, MAX_RAW};

    fn wire(kind: Kind, seq: u16, payload: &[u8]) -> std::vec::Vec<u8> {
        let mut w = FrameWriter::<MAX_RAW>::new(kind, seq);
        w.bytes(payload).expect("fits");
        let mut out = Vec::<u8, MAX_ENCODED>::new();
        w.finish(&mut out).expect("fits");
        out.to_vec()
    }

    type Seen = Result<(Kind, u16, std::vec::Vec<u8>), FrameError>;

    /// Every frame and error the receiver reports for `stream`, fed in `step`-byte pieces.
    fn collect(stream: &[u8], step: usize) -> std::vec::Vec<Seen> {
        let mut rx = FrameReceiver::new();
        let mut out = std::vec::Vec::new();
        for piece in stream.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, got) = rx.push(rest);
                rest = &rest[used..];
                if let Some(got) = got {
                    out.push(got.map(|f| (f.kind, f.seq, f.payload.to_vec())));
                }
            }
        }
        out
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let mut stream = wire(Kind::Ack, 1, b"first");
        stream.extend(wire(Kind::Output, 2, &[0, 0, 1, 0]));
        for step in [1, 3, 7, stream.len()] {
            let got = collect(&stream, step);
            assert_eq!(
                got,
                std::vec![
                    Ok((Kind::Ack, 1, b"first".to_vec())),
                    Ok((Kind::Output, 2, std::vec![0, 0, 1, 0]))
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn garbage_before_a_frame_is_one_error_and_the_frame_survives() {
        let mut stream = b"qemu: some text".to_vec();
        stream.extend(wire(Kind::Log, 0, b"log"));
        let got = collect(&stream, 4);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok((Kind::Log, 0, b"log".to_vec())));
    }

    #[test]
    fn an_endless_run_without_delimiter_overflows_then_recovers() {
        let mut stream = std::vec![0x55; 3 * MAX_ENCODED];
        stream.push(0);
        stream.extend(wire(Kind::Hello, 9, &[]));
        let got = collect(&stream, 100);
        assert_eq!(
            got,
            std::vec![Err(FrameError::Overflow), Ok((Kind::Hello, 9, std::vec![]))]
        );
    }
}
