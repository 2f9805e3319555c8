//! Views of the blob's little-endian arrays at any alignment, and the `u8` <-> `i8` casts.
//!
//! The blob is read in place from flash whose base address the core does not control, so
//! multi-byte values are always decoded with `from_le_bytes`, never by pointer casts.

/// A read-only array of little-endian `i32` words.
#[derive(Clone, Copy, Debug, Default)]
pub struct I32Le<'a>(&'a [u8]);

impl<'a> I32Le<'a> {
    /// Wraps raw bytes; a trailing partial word is ignored.
    pub const fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The word at `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<i32> {
        let start = i.checked_mul(4)?;
        let bytes = self.0.get(start..start.checked_add(4)?)?;
        Some(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn iter(&self) -> impl Iterator<Item = i32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The whole words as undecoded byte quadruples (decode each with
    /// `i32::from_le_bytes`): a kernel that walks several arrays in step checks their
    /// lengths once and then needs no check per word.
    pub fn words(&self) -> &'a [[u8; 4]] {
        self.0.as_chunks::<4>().0
    }
}

/// A read-only array of little-endian `u16` values (kept-channel lists).
#[derive(Clone, Copy, Debug, Default)]
pub struct U16Le<'a>(&'a [u8]);

impl<'a> U16Le<'a> {
    pub const fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        self.0
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
}

/// Reinterprets bytes as int8 values.
pub fn as_i8(bytes: &[u8]) -> &[i8] {
    // SAFETY: `u8` and `i8` have the same size and alignment and every bit pattern is valid
    // for both, so the cast slice covers exactly the same memory with the same lifetime.
    #[allow(unsafe_code)]
    unsafe {
        core::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len())
    }
}

/// Reinterprets bytes as mutable int8 values.
pub fn as_i8_mut(bytes: &mut [u8]) -> &mut [i8] {
    // SAFETY: as in `as_i8`; the exclusive borrow is carried over unchanged.
    #[allow(unsafe_code)]
    unsafe {
        core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<i8>(), bytes.len())
    }
}

/// Reinterprets int8 values as bytes.
pub fn as_u8(values: &[i8]) -> &[u8] {
    // SAFETY: as in `as_i8`, in the other direction.
    #[allow(unsafe_code)]
    unsafe {
        core::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len())
    }
}

#[cfg(test)]
pub(crate) fn i32_bytes(values: &[i32]) -> std::vec::Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
pub(crate) fn u16_bytes(values: &[u16]) -> std::vec::Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unaligned_words() {
        let bytes = [0xAA, 0x01, 0x00, 0x00, 0x80, 0xFF, 0xFF, 0xFF, 0x7F, 0x09];
        let words = I32Le::new(&bytes[1..]);
        assert_eq!(words.len(), 2);
        assert_eq!(words.get(0), Some(i32::from_le_bytes([1, 0, 0, 0x80])));
        assert_eq!(words.get(1), Some(i32::MAX));
        assert_eq!(words.get(2), None);
        assert_eq!(words.get(usize::MAX), None);
        assert_eq!(words.iter().count(), 2);
        let quads = words.words();
        assert_eq!(quads.len(), words.len());
        let decoded: std::vec::Vec<i32> = quads.iter().map(|&q| i32::from_le_bytes(q)).collect();
        assert_eq!(decoded, words.iter().collect::<std::vec::Vec<_>>());
        let halves = U16Le::new(&bytes[..5]);
        assert_eq!(
            halves.iter().collect::<std::vec::Vec<_>>(),
            [0x01AA, 0x0000]
        );
    }

    #[test]
    fn casts_preserve_bits() {
        let mut bytes = [0u8, 127, 128, 255];
        assert_eq!(as_i8(&bytes), &[0, 127, -128, -1]);
        as_i8_mut(&mut bytes)[0] = -2;
        assert_eq!(bytes[0], 254);
        assert_eq!(as_u8(&[-1i8, 5]), &[255, 5]);
    }
}
