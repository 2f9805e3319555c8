//! The host core's outputs for the embedded images: what the device must reproduce
//! bit for bit.
//!
//! A model whose input is not the default images' 28x28x1 (a test blob of the core, say) is
//! still tested bit for bit: its inputs are cut from the Fashion-MNIST pixel stream and
//! carry no label. Images from a folder must be the model's input as they are.

use cbam_core::Model;

use crate::folder::hwc;
use crate::images::{Origin, TestImages};
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
    /// Pixel -> int8 input for models whose input is not the raw-pixel encoding, one
    /// table per input channel.
    pub pixel_luts: Vec<[i8; 256]>,
    pub raw_pixels: bool,
}

/// Runs the host core on every image.
pub fn compute(blob: &[u8], images: &TestImages) -> Result<Expected, Error> {
    let model = Model::parse(blob).map_err(|e| Error::Core(e.to_string()))?;
    let input = model.input();
    let output = model.output();
    let input_len = input.len();
    let output_len = output.len();
    let (inputs, labels) = model_inputs(images, [input.h, input.w, input.c])?;
    let raw_pixels = model.input_is_raw_pixels();
    let (mean, std) = normalisation(&model, input.c)?;
    let pixel_luts: Vec<[i8; 256]> = mean
        .iter()
        .zip(&std)
        .map(|(&m, &s)| pixel_lut(raw_pixels, input.scale, input.zero_point, m, s))
        .collect();

    let mut arena = vec![0u8; model.arena_size()];
    let mut quantized = vec![0i8; input_len];
    let mut out = vec![0i8; output_len];
    let mut outputs = Vec::with_capacity(labels.len() * output_len);
    for (i, pixels) in inputs.chunks_exact(input_len).enumerate() {
        // Channels are interleaved (NHWC), so channel `c` is every `c`-th value.
        for (qs, ps) in quantized
            .chunks_exact_mut(input.c)
            .zip(pixels.chunks_exact(input.c))
        {
            for ((q, p), lut) in qs.iter_mut().zip(ps).zip(&pixel_luts) {
                *q = lut[usize::from(*p)];
            }
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
        pixel_luts,
        raw_pixels,
    })
}

/// The raw inputs and labels: the images themselves for an input of their shape
/// (`[h, w, c]`); for another shape, `h * w * c` consecutive bytes of the default images'
/// pixel stream per input, unlabeled.
fn model_inputs(images: &TestImages, hwc_in: [usize; 3]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    if hwc_in == images.shape {
        return Ok((images.pixels.clone(), images.labels.clone()));
    }
    if let Origin::Folder(dir) = &images.origin {
        return Err(Error::InputShape {
            model: hwc(hwc_in),
            images: hwc(images.shape),
            dir: dir.clone(),
        });
    }
    let len: usize = hwc_in.iter().product();
    if len == 0 || images.pixels.is_empty() {
        return Err(Error::Internal("empty model input or no pixels"));
    }
    let stream = images.pixels.iter().copied().cycle();
    let inputs: Vec<u8> = stream.take(images.len() * len).collect();
    Ok((inputs, vec![NO_LABEL; images.len()]))
}

/// Per input channel, the `(mean, std)` the blob was quantized with (its `mean`/`std`
/// metadata; none: plain `pixel / 255`).
fn normalisation(model: &Model<'_>, channels: usize) -> Result<(Vec<f32>, Vec<f32>), Error> {
    Ok((
        per_channel("mean", model.meta("mean"), 0.0, channels)?,
        per_channel("std", model.meta("std"), 1.0, channels)?,
    ))
}

/// One value per channel from a metadata value holding one value or one per channel.
fn per_channel(
    key: &str,
    text: Option<&str>,
    default: f32,
    channels: usize,
) -> Result<Vec<f32>, Error> {
    let bad = |why: String| Error::BlobMeta(format!("{key}={}: {why}", text.unwrap_or("")));
    let values = match text {
        None => vec![default],
        Some(text) => text
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<Vec<f32>, _>>()
            .map_err(|_| bad("not a comma-separated list of numbers".into()))?,
    };
    match values.as_slice() {
        [one] => Ok(vec![*one; channels]),
        many if many.len() == channels => Ok(values),
        _ => Err(bad(format!(
            "{} values for {channels} input channels (one, or one per channel)",
            values.len()
        ))),
    }
}

/// The int8 input for each 8-bit pixel of one channel. With the raw flag the compiler
/// folded the normalisation into the input quantization, so `q = pixel - 128`; otherwise
/// the pixel is normalised as the host tools do, `(pixel / 255 - mean) / std`, and quantized
/// with the input's scale and zero point (on the host, so the device stays float-free).
pub fn pixel_lut(raw_pixels: bool, scale: f32, zero_point: i32, mean: f32, std: f32) -> [i8; 256] {
    let mut lut = [0i8; 256];
    for (p, q) in lut.iter_mut().enumerate() {
        let value = if raw_pixels || scale <= 0.0 || !scale.is_finite() {
            p as i32 - 128
        } else {
            ((p as f32 / 255.0 - mean) / std / scale).round() as i32 + zero_point
        };
        *q = value.clamp(-128, 127) as i8;
    }
    lut
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::images::{IMAGE_LEN, SIDE};

    fn fashion_mnist(pixels: Vec<u8>, labels: Vec<u8>) -> TestImages {
        TestImages {
            pixels,
            labels,
            shape: [SIDE, SIDE, 1],
            origin: Origin::FashionMnist,
            sources: vec![],
        }
    }

    #[test]
    fn raw_pixels_are_shifted_by_128() {
        let lut = pixel_lut(true, 0.5, 3, 0.4, 0.2);
        assert_eq!((lut[0], lut[128], lut[255]), (-128, 0, 127));
    }

    #[test]
    fn unit_range_pixels_are_quantized_and_saturated() {
        // scale 1/255, zero point -128: pixel p -> p - 128 exactly.
        let lut = pixel_lut(false, 1.0 / 255.0, -128, 0.0, 1.0);
        assert_eq!((lut[0], lut[200], lut[255]), (-128, 72, 127));
        // A scale that maps 255 far past 127 saturates.
        let lut = pixel_lut(false, 1.0 / 1024.0, 0, 0.0, 1.0);
        assert_eq!((lut[1], lut[255]), (4, 127));
    }

    #[test]
    fn normalised_pixels_are_quantized_as_the_host_tools_normalise_them() {
        // (p/255 - 0.5) / 0.25 spans [-2, 2]; scale 4/255 and zero point 0 put it on -127..127.
        let lut = pixel_lut(false, 4.0 / 255.0, 0, 0.5, 0.25);
        let host = |p: u8| {
            let x = (f32::from(p) / 255.0 - 0.5) / 0.25;
            (x / (4.0 / 255.0)).round().clamp(-128.0, 127.0) as i8
        };
        for p in [0u8, 1, 100, 127, 128, 200, 255] {
            assert_eq!(lut[usize::from(p)], host(p), "pixel {p}");
        }
        assert!(
            lut[0] <= -127 && lut[255] == 127,
            "{:?}",
            (lut[0], lut[255])
        );
    }

    #[test]
    fn blob_normalisation_is_spread_over_the_channels() {
        assert_eq!(per_channel("mean", None, 0.0, 3).unwrap(), vec![0.0; 3]);
        assert_eq!(
            per_channel("std", Some("0.5"), 1.0, 3).unwrap(),
            vec![0.5; 3]
        );
        assert_eq!(
            per_channel("mean", Some("0.1, 0.2,0.3"), 0.0, 3).unwrap(),
            vec![0.1, 0.2, 0.3]
        );
        let err = per_channel("mean", Some("0.1,0.2"), 0.0, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mean=0.1,0.2") && err.contains("3 input channels"),
            "{err}"
        );
        let err = per_channel("std", Some("x"), 1.0, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a comma-separated list"), "{err}");
    }

    #[test]
    fn other_input_sizes_are_cut_from_the_pixel_stream_unlabeled() {
        let pixels: Vec<u8> = (0..2 * IMAGE_LEN).map(|i| (i % 256) as u8).collect();
        let images = fashion_mnist(pixels, vec![1, 2]);
        let (inputs, labels) = model_inputs(&images, [10, 20, 5]).expect("inputs");
        assert_eq!(labels, vec![NO_LABEL, NO_LABEL]);
        assert_eq!(inputs.len(), 2000);
        assert_eq!(inputs[1000], (1000 % 256) as u8);
        let (same, labels) = model_inputs(&images, [SIDE, SIDE, 1]).expect("inputs");
        assert_eq!((same, labels), (images.pixels.clone(), vec![1, 2]));
    }

    #[test]
    fn folder_images_of_another_shape_are_refused_with_both_shapes() {
        let images = TestImages {
            pixels: vec![0; 2 * 4 * 3],
            labels: vec![0],
            shape: [2, 4, 3],
            origin: Origin::Folder(PathBuf::from("imgs")),
            sources: vec![],
        };
        let err = model_inputs(&images, [4, 2, 3])
            .expect_err("shape")
            .to_string();
        assert!(
            err.contains("4x2x3") && err.contains("2x4x3") && err.contains("imgs"),
            "{err}"
        );
        assert!(model_inputs(&images, [2, 4, 3]).is_ok());
    }

    #[test]
    fn garbage_is_rejected_before_any_run() {
        let images = fashion_mnist(vec![0; IMAGE_LEN], vec![0]);
        assert!(matches!(
            compute(b"not a blob", &images),
            Err(Error::Core(_))
        ));
    }
}
