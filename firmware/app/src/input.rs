//! Raw 8-bit pixels to the model's int8 input, without floating point.

/// How the model wants its input.
#[derive(Clone, Copy, Debug)]
pub enum InputEncoding<'a> {
    /// The compiler folded the normalisation into the input quantization:
    /// `q = pixel - 128`.
    RawPixels,
    /// Any other quantization: a host-built pixel -> int8 table.
    Table(&'a [i8; 256]),
}

/// Fills `input` from `pixels` (equal lengths; extra elements are left alone).
pub fn encode(encoding: InputEncoding<'_>, pixels: &[u8], input: &mut [i8]) {
    for (q, &p) in input.iter_mut().zip(pixels) {
        *q = match encoding {
            // Flipping the top bit is `p - 128` in two's complement.
            InputEncoding::RawPixels => (p ^ 0x80) as i8,
            InputEncoding::Table(lut) => lut[usize::from(p)],
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_pixels_are_shifted_by_128() {
        let mut input = [0i8; 4];
        encode(InputEncoding::RawPixels, &[0, 127, 128, 255], &mut input);
        assert_eq!(input, [-128, -1, 0, 127]);
    }

    #[test]
    fn a_table_is_looked_up_per_pixel() {
        let mut lut = [0i8; 256];
        for (i, q) in lut.iter_mut().enumerate() {
            *q = (i / 2) as i8;
        }
        let mut input = [9i8; 3];
        encode(InputEncoding::Table(&lut), &[10, 200], &mut input);
        assert_eq!(input, [5, 100, 9]);
    }
}
