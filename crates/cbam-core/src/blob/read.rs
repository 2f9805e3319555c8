//! Bounds-checked access to the blob's regions.

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

/// A `u32` field widened to `usize`; on 16-bit targets an overflow is a shape overflow.
pub(crate) fn size(v: u32, what: &'static str) -> Result<usize, Error> {
    usize::try_from(v).map_err(|_| Error::ShapeOverflow { what })
}

/// The record of `len` bytes at `offset`, decoded by `read` (one of the `format` records'
/// `read`, which needs exactly the bytes `region` checked).
pub(crate) fn record<T>(
    blob: &[u8],
    what: &'static str,
    offset: usize,
    len: usize,
    read: impl FnOnce(&[u8]) -> Option<T>,
) -> Result<T, Error> {
    read(region(blob, what, offset, len)?).ok_or(Error::OffsetOutOfBounds { what, offset, len })
}
