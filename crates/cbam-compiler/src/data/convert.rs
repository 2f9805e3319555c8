//! From 8-bit pixels to the model's float input: the crop and resize and channel order of
//! [`Preprocess`], then the model's pixel normalisation `(pixel / 255 - mean[c]) / std[c]`.

use image::{imageops::FilterType, DynamicImage};

use super::preprocess::{ChannelOrder, Preprocess};
use super::{DataError, Sample};
use crate::ir::Graph;

/// What a sample must look like to be the model's input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Per-channel mean and std of the normalisation, one entry per channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// How pictures of other sizes and channel orders become the input picture.
    pub preprocess: Preprocess,
}

/// A picture fitted to the model input.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedImage {
    /// `[C, H, W]` 8-bit pixels, channels in the model's order.
    pub pixels_chw: Vec<u8>,
    /// The same picture at model resolution as RGB (grey for a 1-channel model), for
    /// showing it.
    pub rgb: image::RgbImage,
    /// Set when the picture was cropped or resized: from what to what.
    pub note: Option<String>,
}

impl InputSpec {
    /// `mean`/`std` may be empty (plain `pixel / 255`), one value for every channel, or one
    /// value per channel.
    pub fn new(shape: [usize; 3], mean: &[f32], std: &[f32]) -> Result<Self, DataError> {
        let channels = shape[0];
        let mean = per_channel(mean, channels, 0.0, "mean")?;
        let std = per_channel(std, channels, 1.0, "std")?;
        if let Some(why) = normalisation_problem(&mean, &std) {
            return Err(DataError::Meta { why });
        }
        Ok(InputSpec {
            shape,
            mean,
            std,
            preprocess: Preprocess::default(),
        })
    }

    pub fn with_preprocess(self, preprocess: Preprocess) -> Self {
        InputSpec { preprocess, ..self }
    }

    /// The input shape and `cbam.mean`/`cbam.std` metadata of an imported model.
    pub fn from_graph(graph: &Graph) -> Result<Self, DataError> {
        let shape = graph
            .tensors
            .get(graph.input)
            .map(|t| t.shape.clone())
            .unwrap_or_default();
        let chw: [usize; 3] =
            shape
                .as_slice()
                .try_into()
                .map_err(|_| DataError::NotAnImageModel {
                    shape: shape.clone(),
                })?;
        InputSpec::new(chw, &graph.meta.mean, &graph.meta.std)
    }

    /// Whether every channel has its own mean or std. Such a normalisation cannot live in
    /// one input scale, so a blob with raw-pixel input takes the pixels themselves.
    pub fn is_per_channel(&self) -> bool {
        let differs = |v: &[f32]| v.windows(2).any(|p| p[0] != p[1]);
        differs(&self.mean) || differs(&self.std)
    }

    /// The 8-bit pixels a normalised `[C, H, W]` input stands for (rounded and clamped:
    /// exactly what a camera would have delivered for it).
    pub fn pixels_of(&self, input: &[f32]) -> Vec<u8> {
        let plane = self.height() * self.width();
        input
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let c = i.checked_div(plane).unwrap_or(0);
                let mean = self.mean.get(c).copied().unwrap_or(0.0);
                let std = self.std.get(c).copied().unwrap_or(1.0);
                let pixel = ((x * std + mean) * 255.0).round();
                if pixel.is_nan() {
                    0
                } else {
                    pixel.clamp(0.0, 255.0) as u8
                }
            })
            .collect()
    }

    pub fn channels(&self) -> usize {
        self.shape[0]
    }

    pub fn height(&self) -> usize {
        self.shape[1]
    }

    pub fn width(&self) -> usize {
        self.shape[2]
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A sample from pixels already in the model's layout `[C, H, W]`.
    pub fn sample_from_chw(&self, pixels: Vec<u8>) -> Sample {
        let plane = self.height() * self.width();
        let input = pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let c = i.checked_div(plane).unwrap_or(0);
                let mean = self.mean.get(c).copied().unwrap_or(0.0);
                let std = self.std.get(c).copied().unwrap_or(1.0);
                (f32::from(p) / 255.0 - mean) / std
            })
            .collect();
        Sample {
            input,
            pixels: Some(pixels),
            label: None,
        }
    }

    /// A picture of any size and colour type as the model's input picture: the window of
    /// [`Preprocess::resize`] scaled to the input size (bilinear), in the model's channels
    /// and channel order.
    pub fn fit_image(&self, image: &DynamicImage) -> Result<FittedImage, DataError> {
        let channels = self.channels();
        if channels != 1 && channels != 3 {
            return Err(DataError::Channels { channels });
        }
        let (w, h) = (self.width(), self.height());
        let (iw, ih) = (image.width() as usize, image.height() as usize);
        let (x, y, cw, ch) = self.preprocess.resize.window(iw, ih, w, h);
        let mut note = None;
        let rgb = if (x, y, cw, ch, iw, ih) == (0, 0, w, h, w, h) {
            image.to_rgb8()
        } else {
            let cropped = (cw, ch) != (iw, ih);
            note = Some(if cropped {
                format!(
                    "{iw}x{ih} centre-cropped to {cw}x{ch} and resized to the model input \
                     {w}x{h} (bilinear)"
                )
            } else {
                format!("{iw}x{ih} resized to the model input {w}x{h} (bilinear)")
            });
            image
                .crop_imm(x as u32, y as u32, cw as u32, ch as u32)
                .resize_exact(w as u32, h as u32, FilterType::Triangle)
                .to_rgb8()
        };
        let pixels_chw = if channels == 1 {
            DynamicImage::ImageRgb8(rgb.clone()).to_luma8().into_raw()
        } else {
            let mut planes = hwc_to_chw(rgb.as_raw(), h * w, 3);
            if self.preprocess.order == ChannelOrder::Bgr {
                let plane = h * w;
                let (r, rest) = planes.split_at_mut(plane);
                r.swap_with_slice(&mut rest[plane..]);
            }
            planes
        };
        let rgb = if channels == 1 {
            DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(w as u32, h as u32, pixels_chw.clone())
                    .unwrap_or_default(),
            )
            .to_rgb8()
        } else {
            rgb
        };
        Ok(FittedImage {
            pixels_chw,
            rgb,
            note,
        })
    }

    /// A sample from a decoded image of any size and colour type, and the note saying how
    /// it was fitted, if it had to be.
    pub(crate) fn sample_from_image(
        &self,
        image: DynamicImage,
    ) -> Result<(Sample, Option<String>), DataError> {
        let fitted = self.fit_image(&image)?;
        Ok((self.sample_from_chw(fitted.pixels_chw), fitted.note))
    }

    /// A sample from a grayscale `h x w` image, the form IDX and `.u8` files store.
    pub(crate) fn sample_from_gray(
        &self,
        pixels: Vec<u8>,
        h: usize,
        w: usize,
    ) -> Result<(Sample, Option<String>), DataError> {
        if self.channels() == 1 && h == self.height() && w == self.width() {
            return Ok((self.sample_from_chw(pixels), None));
        }
        let gray = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
            let at = y as usize * w + x as usize;
            image::Luma([pixels.get(at).copied().unwrap_or(0)])
        });
        self.sample_from_image(DynamicImage::ImageLuma8(gray))
    }

    /// The note a dataset carries when `count` images were fitted as `first` says.
    pub(crate) fn resize_note(count: usize, first: &str) -> String {
        format!("{count} image(s) of {first}")
    }
}

/// What is wrong with a pixel normalisation `(pixel / 255 - mean) / std`, if anything:
/// every mean a number, every std a normal positive number, and every channel's pixels
/// 0 and 255 finite after it (a denormal std sends them to infinity). One value of either
/// applies to every channel.
pub(crate) fn normalisation_problem(mean: &[f32], std: &[f32]) -> Option<String> {
    for i in 0..mean.len().max(std.len()) {
        let m = mean.get(i).or(mean.first()).copied().unwrap_or(0.0);
        let s = std.get(i).or(std.first()).copied().unwrap_or(1.0);
        if !m.is_finite() {
            return Some(format!("mean {m} is not a number"));
        }
        if !(s.is_normal() && s > 0.0) {
            return Some(format!("std {s} is not a positive normal number"));
        }
        if !((0.0 - m) / s).is_finite() || !((1.0 - m) / s).is_finite() {
            return Some(format!(
                "mean {m} and std {s} send pixel values to infinity"
            ));
        }
    }
    None
}

fn per_channel(
    values: &[f32],
    channels: usize,
    default: f32,
    what: &str,
) -> Result<Vec<f32>, DataError> {
    match values.len() {
        0 => Ok(vec![default; channels]),
        1 => Ok(vec![values[0]; channels]),
        n if n == channels => Ok(values.to_vec()),
        n => Err(DataError::Meta {
            why: format!("the model's cbam.{what} has {n} values for {channels} input channels"),
        }),
    }
}

fn hwc_to_chw(hwc: &[u8], plane: usize, channels: usize) -> Vec<u8> {
    let mut chw = vec![0u8; hwc.len()];
    for (i, &v) in hwc.iter().enumerate() {
        let (p, c) = (i / channels, i % channels);
        if let Some(dst) = chw.get_mut(c * plane + p) {
            *dst = v;
        }
    }
    chw
}

#[cfg(test)]
mod tests {
    use super::super::preprocess::Resize;
    use super::*;

    #[test]
    fn normalises_with_per_channel_mean_and_std() {
        let spec = InputSpec::new([2, 1, 2], &[0.5, 0.0], &[0.5, 2.0]).unwrap();
        let s = spec.sample_from_chw(vec![255, 0, 255, 51]);
        assert_eq!(s.input, vec![1.0, -1.0, 0.5, 0.1]);
        assert_eq!(s.pixels, Some(vec![255, 0, 255, 51]));
    }

    #[test]
    fn empty_meta_means_pixel_over_255() {
        let spec = InputSpec::new([1, 1, 1], &[], &[]).unwrap();
        assert_eq!(spec.sample_from_chw(vec![255]).input, vec![1.0]);
    }

    #[test]
    fn rejects_meta_of_the_wrong_length_and_zero_std() {
        assert!(InputSpec::new([1, 2, 2], &[0.1, 0.2, 0.3], &[]).is_err());
        assert!(InputSpec::new([1, 2, 2], &[], &[0.0]).is_err());
    }

    #[test]
    fn rejects_a_nan_mean_and_a_denormal_or_tiny_std() {
        for (mean, std) in [
            (f32::NAN, 0.5),
            (f32::INFINITY, 0.5),
            (0.5, 1e-40),
            (0.5, f32::NAN),
        ] {
            let err = InputSpec::new([1, 2, 2], &[mean], &[std]).unwrap_err();
            assert!(matches!(err, DataError::Meta { .. }), "{mean} {std}: {err}");
        }
        assert!(InputSpec::new([3, 2, 2], &[0.485, 0.456, 0.406], &[0.229]).is_ok());
    }

    #[test]
    fn rgb_image_becomes_planar_and_is_resized_when_needed() {
        let spec = InputSpec::new([3, 1, 2], &[], &[]).unwrap();
        let rgb = image::RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let (s, note) = spec
            .sample_from_image(DynamicImage::ImageRgb8(rgb))
            .unwrap();
        assert_eq!(note, None);
        assert_eq!(s.pixels, Some(vec![1, 4, 2, 5, 3, 6]));

        let big = image::GrayImage::from_pixel(4, 2, image::Luma([200]));
        let (s, note) = spec
            .sample_from_image(DynamicImage::ImageLuma8(big))
            .unwrap();
        assert_eq!(
            note.as_deref(),
            Some("4x2 resized to the model input 2x1 (bilinear)")
        );
        assert_eq!(s.pixels, Some(vec![200; 6]));
    }

    /// A 4x2 picture: its left half red, its right half blue.
    fn red_left_blue_right() -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(4, 2, |x, _| {
            if x < 2 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        }))
    }

    #[test]
    fn bgr_models_get_the_blue_plane_first() {
        let spec = InputSpec::new([3, 2, 4], &[], &[]).unwrap();
        let rgb = spec.fit_image(&red_left_blue_right()).unwrap();
        let bgr = spec
            .with_preprocess(Preprocess {
                order: ChannelOrder::Bgr,
                ..Preprocess::default()
            })
            .fit_image(&red_left_blue_right())
            .unwrap();
        let (r, b) = (&rgb.pixels_chw[..8], &rgb.pixels_chw[16..]);
        assert_eq!(r, [255, 255, 0, 0, 255, 255, 0, 0]);
        assert_eq!(&bgr.pixels_chw[..8], b);
        assert_eq!(&bgr.pixels_chw[16..], r);
        assert_eq!(bgr.rgb, rgb.rgb, "the picture shown stays RGB");
    }

    #[test]
    fn crop_keeps_the_centre_and_stretch_keeps_everything() {
        let square = InputSpec::new([3, 2, 2], &[], &[]).unwrap();
        let cropped = square.fit_image(&red_left_blue_right()).unwrap();
        assert!(cropped.note.unwrap().contains("centre-cropped to 2x2"));
        // The centre 2x2 window straddles the colours: one red and one blue column.
        assert_eq!(&cropped.pixels_chw[..4], [255, 0, 255, 0]);
        let stretched = square
            .clone()
            .with_preprocess(Preprocess {
                resize: Resize::Stretch,
                ..Preprocess::default()
            })
            .fit_image(&red_left_blue_right())
            .unwrap();
        assert!(!stretched.note.unwrap().contains("cropped"));
        let red = &stretched.pixels_chw[..4];
        assert!(red[0] > 200 && red[1] < 55, "{red:?}");
        // Half of each side of the centred square: one pixel, the last red column.
        let quarter = square
            .with_preprocess(Preprocess {
                resize: Resize::Crop { fraction: 0.5 },
                ..Preprocess::default()
            })
            .fit_image(&red_left_blue_right())
            .unwrap();
        assert_eq!(
            quarter.note.unwrap(),
            "4x2 centre-cropped to 1x1 and resized to the model input 2x2 (bilinear)"
        );
        assert_eq!(&quarter.pixels_chw[..4], [255; 4]);
    }

    #[test]
    fn gray_source_for_an_rgb_model_repeats_the_channel() {
        let spec = InputSpec::new([3, 1, 1], &[], &[]).unwrap();
        let (s, note) = spec.sample_from_gray(vec![7], 1, 1).unwrap();
        assert_eq!(note, None);
        assert_eq!(s.pixels, Some(vec![7, 7, 7]));
    }

    #[test]
    fn four_channel_models_cannot_take_images() {
        let spec = InputSpec::new([4, 1, 1], &[], &[]).unwrap();
        let err = spec.sample_from_gray(vec![7], 1, 1).unwrap_err();
        assert!(matches!(err, DataError::Channels { channels: 4 }));
    }
}
