//! The 64-byte header: identity, integrity, table locations and the arena contract.

use super::read::{region, u16_at, u32_at, usize_at};
use super::{HEADER_LEN, MAGIC, OP_RECORD_LEN, TENSOR_RECORD_LEN, VERSION};
use crate::crc::crc32;
use crate::error::Error;

/// Bit 0 of the header flags: the input quantization is `q = pixel - 128`.
pub(crate) const FLAG_RAW_PIXELS: u32 = 1;

/// The decoded header, every field range-checked against the blob.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub arena_size: usize,
    pub scratch_off: usize,
    pub scratch_size: usize,
    pub n_tensors: u16,
    pub n_ops: u16,
    pub tensors_off: usize,
    pub ops_off: usize,
    pub input_tensor: u16,
    pub output_tensor: u16,
    pub flags: u32,
    pub meta_off: usize,
    pub meta_len: usize,
    pub macs: u32,
}

impl Header {
    /// Checks identity, length and CRC, then the table and scratch bounds. Returns the
    /// header and the blob cut to `total_len`.
    pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), Error> {
        let header_len = usize::from(HEADER_LEN);
        if bytes.len() < header_len {
            return Err(Error::Truncated {
                needed: header_len,
                found: bytes.len(),
            });
        }
        if bytes.get(..4) != Some(&MAGIC[..]) {
            return Err(Error::BadMagic);
        }
        let version = u16_at(bytes, "version", 4)?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion { found: version });
        }
        let found_header_len = u16_at(bytes, "header_len", 6)?;
        if found_header_len != HEADER_LEN {
            return Err(Error::BadHeaderLen {
                found: found_header_len,
            });
        }
        let total_len_word = u32_at(bytes, "total_len", 8)?;
        let total_len = usize::try_from(total_len_word)
            .map_err(|_| Error::ShapeOverflow { what: "total_len" })?;
        if total_len < header_len {
            return Err(Error::BadTotalLen {
                found: total_len_word,
            });
        }
        let blob = bytes.get(..total_len).ok_or(Error::Truncated {
            needed: total_len,
            found: bytes.len(),
        })?;
        let stored = u32_at(blob, "crc32", 12)?;
        let computed = crc32(blob.get(16..).unwrap_or_default());
        if stored != computed {
            return Err(Error::BadCrc { stored, computed });
        }
        let header = Self::fields(blob)?;
        header.check_bounds(blob)?;
        Ok((header, blob))
    }

    fn fields(b: &[u8]) -> Result<Header, Error> {
        Ok(Header {
            arena_size: usize_at(b, "arena_size", 16)?,
            scratch_off: usize_at(b, "scratch_off", 20)?,
            scratch_size: usize_at(b, "scratch_size", 24)?,
            n_tensors: u16_at(b, "n_tensors", 28)?,
            n_ops: u16_at(b, "n_ops", 30)?,
            tensors_off: usize_at(b, "tensors_off", 32)?,
            ops_off: usize_at(b, "ops_off", 36)?,
            input_tensor: u16_at(b, "input_tensor", 40)?,
            output_tensor: u16_at(b, "output_tensor", 42)?,
            flags: u32_at(b, "flags", 44)?,
            meta_off: usize_at(b, "meta_off", 48)?,
            meta_len: usize_at(b, "meta_len", 52)?,
            macs: u32_at(b, "macs", 56)?,
        })
    }

    fn check_bounds(&self, blob: &[u8]) -> Result<(), Error> {
        let table = |count: u16, record: usize| {
            usize::from(count)
                .checked_mul(record)
                .ok_or(Error::ShapeOverflow { what: "table" })
        };
        region(
            blob,
            "tensor table",
            self.tensors_off,
            table(self.n_tensors, TENSOR_RECORD_LEN)?,
        )?;
        region(
            blob,
            "op table",
            self.ops_off,
            table(self.n_ops, OP_RECORD_LEN)?,
        )?;
        if self.meta_off != 0 {
            let meta = region(blob, "metadata", self.meta_off, self.meta_len)?;
            core::str::from_utf8(meta).map_err(|_| Error::BadMetadata)?;
        }
        for t in [self.input_tensor, self.output_tensor] {
            if t >= self.n_tensors {
                return Err(Error::BadTensorIndex { tensor: t });
            }
        }
        match self.scratch_off.checked_add(self.scratch_size) {
            Some(end) if end <= self.arena_size => Ok(()),
            _ => Err(Error::ScratchOutsideArena),
        }
    }

    /// The metadata text (empty when absent); validated UTF-8 by `parse`.
    pub fn meta<'a>(&self, blob: &'a [u8]) -> &'a str {
        if self.meta_off == 0 {
            return "";
        }
        region(blob, "metadata", self.meta_off, self.meta_len)
            .ok()
            .and_then(|m| core::str::from_utf8(m).ok())
            .unwrap_or("")
    }
}
