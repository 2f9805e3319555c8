//! The embedded test images and the host core's outputs for them.

/// Test images, labels and expected outputs, generated at build time by
/// `cbam-firmware-build` (see the board crate's `cbam_testset.rs`).
#[derive(Clone, Copy, Debug)]
pub struct TestSet<'a> {
    /// `n * input_len` raw 8-bit pixels.
    pub images: &'a [u8],
    /// `n` class labels.
    pub labels: &'a [u8],
    /// `n * output_len` int8 outputs of the host core, as bytes.
    pub expected: &'a [u8],
    pub input_len: usize,
    pub output_len: usize,
    /// Pixel -> int8 input for models without the raw-pixel flag, one table per input
    /// channel.
    pub pixel_luts: &'a [[i8; 256]],
    /// CRC field of the blob the expected outputs were computed with.
    pub blob_crc: u32,
}

/// Label of an input that is not a whole Fashion-MNIST image (the build's
/// `NO_LABEL`).
pub const NO_LABEL: u8 = 0xFF;

/// One test image with what it should produce.
#[derive(Clone, Copy, Debug)]
pub struct Case<'a> {
    pub pixels: &'a [u8],
    /// The class, or [`NO_LABEL`].
    pub label: u8,
    pub expected: &'a [u8],
}

impl<'a> TestSet<'a> {
    /// Number of images: the count for which pixels, a label and an expected
    /// output all exist.
    pub fn len(&self) -> usize {
        let by_pixels = self.images.len().checked_div(self.input_len).unwrap_or(0);
        let by_outputs = self
            .expected
            .len()
            .checked_div(self.output_len)
            .unwrap_or(0);
        by_pixels.min(by_outputs).min(self.labels.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn case(&self, i: usize) -> Option<Case<'a>> {
        if i >= self.len() {
            return None;
        }
        Some(Case {
            pixels: self
                .images
                .get(i * self.input_len..(i + 1) * self.input_len)?,
            label: *self.labels.get(i)?,
            expected: self
                .expected
                .get(i * self.output_len..(i + 1) * self.output_len)?,
        })
    }
}

impl Case<'_> {
    /// Whether `class` is right, `None` for an unlabeled input.
    pub fn judge(&self, class: usize) -> Option<bool> {
        (self.label != NO_LABEL).then_some(class == usize::from(self.label))
    }
}

/// Whether the device's int8 output equals the host's byte for byte.
pub fn bit_exact(output: &[i8], expected: &[u8]) -> bool {
    output.len() == expected.len() && output.iter().zip(expected).all(|(&o, &e)| o as u8 == e)
}

#[cfg(test)]
mod tests {
    use super::*;

    static LUT: [[i8; 256]; 1] = [[0; 256]];

    fn set<'a>(images: &'a [u8], labels: &'a [u8], expected: &'a [u8]) -> TestSet<'a> {
        TestSet {
            images,
            labels,
            expected,
            input_len: 2,
            output_len: 3,
            pixel_luts: &LUT,
            blob_crc: 0,
        }
    }

    #[test]
    fn cases_slice_images_and_outputs_in_step() {
        let s = set(&[1, 2, 3, 4], &[7, 8], &[10, 11, 12, 13, 14, 15]);
        assert_eq!(s.len(), 2);
        let case = s.case(1).map(|c| (c.pixels, c.label, c.expected));
        assert_eq!(case, Some((&[3u8, 4][..], 8, &[13u8, 14, 15][..])));
        assert!(s.case(2).is_none());
    }

    #[test]
    fn a_short_expected_array_limits_the_count() {
        let s = set(&[1, 2, 3, 4], &[7, 8], &[10, 11, 12]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn unlabeled_cases_are_not_judged() {
        let case = Case {
            pixels: &[],
            label: NO_LABEL,
            expected: &[],
        };
        assert_eq!(case.judge(3), None);
        let case = Case { label: 3, ..case };
        assert_eq!((case.judge(3), case.judge(4)), (Some(true), Some(false)));
    }

    #[test]
    fn bit_exact_compares_two_complement_bytes() {
        assert!(bit_exact(&[-1, 0, 127], &[0xff, 0, 0x7f]));
        assert!(!bit_exact(&[-1, 0, 127], &[0xfe, 0, 0x7f]));
        assert!(!bit_exact(&[-1, 0], &[0xff, 0, 0]));
    }
}
