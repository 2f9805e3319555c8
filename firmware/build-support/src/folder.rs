//! Test images from an ImageFolder of PNGs (`DIR/<class>/*.png`): a colour model's own
//! test images, embedded as they are (8-bit, HWC interleaved, the core's NHWC layout).
//!
//! Class folders sort in label order, as an ImageFolder reader takes them. The first `n`
//! images by file name are taken (ties by class), so a split's own numbering
//! (`t10k_00000.png`, ...) picks its first images, whatever their classes.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::images::{Origin, TestImages};
use crate::Error;

/// The first `n` images of the ImageFolder `dir`; all must share one size and channel count.
pub fn load(dir: &Path, n: usize) -> Result<TestImages, Error> {
    let files = image_files(dir)?;
    if n == 0 || n > files.len() {
        return Err(Error::ImageCount {
            wanted: n,
            available: files.len(),
            file: dir.to_owned(),
        });
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::with_capacity(n);
    let mut shape = None;
    let mut sources = Vec::with_capacity(n);
    for (label, path) in files.into_iter().take(n) {
        let (image_shape, bytes) = decode(&path)?;
        match shape {
            None => shape = Some(image_shape),
            Some(first) if first != image_shape => {
                return Err(Error::Folder {
                    path: path.clone(),
                    why: format!(
                        "is {}, the images before it {}; the firmware embeds images as they are, \
                         so they must all have the model's input size",
                        hwc(image_shape),
                        hwc(first)
                    ),
                });
            }
            Some(_) => {}
        }
        pixels.extend_from_slice(&bytes);
        labels.push(label);
        sources.push(path);
    }
    Ok(TestImages {
        pixels,
        labels,
        shape: shape.ok_or(Error::Internal("no image decoded"))?,
        origin: Origin::Folder(dir.to_owned()),
        sources,
    })
}

/// `HxWxC`, as the errors print shapes.
pub fn hwc([h, w, c]: [usize; 3]) -> String {
    format!("{h}x{w}x{c}")
}

/// Every PNG under `dir/<class>/` with its label, in the order [`load`] takes them.
fn image_files(dir: &Path) -> Result<Vec<(u8, PathBuf)>, Error> {
    let mut classes = subdirectories(dir)?;
    classes.sort();
    // The last label value is the build's "no label" marker.
    if classes.len() >= usize::from(u8::MAX) {
        return Err(Error::Folder {
            path: dir.to_owned(),
            why: format!(
                "has {} class folders; the firmware's labels are bytes (at most 254 classes)",
                classes.len()
            ),
        });
    }
    let mut files = Vec::new();
    for (label, class) in (0u8..).zip(&classes) {
        let entries = std::fs::read_dir(class).map_err(|e| Error::io(class, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(class, e))?.path();
            let is_png = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if is_png && path.is_file() {
                files.push((label, path));
            }
        }
    }
    if files.is_empty() {
        return Err(Error::Folder {
            path: dir.to_owned(),
            why: "holds no PNG image in a class folder (DIR/<class>/*.png)".into(),
        });
    }
    files.sort_by(|(la, a), (lb, b)| a.file_name().cmp(&b.file_name()).then(la.cmp(lb)));
    Ok(files)
}

fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    Ok(dirs)
}

/// `[h, w, c]` and the 8-bit pixels of a grayscale or RGB PNG (palettes expanded, 16-bit
/// samples cut to their high byte, as image readers do).
fn decode(path: &Path) -> Result<([usize; 3], Vec<u8>), Error> {
    let bad = |why: String| Error::Folder {
        path: path.to_owned(),
        why,
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("is not a readable PNG ({e})")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("is too large to decode".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("is not a readable PNG ({e})")))?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        other => {
            return Err(bad(format!(
                "has colour type {other:?}; the firmware takes grayscale or RGB images without \
                 alpha"
            )))
        }
    };
    let (h, w) = (info.height as usize, info.width as usize);
    let row = w * channels;
    // Rows are packed at `line_size`, which is `row` for 8-bit samples.
    let mut pixels = Vec::with_capacity(h * row);
    for y in 0..h {
        let start = y * info.line_size;
        let line = buf
            .get(start..start + row)
            .ok_or_else(|| bad("decoded to fewer bytes than its size says".into()))?;
        pixels.extend_from_slice(line);
    }
    Ok(([h, w, channels], pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, (w, h): (u32, u32), color: png::ColorType, pixels: &[u8]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let file = File::create(path).expect("create");
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("header");
        writer.write_image_data(pixels).expect("data");
    }

    /// The pixels of a 3x2 RGB test image.
    fn rgb(seed: u8) -> Vec<u8> {
        (0..2 * 3 * 3).map(|i| seed.wrapping_mul(7) ^ i).collect()
    }

    fn write_rgb(path: &Path, seed: u8) {
        write_png(path, (3, 2), png::ColorType::Rgb, &rgb(seed));
    }

    #[test]
    fn images_come_by_file_name_across_classes_with_their_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write_rgb(&root.join("0_a/t_002.png"), 2);
        write_rgb(&root.join("1_b/t_000.png"), 0);
        write_rgb(&root.join("1_b/t_001.png"), 1);
        std::fs::write(root.join("1_b/notes.txt"), "not an image").expect("write");
        let set = load(root, 3).expect("load");
        assert_eq!(set.labels, vec![1, 1, 0]);
        assert_eq!(set.shape, [2, 3, 3]);
        assert_eq!(set.pixels, [rgb(0), rgb(1), rgb(2)].concat());
        assert_eq!(set.origin, Origin::Folder(root.to_owned()));
    }

    #[test]
    fn more_images_than_the_folder_holds_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_rgb(&dir.path().join("c/x.png"), 0);
        let err = load(dir.path(), 2).expect_err("too many").to_string();
        assert!(err.contains("holds 1"), "{err}");
    }

    #[test]
    fn images_of_different_sizes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_rgb(&dir.path().join("c/a.png"), 0);
        let gray = png::ColorType::Grayscale;
        write_png(&dir.path().join("c/b.png"), (2, 1), gray, &[1, 2]);
        let err = load(dir.path(), 2).expect_err("mixed").to_string();
        assert!(err.contains("1x2x1") && err.contains("2x3x3"), "{err}");
    }

    #[test]
    fn alpha_and_garbage_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c/a.png");
        write_png(&path, (1, 1), png::ColorType::Rgba, &[1, 2, 3, 4]);
        let err = load(dir.path(), 1).expect_err("alpha").to_string();
        assert!(err.contains("a.png") && err.contains("alpha"), "{err}");
        std::fs::write(&path, b"not a png").expect("write");
        let err = load(dir.path(), 1).expect_err("garbage").to_string();
        assert!(err.contains("not a readable PNG"), "{err}");
    }

    #[test]
    fn a_folder_without_class_folders_says_how_it_should_look() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gray = png::ColorType::Grayscale;
        write_png(&dir.path().join("flat.png"), (1, 1), gray, &[9]);
        let err = load(dir.path(), 1).expect_err("flat").to_string();
        assert!(err.contains("DIR/<class>/*.png"), "{err}");
    }
}
