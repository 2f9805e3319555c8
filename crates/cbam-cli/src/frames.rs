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

/// The true class of a labelled frame (an ImageFolder image): index and name.
pub type Truth = (usize, String);

/// One frame as decoded, before it is fitted to the model.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Where it came from: a file name, `video.y4m#12`, `/dev/video0#3`.
    pub source: String,
    pub image: DynamicImage,
    /// The true class (index, name) of an ImageFolder image.
    pub truth: Option<Truth>,
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
    #[error(
        "{}: no .png/.jpg/.jpeg images in this directory or in class subdirectories \
         (DIR/<class>/*.png)",
        path.display()
    )]
    EmptyDirectory { path: PathBuf },
    #[error(
        "{}: not an input cbam run can read; pass a PNG/JPEG image, a directory of them or a \
         .y4m video (convert others with `ffmpeg -i in.mp4 out.y4m`)",
        path.display()
    )]
    UnknownKind { path: PathBuf },
    #[error("{}: corrupt Y4M video: {why}", path.display())]
    CorruptVideo { path: PathBuf, why: String },
    /// A headerless stream that cannot be read as told (`--raw`).
    #[error("{}: {why}", path.display())]
    BadStream { path: PathBuf, why: String },
}

/// Where frames come from, opened from `--input PATH`.
pub enum FileFrames {
    Images {
        /// Each with its true class when the directory is an ImageFolder.
        paths: std::vec::IntoIter<(PathBuf, Option<Truth>)>,
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
    /// A video frame larger than `max_frame_bytes` is refused before any is read.
    pub fn open(path: &Path, max_frame_bytes: u64) -> Result<Self, FrameError> {
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
            paths.sort();
            let mut items: Vec<_> = paths.into_iter().map(|p| (p, None)).collect();
            if items.is_empty() {
                items = image_folder(path)?;
            }
            return Ok(FileFrames::Images {
                paths: items.into_iter(),
                skip_bad: true,
            });
        }
        let is_y4m = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
        if is_y4m {
            return Ok(FileFrames::Video(Y4mReader::open(path, max_frame_bytes)?));
        }
        if is_image_name(path) {
            return Ok(FileFrames::Images {
                paths: vec![(path.to_path_buf(), None)].into_iter(),
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
            FileFrames::Images { paths, .. } => {
                paths.as_slice().iter().map(|p| p.0.clone()).collect()
            }
            FileFrames::Video(video) => vec![video.path.clone()],
        }
    }

    pub fn next_frame(&mut self) -> Result<Next, FrameError> {
        match self {
            FileFrames::Images { paths, skip_bad } => {
                let Some((path, truth)) = paths.next() else {
                    return Ok(Next::End);
                };
                match decode_image(&path) {
                    Ok(image) => Ok(Next::Frame(Frame {
                        source: path.display().to_string(),
                        image,
                        truth,
                    })),
                    Err(e) if *skip_bad => Ok(Next::Skipped(e.to_string())),
                    Err(e) => Err(e),
                }
            }
            FileFrames::Video(video) => video.next_frame(),
        }
    }
}

/// A directory without images of its own, read as an ImageFolder (`DIR/<class>/<image>`):
/// its frames carry their class, so the live page can count accuracy.
fn image_folder(path: &Path) -> Result<Vec<(PathBuf, Option<Truth>)>, FrameError> {
    let listing = cbam_compiler::data::list_image_folder(path).map_err(|e| match e {
        DataError::EmptyImageFolder { .. } => FrameError::EmptyDirectory {
            path: path.to_path_buf(),
        },
        other => FrameError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    Ok(listing
        .files
        .into_iter()
        .map(|(file, label)| {
            let name = listing.classes.get(label).cloned().unwrap_or_default();
            (file, Some((label, name)))
        })
        .collect())
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

/// Y4M (YUV4MPEG2), the uncompressed video format ffmpeg writes without extra libraries,
/// from a file or a pipe. Only the luma plane and, for colour, the chroma planes of 4:2:0,
/// 4:2:2 and 4:4:4 are read. Colour is BT.601, limited range unless the header says
/// `XCOLORRANGE=FULL` (ffmpeg's `yuv420p` is limited, its `yuvj420p` full); `mono` luma is
/// taken as grey levels.
pub struct Y4mReader<R = BufReader<File>> {
    path: PathBuf,
    reader: R,
    width: usize,
    height: usize,
    chroma: Chroma,
    range: Range,
    index: usize,
    /// A pipe cut off mid-frame is an error (the writer died); a file ends early instead.
    cut_off_is_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    Mono,
    /// Horizontal and vertical subsampling of the two chroma planes.
    Yuv {
        sx: usize,
        sy: usize,
    },
}

/// How YCbCr values map to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Y 0..255 (JPEG/JFIF, webcams' YUYV).
    Full,
    /// Y 16..235, Cb/Cr 16..240 (video: ffmpeg's default, rpicam-vid's YUV420).
    Limited,
}

impl Chroma {
    fn parse(tag: &str) -> Option<Self> {
        match tag {
            "mono" => Some(Chroma::Mono),
            "444" => Some(Chroma::Yuv { sx: 1, sy: 1 }),
            "422" => Some(Chroma::Yuv { sx: 2, sy: 1 }),
            // 8-bit 4:2:0 with any chroma siting; the 10- and 12-bit forms (420p10) are not.
            "420" | "420jpeg" | "420paldv" | "420mpeg2" => Some(Chroma::Yuv { sx: 2, sy: 2 }),
            _ => None,
        }
    }

    pub fn frame_len(self, width: usize, height: usize) -> usize {
        match self {
            Chroma::Mono => width * height,
            Chroma::Yuv { sx, sy } => width * height + 2 * width.div_ceil(sx) * height.div_ceil(sy),
        }
    }
}

pub const MAX_Y4M_SIDE: usize = 16384;

impl Y4mReader {
    pub fn open(path: &Path, max_frame_bytes: u64) -> Result<Self, FrameError> {
        let file = File::open(path).map_err(|source| FrameError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Y4mReader::from_reader(path, BufReader::new(file), max_frame_bytes, false)
    }
}

impl<R: BufRead> Y4mReader<R> {
    /// Reads the stream header from `reader`; `path` names the stream in messages.
    pub fn from_reader(
        path: &Path,
        mut reader: R,
        max_frame_bytes: u64,
        cut_off_is_error: bool,
    ) -> Result<Self, FrameError> {
        let corrupt = |why: String| FrameError::CorruptVideo {
            path: path.to_path_buf(),
            why,
        };
        let line = read_line(&mut reader, 4096).map_err(|e| corrupt(e.to_string()))?;
        let mut words = line.split(' ');
        if words.next() != Some("YUV4MPEG2") {
            return Err(corrupt("it does not start with YUV4MPEG2".into()));
        }
        let (mut width, mut height) = (0, 0);
        let (mut chroma, mut range) = (Chroma::Yuv { sx: 2, sy: 2 }, Range::Limited);
        for word in words {
            let (tag, value) = word.split_at_checked(1).unwrap_or((word, ""));
            match tag {
                "W" => width = value.parse().unwrap_or(0),
                "H" => height = value.parse().unwrap_or(0),
                "C" => {
                    chroma = Chroma::parse(value).ok_or_else(|| {
                        corrupt(format!(
                            "colour space C{value} is not supported; write 4:2:0, 4:2:2, 4:4:4 \
                             or mono 8-bit (ffmpeg -pix_fmt yuv420p)"
                        ))
                    })?;
                }
                "I" if !matches!(value, "p" | "?" | "") => {
                    return Err(corrupt(format!(
                        "interlaced video (I{value}) is not supported; write progressive frames"
                    )))
                }
                "X" if value.eq_ignore_ascii_case("COLORRANGE=FULL") => range = Range::Full,
                _ => {}
            }
        }
        if !(1..=MAX_Y4M_SIDE).contains(&width) || !(1..=MAX_Y4M_SIDE).contains(&height) {
            return Err(corrupt(format!(
                "frame size {width}x{height} is missing or out of range"
            )));
        }
        let frame_len = chroma.frame_len(width, height);
        if frame_len as u64 > max_frame_bytes {
            return Err(corrupt(format!(
                "one {width}x{height} frame is {frame_len} bytes, over --max-data-bytes \
                 {max_frame_bytes}; scale the video down or raise --max-data-bytes"
            )));
        }
        Ok(Y4mReader {
            path: path.to_path_buf(),
            reader,
            width,
            height,
            chroma,
            range,
            index: 0,
            cut_off_is_error,
        })
    }

    pub fn next_frame(&mut self) -> Result<Next, FrameError> {
        let line = match read_line(&mut self.reader, 1024) {
            Ok(line) if line.is_empty() => return Ok(Next::End),
            Ok(line) => line,
            Err(e) => return self.cut_off(&e.to_string()),
        };
        if !line.starts_with("FRAME") {
            return Err(FrameError::CorruptVideo {
                path: self.path.clone(),
                why: format!("frame {} does not start with FRAME", self.index),
            });
        }
        let mut data = vec![0u8; self.chroma.frame_len(self.width, self.height)];
        if let Err(e) = self.reader.read_exact(&mut data) {
            return self.cut_off(&e.to_string());
        }
        let image = yuv_planes_to_image(&data, self.width, self.height, self.chroma, self.range);
        let source = format!("{}#{}", self.path.display(), self.index);
        self.index += 1;
        Ok(Next::Frame(Frame {
            source,
            image,
            truth: None,
        }))
    }

    fn cut_off(&self, why: &str) -> Result<Next, FrameError> {
        let message = format!(
            "{}: the video is cut off in frame {} ({why}); stopped after {} whole frame(s)",
            self.path.display(),
            self.index,
            self.index
        );
        if self.cut_off_is_error {
            Err(FrameError::CorruptVideo {
                path: self.path.clone(),
                why: message,
            })
        } else {
            Ok(Next::EndedEarly(message))
        }
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

/// Planar Y, then Cb and Cr (subsampled as `chroma` says), as an RGB (or, mono, grey) image.
pub fn yuv_planes_to_image(
    data: &[u8],
    width: usize,
    height: usize,
    chroma: Chroma,
    range: Range,
) -> DynamicImage {
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
    let to_rgb = match range {
        Range::Full => yuv_to_rgb,
        Range::Limited => limited_yuv_to_rgb,
    };
    let cw = width.div_ceil(sx);
    let plane = cw * height.div_ceil(sy);
    let u = data.get(luma_len..luma_len + plane).unwrap_or_default();
    let v = data.get(luma_len + plane..).unwrap_or_default();
    let rgb = RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let at = |p: &[u8], i: usize| p.get(i).copied().unwrap_or(128);
        let ci = (y / sy) * cw + x / sx;
        image::Rgb(to_rgb(at(luma, y * width + x), at(u, ci), at(v, ci)))
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

/// BT.601 limited-range YCbCr (Y 16..235, Cb/Cr 16..240) to RGB, in integers: the
/// full-range matrix scaled by 255/219 for luma and 255/224 for chroma.
pub fn limited_yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let (y, u, v) = (i32::from(y) - 16, i32::from(u) - 128, i32::from(v) - 128);
    let clamp = |x: i32| (x >> 16).clamp(0, 255) as u8;
    // Coefficients x 2^16: 1.164384, 1.596027, 0.391762, 0.812968, 2.017232.
    let y = 76309 * y + 32768;
    let r = y + 104597 * v;
    let g = y - 25675 * u - 53279 * v;
    let b = y + 132201 * u;
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
        let mut frames = FileFrames::open(&path, u64::MAX).unwrap();
        let (n, early) = count_frames(&mut frames);
        assert_eq!(n, 2);
        assert!(early.unwrap().contains("cut off in frame 2"));
    }

    #[test]
    fn y4m_with_a_bad_header_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_y4m(dir.path(), "YUV4MPEG2 W0 H2", &[]);
        let err = FileFrames::open(&path, u64::MAX).err().unwrap().to_string();
        assert!(err.contains("corrupt Y4M") && err.contains("0x2"), "{err}");
        let path = write_y4m(dir.path(), "RIFF junk", &[]);
        assert!(FileFrames::open(&path, u64::MAX).is_err());
    }

    #[test]
    fn an_image_folder_gives_frames_their_class() {
        let dir = tempfile::tempdir().unwrap();
        for class in ["1_trouser", "0_tshirt"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            GrayImage::from_pixel(3, 3, image::Luma([9]))
                .save(dir.path().join(class).join("a.png"))
                .unwrap();
        }
        let mut frames = FileFrames::open(dir.path(), u64::MAX).unwrap();
        let mut truths = Vec::new();
        while let Next::Frame(f) = frames.next_frame().unwrap() {
            truths.push(f.truth.unwrap());
        }
        assert_eq!(
            truths,
            vec![(0, "0_tshirt".to_string()), (1, "1_trouser".to_string())]
        );
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("c")).unwrap();
        let err = FileFrames::open(empty.path(), u64::MAX).err().unwrap();
        assert!(matches!(err, FrameError::EmptyDirectory { .. }), "{err}");
    }

    #[test]
    fn a_bad_image_is_skipped_in_a_directory_and_fatal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("a.png");
        std::fs::write(&bad, b"not a png").unwrap();
        GrayImage::from_pixel(3, 3, image::Luma([9]))
            .save(dir.path().join("b.png"))
            .unwrap();
        let mut frames = FileFrames::open(dir.path(), u64::MAX).unwrap();
        assert!(matches!(frames.next_frame().unwrap(), Next::Skipped(_)));
        assert!(matches!(frames.next_frame().unwrap(), Next::Frame(_)));
        assert!(matches!(frames.next_frame().unwrap(), Next::End));
        let mut alone = FileFrames::open(&bad, u64::MAX).unwrap();
        assert!(matches!(
            alone.next_frame(),
            Err(FrameError::Undecodable { .. })
        ));
    }
}
