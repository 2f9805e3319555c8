//! The 64-byte header: identity, integrity, table locations and the arena contract.

use super::read::{region, size};
use crate::crc::crc32;
use crate::error::Error;
use crate::format::{
    HeaderFields, CRC_START, HEADER_LEN, MAGIC, MIN_VERSION, OP_RECORD_LEN, TENSOR_RECORD_LEN,
    VERSION,
};

/// The decoded header, every field range-checked against the blob.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub crc32: u32,
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
    pub version: u16,
    /// 0: no schedule (every op runs whole).
    pub schedule_off: usize,
}

impl Header {
    /// Checks identity, length and CRC, then the table and scratch bounds. Returns the
    /// header and the blob cut to `total_len`.
    pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), Error> {
        let header_len = usize::from(HEADER_LEN);
        let f = HeaderFields::read(bytes).ok_or(Error::Truncated {
            needed: header_len,
            found: bytes.len(),
        })?;
        if f.magic != MAGIC {
            return Err(Error::BadMagic);
        }
        if !(MIN_VERSION..=VERSION).contains(&f.version) {
            return Err(Error::UnsupportedVersion { found: f.version });
        }
        if f.header_len != HEADER_LEN {
            return Err(Error::BadHeaderLen {
                found: f.header_len,
            });
        }
        let total_len = size(f.total_len, "total_len")?;
        if total_len < header_len {
            return Err(Error::BadTotalLen { found: f.total_len });
        }
        let blob = bytes.get(..total_len).ok_or(Error::Truncated {
            needed: total_len,
            found: bytes.len(),
        })?;
        let computed = crc32(blob.get(CRC_START..).unwrap_or_default());
        if f.crc32 != computed {
            return Err(Error::BadCrc {
                stored: f.crc32,
                computed,
            });
        }
        let header = Self::fields(&f)?;
        header.check_bounds(blob)?;
        Ok((header, blob))
    }

    fn fields(f: &HeaderFields) -> Result<Header, Error> {
        Ok(Header {
            crc32: f.crc32,
            arena_size: size(f.arena_size, "arena_size")?,
            scratch_off: size(f.scratch_off, "scratch_off")?,
            scratch_size: size(f.scratch_size, "scratch_size")?,
            n_tensors: f.n_tensors,
            n_ops: f.n_ops,
            tensors_off: size(f.tensors_off, "tensors_off")?,
            ops_off: size(f.ops_off, "ops_off")?,
            input_tensor: f.input_tensor,
            output_tensor: f.output_tensor,
            flags: f.flags,
            meta_off: size(f.meta_off, "meta_off")?,
            meta_len: size(f.meta_len, "meta_len")?,
            macs: f.macs,
            version: f.version,
            // Version 1 had a reserved word here.
            schedule_off: if f.version >= 2 {
                size(f.schedule_off, "schedule_off")?
            } else {
                0
            },
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
