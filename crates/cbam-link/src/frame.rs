//! One frame on the wire.
//!
//! ```text
//! 0x00 | COBS( kind u8 | seq u16 | len u16 | payload[len] | crc u32 ) | 0x00
//! ```
//!
//! Integers are little-endian; `crc` is the blob format's CRC-32 over `kind..payload`.
//! COBS leaves no 0x00 inside a frame, so a 0x00 always marks a boundary: a receiver that
//! starts mid-stream or loses bytes resynchronises at the next one. A delimiter on both
//! sides ends any garbage before a frame at the frame's first byte instead of spoiling it.

use cbam_core::crc32;
use heapless::Vec;

/// Largest payload of one frame. An input larger than this travels in several chunks.
pub const MAX_PAYLOAD: usize = 1024;
const HEADER_LEN: usize = 5;
const CRC_LEN: usize = 4;
/// Largest frame before COBS: header, payload, CRC.
pub const MAX_RAW: usize = HEADER_LEN + MAX_PAYLOAD + CRC_LEN;
/// Largest frame on the wire, both delimiters included.
pub const MAX_ENCODED: usize = cobs::max_encoding_length(MAX_RAW) + 2;
/// The byte that separates frames.
pub const DELIMITER: u8 = 0x00;

/// What a frame carries. Host requests have the top bit clear, device frames set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Kind {
    /// Host: who are you, and is your model ready? Also starts a new session.
    Hello = 0x01,
    /// Host: a chunk of the next input tensor.
    Input = 0x02,
    /// Device: the answer to `Hello`.
    Identity = 0x81,
    /// Device: an input chunk arrived, more are expected.
    Ack = 0x82,
    /// Device: the input is complete; the model's output and what it cost.
    Output = 0x83,
    /// Device: a frame arrived corrupted; send the request again.
    Nak = 0x84,
    /// Device: the request was understood but cannot be carried out.
    Failed = 0x85,
    /// Device: `defmt` log bytes, unsolicited and never acknowledged.
    Log = 0x86,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Kind::Hello,
            0x02 => Kind::Input,
            0x81 => Kind::Identity,
            0x82 => Kind::Ack,
            0x83 => Kind::Output,
            0x84 => Kind::Nak,
            0x85 => Kind::Failed,
            0x86 => Kind::Log,
            _ => return None,
        })
    }

    /// Whether the host sends this kind (a request).
    pub fn is_request(self) -> bool {
        (self as u8) & 0x80 == 0
    }
}

/// A decoded frame, borrowing its payload from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    /// The request's sequence number; a reply repeats the number of the request it answers.
    pub seq: u16,
    pub payload: &'a [u8],
}

/// Why bytes between two delimiters are not a frame. Every case means "resend".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// Not valid COBS.
    Cobs,
    /// Shorter than a header and a CRC.
    Short { len: usize },
    /// The CRC does not match the bytes.
    Crc { stored: u32, computed: u32 },
    /// The length field disagrees with the bytes received.
    Length { declared: usize, received: usize },
    /// A kind byte this protocol version does not define.
    UnknownKind { byte: u8 },
    /// More bytes than the largest frame arrived without a delimiter.
    Overflow,
}

/// The payload does not fit the frame's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooLong;

/// Builds one frame of at most `N` raw bytes: header, payload pieces, then [`Self::finish`].
pub struct FrameWriter<const N: usize> {
    raw: Vec<u8, N>,
}

impl<const N: usize> FrameWriter<N> {
    pub fn new(kind: Kind, seq: u16) -> Self {
        let mut raw = Vec::new();
        let [s0, s1] = seq.to_le_bytes();
        // The length is filled in by `finish`; N below a header is a caller's bug that
        // `finish` reports as TooLong.
        let _ = raw.extend_from_slice(&[kind as u8, s0, s1, 0, 0]);
        Self { raw }
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> Result<&mut Self, TooLong> {
        self.raw.extend_from_slice(bytes).map_err(|_| TooLong)?;
        Ok(self)
    }

    pub fn u8(&mut self, v: u8) -> Result<&mut Self, TooLong> {
        self.bytes(&[v])
    }

    pub fn u32(&mut self, v: u32) -> Result<&mut Self, TooLong> {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(&mut self, v: u64) -> Result<&mut Self, TooLong> {
        self.bytes(&v.to_le_bytes())
    }

    /// Fills in the length and CRC and writes the delimited COBS frame into `out`.
    pub fn finish<const M: usize>(mut self, out: &mut Vec<u8, M>) -> Result<(), TooLong> {
        let payload_len = self.raw.len().checked_sub(HEADER_LEN).ok_or(TooLong)?;
        if payload_len > MAX_PAYLOAD {
            return Err(TooLong);
        }
        let [l0, l1] = (payload_len as u16).to_le_bytes();
        if let Some(len) = self.raw.get_mut(3..5) {
            len.copy_from_slice(&[l0, l1]);
        }
        let crc = crc32(&self.raw);
        self.raw
            .extend_from_slice(&crc.to_le_bytes())
            .map_err(|_| TooLong)?;
        out.clear();
        out.resize(cobs::max_encoding_length(self.raw.len()) + 2, 0)
            .map_err(|_| TooLong)?;
        let n = cobs::try_encode_including_sentinels(&self.raw, out).map_err(|_| TooLong)?;
        out.truncate(n);
        Ok(())
    }
}

/// Decodes the bytes between two delimiters (in place) and checks CRC and length.
pub fn decode(encoded: &mut [u8]) -> Result<Frame<'_>, FrameError> {
    let len = cobs::decode_in_place(encoded).map_err(|_| FrameError::Cobs)?;
    let raw = encoded.get(..len).ok_or(FrameError::Cobs)?;
    if len < HEADER_LEN + CRC_LEN {
        return Err(FrameError::Short { len });
    }
    let (body, crc) = raw.split_at(len - CRC_LEN);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32(body);
    if stored != computed {
        return Err(FrameError::Crc { stored, computed });
    }
    let declared = usize::from(u16::from_le_bytes([body[3], body[4]]));
    let payload = &body[HEADER_LEN..];
    if declared != payload.len() {
        return Err(FrameError::Length {
            declared,
            received: payload.len(),
        });
    }
    let kind = Kind::from_u8(body[0]).ok_or(FrameError::UnknownKind { byte: body[0] })?;
    Ok(Frame {
        kind,
        seq: u16::from_le_bytes([body[1], body[2]]),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(kind: Kind, seq: u16, payload: &[u8]) -> Vec<u8, MAX_ENCODED> {
        let mut w = FrameWriter::<MAX_RAW>::new(kind, seq);
        w.bytes(payload).expect("fits");
        let mut out = Vec::new();
        w.finish(&mut out).expect("fits");
        out
    }

    /// The bytes between the delimiters.
    fn inner(wire: &[u8]) -> std::vec::Vec<u8> {
        wire[1..wire.len() - 1].to_vec()
    }

    fn cobs_encode(raw: &[u8]) -> std::vec::Vec<u8> {
        let mut out = std::vec![0; cobs::max_encoding_length(raw.len())];
        let n = cobs::encode(raw, &mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn a_frame_round_trips_and_holds_no_zero_inside() {
        let payload: std::vec::Vec<u8> = (0..=255u8).cycle().take(MAX_PAYLOAD).collect();
        let wire = encode(Kind::Input, 0xBEEF, &payload);
        assert_eq!((wire[0], wire[wire.len() - 1]), (0, 0));
        assert!(wire.len() <= MAX_ENCODED);
        let mut bytes = inner(&wire);
        assert!(!bytes.contains(&0));
        let frame = decode(&mut bytes).expect("valid");
        assert_eq!(
            (frame.kind, frame.seq, frame.payload),
            (Kind::Input, 0xBEEF, &payload[..])
        );
    }

    #[test]
    fn an_empty_payload_is_a_valid_frame() {
        let mut bytes = inner(&encode(Kind::Hello, 0, &[]));
        let frame = decode(&mut bytes).expect("valid");
        assert_eq!((frame.kind, frame.payload.len()), (Kind::Hello, 0));
    }

    #[test]
    fn a_payload_longer_than_the_maximum_is_refused() {
        let mut w = FrameWriter::<{ MAX_RAW + 8 }>::new(Kind::Input, 1);
        w.bytes(&[7; MAX_PAYLOAD + 1]).expect("the buffer holds it");
        assert_eq!(w.finish(&mut Vec::<u8, 2048>::new()), Err(TooLong));
        let mut small = FrameWriter::<16>::new(Kind::Input, 1);
        assert_eq!(small.bytes(&[1; 12]).err(), Some(TooLong));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let wire = encode(Kind::Output, 42, b"some output bytes");
        let clean = inner(&wire);
        for byte in 0..clean.len() {
            for bit in 0..8 {
                let mut bytes = clean.clone();
                bytes[byte] ^= 1 << bit;
                if bytes[byte] == 0 {
                    continue; // a new delimiter: the receiver splits there instead
                }
                assert!(decode(&mut bytes).is_err(), "flip {byte}:{bit} passed");
            }
        }
    }

    #[test]
    fn a_wrong_length_field_with_a_matching_crc_is_refused() {
        let mut raw = std::vec![Kind::Ack as u8, 0, 0, 9, 0, 1, 2];
        raw.extend_from_slice(&crc32(&raw).to_le_bytes());
        let mut bytes = cobs_encode(&raw);
        assert_eq!(
            decode(&mut bytes),
            Err(FrameError::Length {
                declared: 9,
                received: 2
            })
        );
    }

    #[test]
    fn unknown_kinds_and_short_frames_are_refused() {
        let mut raw = std::vec![0x7F, 0, 0, 0, 0];
        raw.extend_from_slice(&crc32(&raw).to_le_bytes());
        let mut bytes = cobs_encode(&raw);
        assert_eq!(
            decode(&mut bytes),
            Err(FrameError::UnknownKind { byte: 0x7F })
        );
        let mut short = cobs_encode(&[1, 2, 3]);
        assert_eq!(decode(&mut short), Err(FrameError::Short { len: 3 }));
    }

    #[test]
    fn request_kinds_are_the_host_ones() {
        assert!(Kind::Hello.is_request() && Kind::Input.is_request());
        assert!(!Kind::Output.is_request() && !Kind::Log.is_request());
    }
}
