//! ImageFolder directories as torchvision reads them: `DIR/<class>/<image>.png|jpg|jpeg`,
//! class index = position of the class directory in name order.

use std::path::{Path, PathBuf};

use super::{convert::InputSpec, Cap, DataError, Dataset};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The images of an ImageFolder, without decoding them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolderListing {
    /// Class directory names in label order.
    pub classes: Vec<String>,
    /// Every image with its label, in class then file name order.
    pub files: Vec<(PathBuf, usize)>,
}

/// Lists the ImageFolder at `dir`; one without any image is an error.
pub fn list(dir: &Path) -> Result<ImageFolderListing, DataError> {
    let classes = sorted_entries(dir, |p| p.is_dir())?;
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    let mut class_names = Vec::with_capacity(classes.len());
    for (label, class_dir) in classes.iter().enumerate() {
        class_names.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for file in sorted_entries(class_dir, is_image_file)? {
            files.push((file, label));
        }
    }
    if files.is_empty() {
        return Err(DataError::EmptyImageFolder {
            path: dir.to_path_buf(),
        });
    }
    Ok(ImageFolderListing {
        classes: class_names,
        files,
    })
}

pub(crate) fn load(cap: &Cap, spec: &InputSpec) -> Result<Dataset, DataError> {
    let limit = cap.limit;
    let ImageFolderListing {
        classes: class_names,
        files,
    } = list(cap.path)?;
    cap.check_samples(files.len().min(limit), spec)?;
    let mut samples = Vec::with_capacity(files.len().min(limit));
    let (mut fitted, mut first_note) = (0, None);
    for (file, label) in files.iter().take(limit) {
        let (mut sample, note) = spec.sample_from_image(decode(file)?)?;
        if let Some(note) = note {
            fitted += 1;
            first_note.get_or_insert(note);
        }
        sample.label = Some(*label);
        samples.push(sample);
    }
    let notes = first_note
        .map(|note| InputSpec::resize_note(fitted, &note))
        .into_iter()
        .collect();
    Ok(Dataset {
        shape: spec.shape,
        samples,
        classes: class_names,
        notes,
        source_len: files.len(),
    })
}

/// Decode by content, not extension: a PNG saved as `.jpg` is common in scraped datasets.
fn decode(file: &Path) -> Result<image::DynamicImage, DataError> {
    let reader = image::ImageReader::open(file)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| DataError::Io {
            path: file.to_path_buf(),
            source,
        })?;
    reader.decode().map_err(|source| DataError::Image {
        path: file.to_path_buf(),
        source,
    })
}

fn is_image_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, DataError> {
    let io_err = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && keep(&path) {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, value: u8) {
        image::GrayImage::from_pixel(w, h, image::Luma([value]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn classes_are_sorted_by_name_and_images_converted() {
        let dir = tempfile::tempdir().unwrap();
        for (class, value) in [("shirt", 10u8), ("bag", 20)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            write_png(&dir.path().join(class).join("a.png"), 2, 2, value);
        }
        let rgb = image::RgbImage::from_pixel(2, 2, image::Rgb([30, 30, 30]));
        rgb.save(dir.path().join("bag").join("b.JPG")).unwrap();
        std::fs::write(dir.path().join("bag").join("notes.txt"), "x").unwrap();

        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let ds = load(&Cap::whole(dir.path()), &spec).unwrap();
        assert_eq!(ds.classes, vec!["bag", "shirt"]);
        let labels: Vec<_> = ds.samples.iter().map(|s| s.label).collect();
        assert_eq!(labels, vec![Some(0), Some(0), Some(1)]);
        assert_eq!(ds.samples[0].pixels, Some(vec![20; 4]));
        assert_eq!(ds.samples[2].pixels, Some(vec![10; 4]));
        assert!(ds.notes.is_empty());
    }

    #[test]
    fn resizes_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        write_png(&dir.path().join("c").join("a.png"), 8, 6, 90);
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let ds = load(&Cap::whole(dir.path()), &spec).unwrap();
        assert_eq!(ds.samples[0].pixels, Some(vec![90; 4]));
        assert!(ds.notes[0].contains("8x6"), "{:?}", ds.notes);
    }

    #[test]
    fn empty_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("empty_class")).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let err = load(&Cap::whole(dir.path()), &spec).unwrap_err();
        assert!(matches!(err, DataError::EmptyImageFolder { .. }));
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn an_undecodable_image_names_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c").join("broken.png"), b"not a png").unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let msg = load(&Cap::whole(dir.path()), &spec)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("broken.png"), "{msg}");
    }
}
