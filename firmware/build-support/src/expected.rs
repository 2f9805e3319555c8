//! The host core's outputs for the embedded images: what the device must reproduce
//! bit for bit.
//!
//! A model whose input is not a 28x28x1 image (a test blob of the core, say) is
//! still tested bit for bit: its inputs are cut from the Fashion-MNIST pixel
//! stream and carry no label.

use cbam_core::Model;

use crate::images::{TestImages, IMAGE_LEN};
use crate::Error;

/// Label of an input that is not a whole Fashion-MNIST image.
pub const NO_LABEL: u8 = 0xFF;

/// Everything the firmware needs to know about the build-time model and its
/// reference outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The blob's CRC as its header stores it: the firmware compares it with the blob
    /// it finds in the model region to know whether these outputs belong to that model.
    pub blob_crc: u32,
    pub arena_size: usize,
    pub input_len: usize,
    pub output_len: usize,
    /// `n * input_len` raw 8-bit inputs, one after another.
    pub inputs: Vec<u8>,
    /// `n` labels, [`NO_LABEL`] for inputs that are not whole images.
    pub labels: Vec<u8>,
    /// `images.len() * output_len` int8 outputs, image after image.
    pub outputs: Vec<i8>,
    /// Pixel -> int8 input for models whose input is not the raw-pixel encoding.
    pub pixel_lut: [i8; 256],
    pub raw_pixels: bool,
}

/// Runs the host core on every image.
pub fn compute(blob: &[u8], images: &TestImages) -> Result<Expected, Error> {
    let model = Model::parse(blob).map_err(|e| Error::Core(e.to_string()))?;
    let input = model.input();
    let output = model.output();
    let input_len = input.len();
    let output_len = output.len();
    let (inputs, labels) = model_inputs(images, input_len)?;
    let raw_pixels = model.input_is_raw_pixels();
    let pixel_lut = pixel_lut(raw_pixels, input.scale, input.zero_point);

    let mut arena = vec![0u8; model.arena_size()];
    let mut quantized = vec![0i8; input_len];
    let mut out = vec![0i8; output_len];
    let mut outputs = Vec::with_capacity(labels.len() * output_len);
    for (i, pixels) in inputs.chunks_exact(input_len).enumerate() {
        for (q, p) in quantized.iter_mut().zip(pixels) {
            *q = pixel_lut[usize::from(*p)];
        }
        model
            .run(&mut arena, &quantized, &mut out)
            .map_err(|e| Error::Core(format!("image {i}: {e}")))?;
        outputs.extend_from_slice(&out);
    }
    Ok(Expected {
        blob_crc: model.crc(),
        arena_size: model.arena_size(),
        input_len,
        output_len,
        inputs,
        labels,
        outputs,
        pixel_lut,
        raw_pixels,
    })
}

/// The raw inputs and labels: the images themselves for a 28x28x1 input,
/// otherwise `len` consecutive bytes of the pixel stream per input, unlabeled.
fn model_inputs(images: &TestImages, len: usize) -> Result<(Vec<u8>, Vec<u8>), Error> {
    if len == IMAGE_LEN {
        return Ok((images.pixels.clone(), images.labels.clone()));
    }
    if len == 0 || images.pixels.is_empty() {
        return Err(Error::Internal("empty model input or no pixels"));
    }
    let stream = images.pixels.iter().copied().cycle();
    let inputs: Vec<u8> = stream.take(images.len() * len).collect();
    Ok((inputs, vec![NO_LABEL; images.len()]))
}

/// The int8 input for each 8-bit pixel. With the raw flag the compiler folded
/// the normalisation into the input quantization, so `q = pixel - 128`;
/// otherwise the pixel is taken as `pixel / 255` and quantized with the input's
/// scale and zero point (on the host, so the device stays float-free).
pub fn pixel_lut(raw_pixels: bool, scale: f32, zero_point: i32) -> [i8; 256] {
    let mut lut = [0i8; 256];
    for (p, q) in lut.iter_mut().enumerate() {
        let value = if raw_pixels || scale <= 0.0 || !scale.is_finite() {
            p as i32 - 128
        } else {
            (p as f32 / 255.0 / scale).round() as i32 + zero_point
        };
        *q = value.clamp(-128, 127) as i8;
    }
    lut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_pixels_are_shifted_by_128() {
        let lut = pixel_lut(true, 0.5, 3);
        assert_eq!((lut[0], lut[128], lut[255]), (-128, 0, 127));
    }

    #[test]
    fn unit_range_pixels_are_quantized_and_saturated() {
        // scale 1/255, zero point -128: pixel p -> p - 128 exactly.
        let lut = pixel_lut(false, 1.0 / 255.0, -128);
        assert_eq!((lut[0], lut[200], lut[255]), (-128, 72, 127));
        // A scale that maps 255 far past 127 saturates.
        let lut = pixel_lut(false, 1.0 / 1024.0, 0);
        assert_eq!((lut[1], lut[255]), (4, 127));
    }

    #[test]
    fn other_input_sizes_are_cut_from_the_pixel_stream_unlabeled() {
        let pixels: Vec<u8> = (0..2 * IMAGE_LEN).map(|i| (i % 256) as u8).collect();
        let images = TestImages {
            pixels,
            labels: vec![1, 2],
            sources: vec![],
        };
        let (inputs, labels) = model_inputs(&images, 1000).expect("inputs");
        assert_eq!(labels, vec![NO_LABEL, NO_LABEL]);
        assert_eq!(inputs.len(), 2000);
        assert_eq!(inputs[1000], (1000 % 256) as u8);
        let (same, labels) = model_inputs(&images, IMAGE_LEN).expect("inputs");
        assert_eq!((same, labels), (images.pixels.clone(), vec![1, 2]));
    }

    #[test]
    fn garbage_is_rejected_before_any_run() {
        let images = TestImages {
            pixels: vec![0; IMAGE_LEN],
            labels: vec![0],
            sources: vec![],
        };
        assert!(matches!(
            compute(b"not a blob", &images),
            Err(Error::Core(_))
        ));
    }
}
