//! V4L2 camera frames for `cbam run --camera /dev/videoN` (USB webcams, and the Pi camera
//! through its V4L2 compatibility path), through the `v4l` crate when built with the
//! `camera` feature.
//!
//! MJPEG is preferred over YUYV: at webcam resolutions it fits USB 2 bandwidth at full frame
//! rate, and one JPEG decode per frame is cheap next to the model. The format conversions
//! live outside the feature so they are tested on machines without a camera.

// Without the `camera` feature only the device checks are reachable; the conversions stay
// compiled (and tested) so the feature build cannot rot unnoticed.
#![cfg_attr(not(feature = "camera"), allow(dead_code))]

use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};

use crate::frames::{yuv_to_rgb, Next};

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error(
        "no camera at {}: the device does not exist; list cameras with `ls /dev/video*` or \
         `v4l2-ctl --list-devices` (on a Pi camera module, enable it and use the \
         libcamera V4L2 device)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "{} is not accessible ({source}); add your user to the `video` group \
         (`sudo usermod -aG video $USER`, then log in again)",
        path.display()
    )]
    Permission {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is busy: another program is capturing from it; close it and retry", path.display())]
    Busy { path: PathBuf },
    #[error("{} is not a V4L2 video capture device ({why})", path.display())]
    NotCapture { path: PathBuf, why: String },
    #[error(
        "{} offers neither MJPEG nor YUYV (it offers: {offered}); cbam run reads only these two",
        path.display()
    )]
    NoUsableFormat { path: PathBuf, offered: String },
    #[error("{}: {what} failed: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[cfg(not(feature = "camera"))]
    #[error(
        "this cbam was built without camera support; rebuild with \
         `cargo build --release -p cbam-cli --features camera` (or scripts/pi-build.sh)"
    )]
    NotBuilt,
}

/// The pixel formats we negotiate, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    pub const PREFERENCE: [PixelFormat; 2] = [PixelFormat::Mjpeg, PixelFormat::Yuyv];

    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
        }
    }

    /// The first preferred format among the device's `offered` fourccs.
    pub fn negotiate(offered: &[[u8; 4]]) -> Option<PixelFormat> {
        Self::PREFERENCE
            .into_iter()
            .find(|f| offered.contains(&f.fourcc()))
    }

    /// One captured buffer (`bytesused` long) as an image.
    pub fn decode(self, data: &[u8], width: usize, height: usize) -> Result<DynamicImage, String> {
        match self {
            PixelFormat::Mjpeg => {
                image::load_from_memory_with_format(data, image::ImageFormat::Jpeg)
                    .map_err(|e| format!("bad MJPEG frame: {e}"))
            }
            PixelFormat::Yuyv => yuyv_to_rgb(data, width, height).map(DynamicImage::ImageRgb8),
        }
    }
}

/// Packed YUYV 4:2:2 (`Y0 U Y1 V` per two pixels) to RGB.
pub fn yuyv_to_rgb(data: &[u8], width: usize, height: usize) -> Result<RgbImage, String> {
    if width == 0 || height == 0 {
        return Err(format!(
            "the camera reported an empty {width}x{height} frame"
        ));
    }
    let stride = width.div_ceil(2) * 4;
    let needed = stride * height;
    if data.len() < needed {
        return Err(format!(
            "short YUYV frame: {} bytes for {width}x{height} (needs {needed})",
            data.len()
        ));
    }
    let mut rgb = RgbImage::new(width as u32, height as u32);
    for (y, row) in data.chunks_exact(stride).take(height).enumerate() {
        for (pair, px) in row.chunks_exact(4).enumerate() {
            let &[y0, u, y1, v] = px else { continue };
            for (dx, luma) in [(0, y0), (1, y1)] {
                let x = pair * 2 + dx;
                if x < width {
                    rgb.put_pixel(x as u32, y as u32, image::Rgb(yuv_to_rgb(luma, u, v)));
                }
            }
        }
    }
    Ok(rgb)
}

/// Checks done before any V4L2 call, so a missing or forbidden device gets a clear message
/// whether or not camera support is built in.
pub fn check_device(path: &Path) -> Result<(), CameraError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(classify_open_error(path, e)),
    }
}

fn classify_open_error(path: &Path, e: std::io::Error) -> CameraError {
    match e.kind() {
        std::io::ErrorKind::NotFound => CameraError::Missing {
            path: path.to_path_buf(),
        },
        std::io::ErrorKind::PermissionDenied => CameraError::Permission {
            path: path.to_path_buf(),
            source: e,
        },
        _ if e.raw_os_error() == Some(libc_ebusy()) => CameraError::Busy {
            path: path.to_path_buf(),
        },
        _ => CameraError::Io {
            path: path.to_path_buf(),
            what: "open",
            source: e,
        },
    }
}

/// `EBUSY` is 16 on every Linux architecture.
const fn libc_ebusy() -> i32 {
    16
}

pub use capture::Camera;

#[cfg(feature = "camera")]
mod capture {
    use super::*;
    use crate::frames::Frame;
    use v4l::buffer::Type;
    use v4l::io::mmap::Stream;
    use v4l::io::traits::CaptureStream;
    use v4l::video::Capture;
    use v4l::{Device, FourCC};

    const WIDTH: u32 = 640;
    const HEIGHT: u32 = 480;
    const BUFFERS: u32 = 4;
    /// A camera that sends nothing for this long is treated as gone.
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

    pub struct Camera {
        path: PathBuf,
        format: PixelFormat,
        width: usize,
        height: usize,
        index: usize,
        stream: Stream<'static>,
        /// Kept open for the stream's lifetime.
        _device: Device,
    }

    impl Camera {
        pub fn open(path: &Path) -> Result<Self, CameraError> {
            check_device(path)?;
            let io = |what: &'static str| {
                let path = path.to_path_buf();
                move |source: std::io::Error| classify_v4l_error(&path, what, source)
            };
            let device = Device::with_path(path).map_err(io("open"))?;
            let caps = device.query_caps().map_err(|e| CameraError::NotCapture {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
            if !caps
                .capabilities
                .contains(v4l::capability::Flags::VIDEO_CAPTURE)
            {
                return Err(CameraError::NotCapture {
                    path: path.to_path_buf(),
                    why: format!("{} has no video capture capability", caps.card),
                });
            }
            let offered: Vec<[u8; 4]> = device
                .enum_formats()
                .map_err(io("listing formats"))?
                .iter()
                .map(|d| d.fourcc.repr)
                .collect();
            let format =
                PixelFormat::negotiate(&offered).ok_or_else(|| CameraError::NoUsableFormat {
                    path: path.to_path_buf(),
                    offered: offered
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let mut wanted = device.format().map_err(io("reading the format"))?;
            wanted.width = WIDTH;
            wanted.height = HEIGHT;
            wanted.fourcc = FourCC::new(&format.fourcc());
            // The driver may pick another size; we use whatever it answers.
            let got = device
                .set_format(&wanted)
                .map_err(io("setting the format"))?;
            let format = PixelFormat::negotiate(&[got.fourcc.repr]).ok_or_else(|| {
                CameraError::NoUsableFormat {
                    path: path.to_path_buf(),
                    offered: String::from_utf8_lossy(&got.fourcc.repr).into_owned(),
                }
            })?;
            let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
                .map_err(io("starting capture"))?;
            stream.set_timeout(TIMEOUT);
            Ok(Camera {
                path: path.to_path_buf(),
                format,
                width: got.width as usize,
                height: got.height as usize,
                index: 0,
                stream,
                _device: device,
            })
        }

        pub fn describe(&self) -> String {
            format!(
                "{} {}x{} {:?}",
                self.path.display(),
                self.width,
                self.height,
                self.format
            )
        }

        /// The next frame. A bad frame is skipped; a device that errors or stops sending
        /// ends the run cleanly (the camera was unplugged).
        pub fn next_frame(&mut self) -> Next {
            let (data, meta) = match self.stream.next() {
                Ok(item) => item,
                Err(e) => {
                    return Next::EndedEarly(format!(
                        "camera {} stopped delivering frames after {} frame(s): {e}",
                        self.path.display(),
                        self.index
                    ))
                }
            };
            let used = data.get(..meta.bytesused as usize).unwrap_or(data);
            let source = format!("{}#{}", self.path.display(), self.index);
            self.index += 1;
            match self.format.decode(used, self.width, self.height) {
                Ok(image) => Next::Frame(Frame {
                    source,
                    image,
                    truth: None,
                }),
                Err(why) => Next::Skipped(format!("{source}: {why}")),
            }
        }
    }

    fn classify_v4l_error(path: &Path, what: &'static str, e: std::io::Error) -> CameraError {
        if e.raw_os_error() == Some(libc_ebusy()) {
            return CameraError::Busy {
                path: path.to_path_buf(),
            };
        }
        if what == "open" {
            return classify_open_error(path, e);
        }
        CameraError::Io {
            path: path.to_path_buf(),
            what,
            source: e,
        }
    }
}

#[cfg(not(feature = "camera"))]
mod capture {
    use super::*;

    /// Stand-in when V4L2 support is not compiled in: the device checks still run, so the
    /// user learns first about a wrong path, then how to get camera support.
    pub enum Camera {}

    impl Camera {
        pub fn open(path: &Path) -> Result<Self, CameraError> {
            check_device(path)?;
            Err(CameraError::NotBuilt)
        }

        pub fn describe(&self) -> String {
            match *self {}
        }

        pub fn next_frame(&mut self) -> Next {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mjpeg_is_preferred_then_yuyv() {
        assert_eq!(
            PixelFormat::negotiate(&[*b"YUYV", *b"MJPG"]),
            Some(PixelFormat::Mjpeg)
        );
        assert_eq!(PixelFormat::negotiate(&[*b"YUYV"]), Some(PixelFormat::Yuyv));
        assert_eq!(PixelFormat::negotiate(&[*b"H264", *b"NV12"]), None);
    }

    #[test]
    fn yuyv_pairs_share_chroma() {
        // Two pixels: dark and bright grey, neutral chroma.
        let rgb = yuyv_to_rgb(&[16, 128, 235, 128], 2, 1).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [16, 16, 16]);
        assert_eq!(rgb.get_pixel(1, 0).0, [235, 235, 235]);
        assert!(yuyv_to_rgb(&[0; 7], 2, 2)
            .unwrap_err()
            .contains("short YUYV"));
    }

    #[test]
    fn mjpeg_frames_decode_and_garbage_is_reported() {
        let img = RgbImage::from_pixel(8, 8, image::Rgb([200, 30, 30]));
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let back = PixelFormat::Mjpeg.decode(&jpeg, 8, 8).unwrap().to_rgb8();
        let [r, g, b] = back.get_pixel(4, 4).0;
        assert!(r > 150 && g < 80 && b < 80, "{r} {g} {b}");
        assert!(PixelFormat::Mjpeg.decode(b"\xff\xd8junk", 8, 8).is_err());
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let err = Camera::open(Path::new("/dev/video-cbam-none"))
            .err()
            .unwrap();
        assert!(matches!(err, CameraError::Missing { .. }));
        assert!(err.to_string().contains("v4l2-ctl --list-devices"));
    }

    #[test]
    fn a_file_that_is_not_a_camera_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = Camera::open(file.path()).err().unwrap();
        assert!(!matches!(err, CameraError::Missing { .. }), "{err}");
    }
}
