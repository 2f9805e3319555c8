//! Bounds-checked little-endian reads from the blob.

use crate::error::Error;

/// `blob[offset..offset + len]`, or `OffsetOutOfBounds { what }`.
pub(crate) fn region<'a>(
    blob: &'a [u8],
    what: &'static str,
    offset: usize,
    len: usize,
) -> Result<&'a [u8], Error> {
    offset
        .checked_add(len)
        .and_then(|end| blob.get(offset..end))
        .ok_or(Error::OffsetOutOfBounds { what, offset, len })
}

fn array<const N: usize>(blob: &[u8], what: &'static str, offset: usize) -> Result<[u8; N], Error> {
    let bytes = region(blob, what, offset, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

pub(crate) fn u16_at(blob: &[u8], what: &'static str, offset: usize) -> Result<u16, Error> {
    array(blob, what, offset).map(u16::from_le_bytes)
}

pub(crate) fn u32_at(blob: &[u8], what: &'static str, offset: usize) -> Result<u32, Error> {
    array(blob, what, offset).map(u32::from_le_bytes)
}

pub(crate) fn i32_at(blob: &[u8], what: &'static str, offset: usize) -> Result<i32, Error> {
    array(blob, what, offset).map(i32::from_le_bytes)
}

pub(crate) fn f32_at(blob: &[u8], what: &'static str, offset: usize) -> Result<f32, Error> {
    array(blob, what, offset).map(f32::from_le_bytes)
}

/// A `u32` field widened to `usize`; on 16-bit targets an overflow is a shape overflow.
pub(crate) fn usize_at(blob: &[u8], what: &'static str, offset: usize) -> Result<usize, Error> {
    let v = u32_at(blob, what, offset)?;
    usize::try_from(v).map_err(|_| Error::ShapeOverflow { what })
}
