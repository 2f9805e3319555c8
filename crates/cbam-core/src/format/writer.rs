//! The blob assembler (feature `alloc`): the compiler's writer and the test encoders lay a
//! blob out through it. Where each section goes is the caller's choice (the format finds
//! every section by its offset); alignment, the header's identity fields, `total_len` and
//! the CRC are this writer's.

use alloc::vec::Vec;

use super::{
    seal_crc, HeaderFields, StageFields, ARRAY_ALIGN, HEADER_LEN, MAGIC, VERSION, WORD_ALIGN,
};

/// Where an op's constant arrays are stored. Each call returns the array's blob offset, the
/// value of its `*_off` parameter word.
pub trait ConstArrays {
    fn i8s(&mut self, values: &[i8]) -> i32;
    fn i32s(&mut self, values: &[i32]) -> i32;
}

/// Arrays not placed yet: every offset is 0. For what depends only on the value words,
/// such as an op's scratch size before the blob is laid out.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unplaced;

impl ConstArrays for Unplaced {
    fn i8s(&mut self, _: &[i8]) -> i32 {
        0
    }

    fn i32s(&mut self, _: &[i32]) -> i32 {
        0
    }
}

/// The blob would not be addressable: more than 4 GiB in all, or a constant array starting
/// past the 2 GiB an `i32` offset word reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// Bytes written when the limit was found.
    pub bytes: usize,
}

impl core::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the blob would be {} bytes; the format addresses 4 GiB, constant arrays the first 2 GiB",
            self.bytes
        )
    }
}

impl core::error::Error for TooLarge {}

/// A blob under construction: a zeroed header, then whatever the caller appends.
#[derive(Clone, Debug)]
pub struct BlobWriter {
    buf: Vec<u8>,
    /// An offset did not fit its field; `finish` refuses the blob.
    too_large: bool,
}

impl Default for BlobWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BlobWriter {
    pub fn new() -> Self {
        Self {
            buf: alloc::vec![0; usize::from(HEADER_LEN)],
            too_large: false,
        }
    }

    /// Bytes written so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The current end as a `u32` offset (remembering when it does not fit).
    fn end(&mut self) -> u32 {
        u32::try_from(self.buf.len()).unwrap_or_else(|_| {
            self.too_large = true;
            u32::MAX
        })
    }

    fn pad_to(&mut self, align: usize) {
        let len = self.buf.len().next_multiple_of(align);
        self.buf.resize(len, 0);
    }

    /// Appends `len` zero bytes (a table filled in later with [`BlobWriter::put`]).
    pub fn reserve(&mut self, len: usize) -> u32 {
        let off = self.end();
        self.buf.resize(self.buf.len().saturating_add(len), 0);
        off
    }

    /// Overwrites bytes written earlier (a record in a reserved table). Bytes past the end
    /// are not written.
    pub fn put(&mut self, at: u32, bytes: &[u8]) {
        let at = at as usize;
        if let Some(dst) = self.buf.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }

    /// Appends `bytes` at the next multiple of `align`; returns their offset.
    fn append(&mut self, align: usize, bytes: impl IntoIterator<Item = u8>) -> u32 {
        self.pad_to(align);
        let off = self.end();
        self.buf.extend(bytes);
        off
    }

    /// Appends a constant array at the next 16-byte boundary; returns its offset.
    pub fn array(&mut self, bytes: &[u8]) -> u32 {
        self.append(ARRAY_ALIGN, bytes.iter().copied())
    }

    /// Appends a kept-channel list as a constant array; returns its offset.
    pub fn u16s(&mut self, values: &[u16]) -> u32 {
        self.append(ARRAY_ALIGN, values.iter().flat_map(|v| v.to_le_bytes()))
    }

    /// Appends an op's parameter words at the next 4-byte boundary; returns their offset.
    pub fn words(&mut self, words: &[i32]) -> u32 {
        self.append(WORD_ALIGN, words.iter().flat_map(|w| w.to_le_bytes()))
    }

    /// Appends the schedule (the stage count, then each stage record); returns its offset,
    /// the header's `schedule_off`, or 0 (absent) for no stages.
    pub fn schedule(&mut self, stages: &[StageFields]) -> u32 {
        if stages.is_empty() {
            return 0;
        }
        let count = u32::try_from(stages.len()).unwrap_or_else(|_| {
            self.too_large = true;
            u32::MAX
        });
        let bytes = count
            .to_le_bytes()
            .into_iter()
            .chain(stages.iter().flat_map(|s| s.write()));
        self.append(WORD_ALIGN, bytes)
    }

    /// Appends text (the metadata) where the blob ends; returns its offset.
    pub fn text(&mut self, text: &str) -> u32 {
        self.append(1, text.bytes())
    }

    /// An array offset as its `i32` parameter word.
    fn word_offset(&mut self, off: u32) -> i32 {
        i32::try_from(off).unwrap_or_else(|_| {
            self.too_large = true;
            i32::MAX
        })
    }

    /// Writes `header` with its identity fields (magic, version, header_len), `total_len`
    /// and the CRC set here, whatever `header` holds in them.
    pub fn finish(mut self, header: HeaderFields) -> Result<Vec<u8>, TooLarge> {
        let total_len = self.end();
        if self.too_large {
            return Err(TooLarge {
                bytes: self.buf.len(),
            });
        }
        let header = HeaderFields {
            magic: MAGIC,
            version: VERSION,
            header_len: HEADER_LEN,
            total_len,
            ..header
        };
        self.put(0, &header.write());
        seal_crc(&mut self.buf);
        Ok(self.buf)
    }
}

impl ConstArrays for BlobWriter {
    fn i8s(&mut self, values: &[i8]) -> i32 {
        let off = self.array(crate::le::as_u8(values));
        self.word_offset(off)
    }

    fn i32s(&mut self, values: &[i32]) -> i32 {
        let off = self.append(ARRAY_ALIGN, values.iter().flat_map(|v| v.to_le_bytes()));
        self.word_offset(off)
    }
}
