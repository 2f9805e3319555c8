//! Tests of the source dispatch, label attachment and the core-input helper.

use super::*;

fn spec_1x2x2() -> InputSpec {
    InputSpec::new([1, 2, 2], &[], &[]).unwrap()
}

fn source(data: &Path, labels: Option<&Path>, limit: Option<usize>) -> DataSource {
    DataSource {
        data: data.to_path_buf(),
        labels: labels.map(Path::to_path_buf),
        limit,
    }
}

#[test]
fn idx_pair_loads_with_labels_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("t10k-images-idx3-ubyte.gz");
    let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&images, idx::gzip(&idx::encode(&[3, 2, 2], &[5; 12]))).unwrap();
    std::fs::write(&labels, idx::gzip(&idx::encode(&[3], &[2, 1, 0]))).unwrap();

    let ds = load(&source(&images, Some(&labels), None), &spec_1x2x2()).unwrap();
    assert!(ds.has_labels());
    let got: Vec<_> = ds.samples.iter().map(|s| s.label).collect();
    assert_eq!(got, vec![Some(2), Some(1), Some(0)]);

    let ds = load(&source(&images, Some(&labels), Some(2)), &spec_1x2x2()).unwrap();
    assert_eq!((ds.len(), ds.source_len), (2, 3));
}

#[test]
fn labels_of_the_wrong_length_are_an_error_even_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("x.u8");
    let labels = dir.path().join("y.npy");
    std::fs::write(&images, [0u8; 12]).unwrap();
    let two: Vec<u8> = [1i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&labels, npy::encode("<i8", &[2], &two)).unwrap();
    for limit in [None, Some(1)] {
        let err = load(&source(&images, Some(&labels), limit), &spec_1x2x2()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelCount {
                    expected: 3,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("y.npy"), "{err}");
    }
}

#[test]
fn negative_labels_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("y.npy");
    let data: Vec<u8> = [-3i32].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&labels, npy::encode("<i4", &[1], &data)).unwrap();
    let err = load_labels(&labels, usize::MAX).unwrap_err();
    assert!(matches!(err, DataError::NegativeLabel { value: -3, .. }));
}

#[test]
fn unknown_files_and_missing_paths_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("data.csv");
    std::fs::write(&text, "1,2,3").unwrap();
    let msg = load(&source(&text, None, None), &spec_1x2x2())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("data.csv") && msg.contains(".npy"), "{msg}");

    let missing = dir.path().join("nope.npy");
    let err = load(&source(&missing, None, None), &spec_1x2x2()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("nope.npy"));
}

#[test]
fn core_input_is_nhwc_and_uses_raw_pixels_only_with_the_flag() {
    let spec = InputSpec::new([2, 1, 2], &[0.5], &[0.5]).unwrap();
    // Planar: channel 0 = [0, 255], channel 1 = [128, 64].
    let sample = spec.sample_from_chw(vec![0, 255, 128, 64]);
    let raw = core_input(&sample, [1, 2, 2], 0.5, 0, true).unwrap();
    assert_eq!(raw, vec![-128, 0, 127, -64]);

    // Float input (-1, 1, ~0.004, ~-0.498) quantised at scale 1/64, zp 3.
    let q = core_input(&sample, [1, 2, 2], 1.0 / 64.0, 3, false).unwrap();
    assert_eq!(q, vec![-61, 3, 67, -29]);

    let no_pixels = Sample {
        pixels: None,
        ..sample.clone()
    };
    assert_eq!(
        core_input(&no_pixels, [1, 2, 2], 1.0 / 64.0, 3, true).unwrap(),
        q
    );

    let err = core_input(&sample, [2, 2, 2], 1.0, 0, false).unwrap_err();
    assert!(matches!(
        err,
        DataError::CoreInputSize {
            expected: 8,
            found: 4,
            ..
        }
    ));
}

#[test]
fn core_input_into_reuses_a_dirty_buffer() {
    let spec = InputSpec::new([2, 1, 2], &[0.5], &[0.5]).unwrap();
    let sample = spec.sample_from_chw(vec![0, 255, 128, 64]);
    let mut buffer = vec![9i8; 11];
    core_input_into(&sample, [1, 2, 2], 1.0 / 64.0, 3, false, &mut buffer).unwrap();
    assert_eq!(buffer, vec![-61, 3, 67, -29]);
    core_input_into(&sample, [1, 2, 2], 0.5, 0, true, &mut buffer).unwrap();
    assert_eq!(buffer, vec![-128, 0, 127, -64]);
}

#[test]
fn quantize_rounds_half_away_and_saturates() {
    assert_eq!(quantize(0.5, 1.0, 0), 1);
    assert_eq!(quantize(-0.5, 1.0, 0), -1);
    assert_eq!(quantize(1000.0, 1.0, 0), 127);
    assert_eq!(quantize(-1000.0, 1.0, 10), -128);
    assert_eq!(quantize(f32::NAN, 1.0, 5), 5);
}

#[test]
fn devices_and_symlinks_to_them_are_refused_as_data_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("x.u8");
    std::fs::write(&images, [0u8; 8]).unwrap();
    let zero = dir.path().join("zero.u8");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for data in [Path::new("/dev/zero"), zero.as_path()] {
        let err = load(&source(data, None, None), &spec_1x2x2()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = load(&source(&images, Some(data), None), &spec_1x2x2()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn labels_outside_the_models_classes_are_rejected_naming_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("x.u8");
    let labels = dir.path().join("y.u8");
    std::fs::write(&images, [0u8; 12]).unwrap();
    std::fs::write(&labels, [3u8, 200, 9]).unwrap();
    let ds = load(&source(&images, Some(&labels), None), &spec_1x2x2()).unwrap();
    let err = check_labels(&ds, &labels, 10).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                label: 200,
                classes: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("y.u8"), "{err}");
    assert!(check_labels(&ds, &labels, 201).is_ok());
}

#[test]
fn only_a_vector_of_two_or_more_scores_has_classes() {
    assert_eq!(class_count(&[1, 10]), Some(10));
    assert_eq!(class_count(&[1, 10, 1, 1]), Some(10));
    assert_eq!(class_count(&[1, 1, 28, 28]), None);
    assert_eq!(class_count(&[1, 1]), None);
}
