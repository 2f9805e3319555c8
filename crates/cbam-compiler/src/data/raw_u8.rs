//! Raw `.u8` files as `models/data/` keeps them: images are `N x C x H x W` bytes at the
//! model's input size with no header; labels are one byte per image.

use super::{convert::InputSpec, Cap, DataError, Dataset};

pub(crate) fn load_images(cap: &Cap, spec: &InputSpec) -> Result<Dataset, DataError> {
    let path = cap.path;
    let bytes = cap.read()?;
    let per_image = spec.len();
    if per_image == 0 || bytes.is_empty() || bytes.len() % per_image != 0 {
        let [c, h, w] = spec.shape;
        return Err(DataError::Shape {
            path: path.to_path_buf(),
            found: format!("{} bytes", bytes.len()),
            expected: format!("a non-zero multiple of {c}x{h}x{w} = {per_image} bytes (N images)"),
            fix: "A .u8 file has no header, so it must hold images at exactly the model's input \
                  size; use an IDX or ImageFolder source for images of another size"
                .into(),
        });
    }
    let source_len = bytes.len() / per_image;
    cap.check_samples(source_len.min(cap.limit), spec)?;
    let samples = bytes
        .chunks_exact(per_image)
        .take(cap.limit)
        .map(|image| spec.sample_from_chw(image.to_vec()))
        .collect();
    Ok(Dataset {
        shape: spec.shape,
        samples,
        classes: Vec::new(),
        notes: Vec::new(),
        source_len,
    })
}

pub(crate) fn load_labels(cap: &Cap) -> Result<Vec<i64>, DataError> {
    Ok(cap.read()?.into_iter().map(i64::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_file_into_model_sized_images() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.u8");
        std::fs::write(&path, [0, 51, 102, 255, 1, 2, 3, 4]).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[0.5], &[0.5]).unwrap();
        let ds = load_images(&Cap::whole(&path), &spec).unwrap();
        assert_eq!(ds.len(), 2);
        let expected = [-1.0, -0.6, -0.2, 1.0];
        for (got, want) in ds.samples[0].input.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{:?}", ds.samples[0].input);
        }
        assert_eq!(ds.samples[1].pixels, Some(vec![1, 2, 3, 4]));
    }

    #[test]
    fn a_size_that_is_not_a_multiple_of_the_image_is_a_shape_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.u8");
        std::fs::write(&path, [0; 5]).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let msg = load_images(&Cap::whole(&path), &spec)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("odd.u8") && msg.contains("4 bytes"), "{msg}");
    }
}
