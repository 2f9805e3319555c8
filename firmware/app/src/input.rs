//! Raw 8-bit pixels to the model's int8 input, without floating point.

/// How the model wants its input.
#[derive(Clone, Copy, Debug)]
pub enum InputEncoding<'a> {
    /// The compiler folded the normalisation into the input quantization:
    /// `q = pixel - 128`.
    RawPixels,
    /// Any other quantization: host-built pixel -> int8 tables, one per input channel
    /// (each channel has its own normalisation).
    Tables(&'a [[i8; 256]]),
}

/// Fills `input` from `pixels` (equal lengths, channels interleaved as the core's NHWC
/// input; extra elements are left alone).
pub fn encode(encoding: InputEncoding<'_>, pixels: &[u8], input: &mut [i8]) {
    match encoding {
        InputEncoding::RawPixels => {
            for (q, &p) in input.iter_mut().zip(pixels) {
                // Flipping the top bit is `p - 128` in two's complement.
                *q = (p ^ 0x80) as i8;
            }
        }
        InputEncoding::Tables(luts) => {
            let channels = luts.len().max(1);
            for (qs, ps) in input.chunks_mut(channels).zip(pixels.chunks(channels)) {
                for ((q, &p), lut) in qs.iter_mut().zip(ps).zip(luts) {
                    *q = lut[usize::from(p)];
                }
            }
        }
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
        encode(InputEncoding::Tables(&[lut]), &[10, 200], &mut input);
        assert_eq!(input, [5, 100, 9]);
    }

    #[test]
    fn each_interleaved_channel_has_its_own_table() {
        let luts = [[1i8; 256], [2; 256], [3; 256]];
        let mut input = [0i8; 6];
        encode(InputEncoding::Tables(&luts), &[0; 6], &mut input);
        assert_eq!(input, [1, 2, 3, 1, 2, 3]);
    }
}
