//! How a picture of any size becomes the model's input picture: which part of it is kept,
//! and the order of its colour channels. The normalisation after it lives in
//! [`super::InputSpec`].
//!
//! Models trained on torchvision or timm pipelines expect the evaluation transform they
//! were validated with (resize the shorter side, then a centre crop of the model's size,
//! e.g. timm's `crop_pct` 0.875), and models converted from Caffe or OpenCV code expect BGR.
//! Both are recorded in the blob so `run`, `eval` and `attention` feed frames the way
//! `quantize` fed the calibration images.

use std::fmt;
use std::str::FromStr;

/// The order of the three colour planes of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

impl FromStr for ChannelOrder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rgb" => Ok(ChannelOrder::Rgb),
            "bgr" => Ok(ChannelOrder::Bgr),
            _ => Err(format!("channel order {s:?} is neither rgb nor bgr")),
        }
    }
}

impl fmt::Display for ChannelOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelOrder::Rgb => "rgb",
            ChannelOrder::Bgr => "bgr",
        })
    }
}

/// Which part of a picture is scaled to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// The whole picture, its aspect ratio given up.
    Stretch,
    /// The centred window with the model's aspect ratio, `fraction` of the largest such
    /// window on each side (1: all of the shorter side; timm's default `crop_pct` is 0.875).
    Crop { fraction: f32 },
}

impl Default for Resize {
    fn default() -> Self {
        Resize::Crop { fraction: 1.0 }
    }
}

impl Resize {
    /// The window `(x, y, width, height)` of an `iw x ih` picture that becomes an `w x h`
    /// model input: never empty, always inside the picture.
    pub fn window(self, iw: usize, ih: usize, w: usize, h: usize) -> (usize, usize, usize, usize) {
        let fraction = match self {
            Resize::Stretch => return (0, 0, iw, ih),
            Resize::Crop { fraction } => f64::from(fraction),
        };
        // The largest window with the aspect ratio w : h, compared without floats: the
        // wider of the two loses columns, the taller rows.
        let (cw, ch) = if iw * h > ih * w {
            (ih * w / h.max(1), ih)
        } else {
            (iw, iw * h / w.max(1))
        };
        let scaled = |n: usize| ((n as f64 * fraction).round() as usize).clamp(1, n.max(1));
        let (cw, ch) = (scaled(cw).min(iw.max(1)), scaled(ch).min(ih.max(1)));
        (iw.saturating_sub(cw) / 2, ih.saturating_sub(ch) / 2, cw, ch)
    }
}

impl FromStr for Resize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let (kind, arg) = match lower.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (lower.as_str(), None),
        };
        match (kind, arg) {
            ("stretch", None) => Ok(Resize::Stretch),
            ("crop", None) => Ok(Resize::default()),
            ("crop", Some(arg)) => match arg.parse::<f32>() {
                Ok(fraction) if fraction > 0.0 && fraction <= 1.0 => Ok(Resize::Crop { fraction }),
                _ => Err(format!(
                    "crop fraction {arg:?} is not a number in (0, 1]; e.g. crop:0.875"
                )),
            },
            _ => Err(format!(
                "resize policy {s:?} is not one of stretch, crop, crop:FRACTION"
            )),
        }
    }
}

impl fmt::Display for Resize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resize::Stretch => f.write_str("stretch"),
            Resize::Crop { fraction } if *fraction == 1.0 => f.write_str("crop"),
            Resize::Crop { fraction } => write!(f, "crop:{fraction}"),
        }
    }
}

/// Both choices together, as the CLI takes them and the blob records them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Preprocess {
    pub order: ChannelOrder,
    pub resize: Resize,
}

impl Preprocess {
    pub fn is_default(&self) -> bool {
        *self == Preprocess::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_keeps_the_middle_of_the_longer_side() {
        let crop = Resize::default();
        assert_eq!(crop.window(640, 480, 28, 28), (80, 0, 480, 480));
        assert_eq!(crop.window(480, 640, 28, 28), (0, 80, 480, 480));
        assert_eq!(crop.window(640, 480, 64, 48), (0, 0, 640, 480));
        assert_eq!(Resize::Stretch.window(640, 480, 28, 28), (0, 0, 640, 480));
    }

    #[test]
    fn a_crop_fraction_shrinks_the_window_around_the_centre() {
        let timm = Resize::Crop { fraction: 0.875 };
        assert_eq!(timm.window(256, 256, 224, 224), (16, 16, 224, 224));
        assert_eq!(timm.window(640, 480, 96, 96), (110, 30, 420, 420));
    }

    #[test]
    fn windows_are_never_empty_nor_outside() {
        for (iw, ih, w, h) in [
            (1, 1, 224, 224),
            (1, 1000, 3, 2),
            (1000, 1, 2, 3),
            (0, 5, 1, 1),
        ] {
            for r in [
                Resize::Stretch,
                Resize::default(),
                Resize::Crop { fraction: 0.01 },
            ] {
                let (x, y, cw, ch) = r.window(iw, ih, w, h);
                assert!(x + cw <= iw.max(1) && y + ch <= ih.max(1), "{r} {iw}x{ih}");
                assert!(cw >= 1 || iw == 0, "{r} {iw}x{ih}");
                assert!(ch >= 1, "{r} {iw}x{ih}");
            }
        }
    }

    #[test]
    fn policies_parse_and_print_back() {
        for text in ["stretch", "crop", "crop:0.875"] {
            let r: Resize = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
        }
        assert_eq!("CROP:1".parse::<Resize>().unwrap(), Resize::default());
        for bad in [
            "crop:0",
            "crop:1.5",
            "crop:nan",
            "crop:",
            "fill",
            "stretch:1",
        ] {
            assert!(bad.parse::<Resize>().is_err(), "{bad}");
        }
        assert_eq!("BGR".parse::<ChannelOrder>().unwrap(), ChannelOrder::Bgr);
        assert!("rgba".parse::<ChannelOrder>().is_err());
    }
}
