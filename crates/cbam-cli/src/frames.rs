//! Frames for `cbam run` from files: one image, a directory of images, or a Y4M video; and
//! the conversion of any frame to the model's input (centre crop, resize, channels).
//!
//! Policy on bad input: a single image that cannot be decoded is an error (there is nothing
//! else to run); an undecodable image inside a directory is skipped with a warning so one bad
//! file does not stop a long run; a video whose header is malformed is an error, and a video
//! cut off mid-frame ends the run after the last whole frame, with a warning.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use cbam_compiler::data::{DataError, InputSpec};
use image::{DynamicImage, GrayImage, RgbImage};

/// One frame as decoded, before it is fitted to the model.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Where it came from: a file name, `video.y4m#12`, `/dev/video0#3`.
    pub source: String,
    pub image: DynamicImage,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot decode the image ({why}); pass a PNG or JPEG file", path.display())]
    Undecodable { path: PathBuf, why: String },
    #[error("{}: no .png/.jpg/.jpeg images in this directory", path.display())]
    EmptyDirectory { path: PathBuf },
    #[error(
        "{}: not an input cbam run can read; pass a PNG/JPEG image, a directory of them or a \
         .y4m video (convert others with `ffmpeg -i in.mp4 out.y4m`)",
        path.display()
    )]
    UnknownKind { path: PathBuf },
    #[error("{}: corrupt Y4M video: {why}", path.display())]
    CorruptVideo { path: PathBuf, why: String },
}

/// Where frames come from, opened from `--input PATH`.
pub enum FileFrames {
    Images {
        paths: std::vec::IntoIter<PathBuf>,
        /// Whether a bad image is skipped (directory) or fatal (single image).
        skip_bad: bool,
    },
    Video(Y4mReader),
}

/// What the caller should do with one item of a frame source.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// A frame was skipped; the string says which and why.
    Skipped(String),
    /// The source ended early; the string says why (e.g. a truncated video).
    EndedEarly(String),
    End,
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

impl FileFrames {
    pub fn open(path: &Path) -> Result<Self, FrameError> {
        let io = |source| FrameError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image_name(p))
                .collect();
            if paths.is_empty() {
                return Err(FrameError::EmptyDirectory {
                    path: path.to_path_buf(),
                });
            }
            paths.sort();
            return Ok(FileFrames::Images {
                paths: paths.into_iter(),
                skip_bad: true,
            });
        }
        let is_y4m = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
        if is_y4m {
            return Ok(FileFrames::Video(Y4mReader::open(path)?));
        }
        if is_image_name(path) {
            return Ok(FileFrames::Images {
                paths: vec![path.to_path_buf()].into_iter(),
                skip_bad: false,
            });
        }
        Err(FrameError::UnknownKind {
            path: path.to_path_buf(),
        })
    }

    /// The files still to read: the images, or the video.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            FileFrames::Images { paths, .. } => paths.as_slice().to_vec(),
            FileFrames::Video(video) => vec![video.path.clone()],
        }
    }

    pub fn next_frame(&mut self) -> Result<Next, FrameError> {
        match self {
            FileFrames::Images { paths, skip_bad } => {
                let Some(path) = paths.next() else {
                    return Ok(Next::End);
                };
                match decode_image(&path) {
                    Ok(image) => Ok(Next::Frame(Frame {
                        source: path.display().to_string(),
                        image,
                    })),
                    Err(e) if *skip_bad => Ok(Next::Skipped(e.to_string())),
                    Err(e) => Err(e),
                }
            }
            FileFrames::Video(video) => video.next_frame(),
        }
    }
}

fn decode_image(path: &Path) -> Result<DynamicImage, FrameError> {
    // A FIFO would block the open; a device never ends.
    cbam_compiler::fsio::open_regular(path).map_err(|source| FrameError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = image::ImageReader::open(path)
        .map_err(|source| FrameError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| FrameError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    reader.decode().map_err(|e| FrameError::Undecodable {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Y4M (YUV4MPEG2), the uncompressed video format ffmpeg writes without extra libraries.
/// Only the luma plane and, for colour, the chroma planes of 4:2:0, 4:2:2 and 4:4:4 are read.
pub struct Y4mReader {
    path: PathBuf,
    reader: BufReader<File>,
    width: usize,
    height: usize,
    chroma: Chroma,
    index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chroma {
    Mono,
    /// Horizontal and vertical subsampling of the two chroma planes.
    Yuv {
        sx: usize,
        sy: usize,
    },
}

impl Chroma {
    fn parse(tag: &str) -> Option<Self> {
        match tag {
            "mono" => Some(Chroma::Mono),
            "444" => Some(Chroma::Yuv { sx: 1, sy: 1 }),
            "422" => Some(Chroma::Yuv { sx: 2, sy: 1 }),
            t if t.starts_with("420") => Some(Chroma::Yuv { sx: 2, sy: 2 }),
            _ => None,
        }
    }

    fn frame_len(self, width: usize, height: usize) -> usize {
        match self {
            Chroma::Mono => width * height,
            Chroma::Yuv { sx, sy } => width * height + 2 * width.div_ceil(sx) * height.div_ceil(sy),
        }
    }
}

const MAX_Y4M_SIDE: usize = 16384;

impl Y4mReader {
    pub fn open(path: &Path) -> Result<Self, FrameError> {
        let file = File::open(path).map_err(|source| FrameError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let corrupt = |why: String| FrameError::CorruptVideo {
            path: path.to_path_buf(),
            why,
        };
        let line = read_line(&mut reader, 4096).map_err(|e| corrupt(e.to_string()))?;
        let mut words = line.split(' ');
        if words.next() != Some("YUV4MPEG2") {
            return Err(corrupt("it does not start with YUV4MPEG2".into()));
        }
        let (mut width, mut height, mut chroma) = (0, 0, Chroma::Yuv { sx: 2, sy: 2 });
        for word in words {
            let (tag, value) = word.split_at_checked(1).unwrap_or((word, ""));
            match tag {
                "W" => width = value.parse().unwrap_or(0),
                "H" => height = value.parse().unwrap_or(0),
                "C" => {
                    chroma = Chroma::parse(value).ok_or_else(|| {
                        corrupt(format!("colour space C{value} is not supported"))
                    })?;
                }
                _ => {}
            }
        }
        if !(1..=MAX_Y4M_SIDE).contains(&width) || !(1..=MAX_Y4M_SIDE).contains(&height) {
            return Err(corrupt(format!(
                "frame size {width}x{height} is missing or out of range"
            )));
        }
        Ok(Y4mReader {
            path: path.to_path_buf(),
            reader,
            width,
            height,
            chroma,
            index: 0,
        })
    }

    fn next_frame(&mut self) -> Result<Next, FrameError> {
        let line = match read_line(&mut self.reader, 1024) {
            Ok(line) if line.is_empty() => return Ok(Next::End),
            Ok(line) => line,
            Err(e) => return Ok(Next::EndedEarly(self.truncated(&e.to_string()))),
        };
        if !line.starts_with("FRAME") {
            return Err(FrameError::CorruptVideo {
                path: self.path.clone(),
                why: format!("frame {} does not start with FRAME", self.index),
            });
        }
        let mut data = vec![0u8; self.chroma.frame_len(self.width, self.height)];
        if let Err(e) = self.reader.read_exact(&mut data) {
            return Ok(Next::EndedEarly(self.truncated(&e.to_string())));
        }
        let image = yuv_planes_to_image(&data, self.width, self.height, self.chroma);
        let source = format!("{}#{}", self.path.display(), self.index);
        self.index += 1;
        Ok(Next::Frame(Frame { source, image }))
    }

    fn truncated(&self, why: &str) -> String {
        format!(
            "{}: the video is cut off in frame {} ({why}); stopped after {} whole frame(s)",
            self.path.display(),
            self.index,
            self.index
        )
    }
}

/// One `\n`-terminated line without the newline; empty at end of file. Longer than `max`
/// bytes or not UTF-8 is an error, so a binary file cannot make us buffer it all.
fn read_line(reader: &mut impl BufRead, max: usize) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = reader.take(max as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(String::new());
    }
    if line.pop() != Some(b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "header line not terminated",
        ));
    }
    String::from_utf8(line)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "header is not text"))
}

fn yuv_planes_to_image(data: &[u8], width: usize, height: usize, chroma: Chroma) -> DynamicImage {
    let luma_len = width * height;
    let luma = data.get(..luma_len).unwrap_or_default();
    let Chroma::Yuv { sx, sy } = chroma else {
        let gray = GrayImage::from_fn(width as u32, height as u32, |x, y| {
            image::Luma([luma
                .get(y as usize * width + x as usize)
                .copied()
                .unwrap_or(0)])
        });
        return DynamicImage::ImageLuma8(gray);
    };
    let cw = width.div_ceil(sx);
    let plane = cw * height.div_ceil(sy);
    let u = data.get(luma_len..luma_len + plane).unwrap_or_default();
    let v = data.get(luma_len + plane..).unwrap_or_default();
    let rgb = RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let at = |p: &[u8], i: usize| p.get(i).copied().unwrap_or(128);
        let ci = (y / sy) * cw + x / sx;
        image::Rgb(yuv_to_rgb(at(luma, y * width + x), at(u, ci), at(v, ci)))
    });
    DynamicImage::ImageRgb8(rgb)
}

/// BT.601 full-range YCbCr to RGB, in integers (the JPEG/JFIF convention webcams use).
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let (y, u, v) = (i32::from(y), i32::from(u) - 128, i32::from(v) - 128);
    let clamp = |x: i32| x.clamp(0, 255) as u8;
    // Coefficients x 2^16: 1.402, 0.344136, 0.714136, 1.772; +2^15 rounds to nearest.
    let r = y + ((91881 * v + 32768) >> 16);
    let g = y - ((22554 * u + 46802 * v + 32768) >> 16);
    let b = y + ((116130 * u + 32768) >> 16);
    [clamp(r), clamp(g), clamp(b)]
}

/// A frame fitted to the model: `[C, H, W]` 8-bit pixels, and whether anything had to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub pixels_chw: Vec<u8>,
    /// The same crop as RGB at model resolution, for overlays.
    pub preview: RgbImage,
    /// Set when the frame was cropped or resized; says from what to what.
    pub note: Option<String>,
}

/// `image` as the input picture of the model `spec` describes (its crop or stretch, size,
/// channels and channel order). Frames only become 1 (grayscale) or 3 (colour) channels.
pub fn fit(image: &DynamicImage, spec: &InputSpec) -> Result<Fitted, String> {
    let fitted = spec.fit_image(image).map_err(|e| match e {
        DataError::Channels { channels } => format!(
            "the model takes {channels} input channels; camera and image frames can only \
             become 1 (grayscale) or 3 (RGB)"
        ),
        other => other.to_string(),
    })?;
    Ok(Fitted {
        pixels_chw: fitted.pixels_chw,
        preview: fitted.rgb,
        note: fitted.note.map(|n| format!("frames of {n}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_grey_stays_grey_and_primaries_come_out() {
        assert_eq!(yuv_to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(yuv_to_rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(255, 128, 128), [255, 255, 255]);
        // JFIF red (255, 0, 0) is Y 76, Cb 85, Cr 255.
        let [r, g, b] = yuv_to_rgb(76, 85, 255);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
    }

    fn spec(chw: [usize; 3]) -> InputSpec {
        InputSpec::new(chw, &[], &[]).unwrap()
    }

    #[test]
    fn fit_resizes_crops_and_says_so() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(56, 28, image::Luma([200])));
        let f = fit(&img, &spec([1, 28, 28])).unwrap();
        assert_eq!(f.pixels_chw, vec![200; 28 * 28]);
        let note = f.note.unwrap();
        assert!(note.contains("56x28 centre-cropped to 28x28"), "{note}");
        let same = DynamicImage::ImageLuma8(GrayImage::from_pixel(28, 28, image::Luma([7])));
        assert!(fit(&same, &spec([1, 28, 28])).unwrap().note.is_none());
        let err = fit(&same, &spec([4, 28, 28])).unwrap_err();
        assert!(err.contains("4 input channels"), "{err}");
    }

    #[test]
    fn rgb_frames_become_planar() {
        let rgb = RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let f = fit(&DynamicImage::ImageRgb8(rgb), &spec([3, 1, 2])).unwrap();
        assert_eq!(f.pixels_chw, vec![1, 4, 2, 5, 3, 6]);
    }

    fn write_y4m(dir: &Path, header: &str, frames: &[&[u8]]) -> PathBuf {
        let path = dir.join("v.y4m");
        let mut bytes = format!("{header}\n").into_bytes();
        for f in frames {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend_from_slice(f);
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn count_frames(frames: &mut FileFrames) -> (usize, Option<String>) {
        let mut n = 0;
        loop {
            match frames.next_frame().unwrap() {
                Next::Frame(_) => n += 1,
                Next::EndedEarly(why) => return (n, Some(why)),
                Next::End => return (n, None),
                Next::Skipped(why) => panic!("unexpected skip: {why}"),
            }
        }
    }

    #[test]
    fn y4m_frames_are_read_and_a_truncated_tail_ends_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let frame = [16u8; 4 * 2 + 2 * 2];
        let path = write_y4m(
            dir.path(),
            "YUV4MPEG2 W4 H2 F25:1 C420jpeg",
            &[&frame, &frame, &frame[..5]],
        );
        let mut frames = FileFrames::open(&path).unwrap();
        let (n, early) = count_frames(&mut frames);
        assert_eq!(n, 2);
        assert!(early.unwrap().contains("cut off in frame 2"));
    }

    #[test]
    fn y4m_with_a_bad_header_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_y4m(dir.path(), "YUV4MPEG2 W0 H2", &[]);
        let err = FileFrames::open(&path).err().unwrap().to_string();
        assert!(err.contains("corrupt Y4M") && err.contains("0x2"), "{err}");
        let path = write_y4m(dir.path(), "RIFF junk", &[]);
        assert!(FileFrames::open(&path).is_err());
    }

    #[test]
    fn a_bad_image_is_skipped_in_a_directory_and_fatal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("a.png");
        std::fs::write(&bad, b"not a png").unwrap();
        GrayImage::from_pixel(3, 3, image::Luma([9]))
            .save(dir.path().join("b.png"))
            .unwrap();
        let mut frames = FileFrames::open(dir.path()).unwrap();
        assert!(matches!(frames.next_frame().unwrap(), Next::Skipped(_)));
        assert!(matches!(frames.next_frame().unwrap(), Next::Frame(_)));
        assert!(matches!(frames.next_frame().unwrap(), Next::End));
        let mut alone = FileFrames::open(&bad).unwrap();
        assert!(matches!(
            alone.next_frame(),
            Err(FrameError::Undecodable { .. })
        ));
    }
}
