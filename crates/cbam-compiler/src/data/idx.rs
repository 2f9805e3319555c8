//! IDX files (the MNIST / Fashion-MNIST format), gzipped or not: `idx3-ubyte` images
//! `[N, H, W]` and `idx1-ubyte` labels `[N]`.

use std::io::Read;
use std::path::Path;

use super::{convert::InputSpec, read_file, DataError, Dataset};

/// Element type code of unsigned bytes, the only one MNIST-style data uses.
const UBYTE: u8 = 0x08;

pub(crate) fn looks_like_idx(head: &[u8]) -> bool {
    matches!(head, [0, 0, UBYTE, 1..=4, ..])
}

struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

pub(crate) fn load_images(
    path: &Path,
    spec: &InputSpec,
    limit: usize,
) -> Result<Dataset, DataError> {
    let idx = read_idx(path)?;
    let [n, h, w] = match idx.dims.as_slice() {
        &[n, h, w] if h > 0 && w > 0 => [n, h, w],
        dims => {
            let fix = if dims.len() == 1 {
                "This looks like a labels file: pass it with --labels and the idx3 images with --data"
            } else {
                "Pass an idx3-ubyte images file [N, H, W]"
            };
            return Err(DataError::Shape {
                path: path.to_path_buf(),
                found: format!("{dims:?}"),
                expected: "[N, H, W] grayscale images".into(),
                fix: fix.into(),
            });
        }
    };
    let mut samples = Vec::with_capacity(n.min(limit));
    let mut resized = 0;
    for image in idx.data.chunks_exact((h * w).max(1)).take(n.min(limit)) {
        let (sample, was_resized) = spec.sample_from_gray(image.to_vec(), h, w)?;
        resized += usize::from(was_resized);
        samples.push(sample);
    }
    let mut notes = Vec::new();
    if resized > 0 {
        notes.push(spec.resize_note(resized, (h, w)));
    }
    Ok(Dataset {
        shape: spec.shape,
        samples,
        classes: Vec::new(),
        notes,
        source_len: n,
    })
}

pub(crate) fn load_labels(path: &Path) -> Result<Vec<i64>, DataError> {
    let idx = read_idx(path)?;
    if idx.dims.len() != 1 {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            kind: "IDX labels",
            why: format!(
                "dimensions {:?} are not a label vector; pass the idx1-ubyte labels file",
                idx.dims
            ),
        });
    }
    Ok(idx.data.iter().map(|&b| i64::from(b)).collect())
}

fn read_idx(path: &Path) -> Result<Idx, DataError> {
    let bad = |why: String| DataError::Malformed {
        path: path.to_path_buf(),
        kind: "IDX",
        why,
    };
    let raw = read_file(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("the gzip stream is corrupt or truncated ({e})")))?;
        out
    } else {
        raw
    };
    let (kind, ndim) = match bytes.as_slice() {
        [0, 0, kind, ndim, ..] => (*kind, usize::from(*ndim)),
        _ => return Err(bad("no IDX magic (0x00 0x00 type ndim) at the start".into())),
    };
    if kind != UBYTE {
        return Err(bad(format!(
            "element type 0x{kind:02x} is not unsigned byte (0x08); only 8-bit images and labels are read"
        )));
    }
    let header_len = 4 + 4 * ndim;
    let dims: Vec<usize> = bytes
        .get(4..header_len)
        .ok_or_else(|| bad("the header is cut off; the file is truncated".into()))?
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let needed = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} are too large")))?;
    let data = bytes.get(header_len..).unwrap_or_default();
    if data.len() < needed {
        return Err(bad(format!(
            "dimensions {dims:?} need {needed} bytes but the file has {}; the file is truncated",
            data.len()
        )));
    }
    let data = data.get(..needed).unwrap_or_default().to_vec();
    Ok(Idx { dims, data })
}

/// An IDX file image, for tests here and in sibling modules.
#[cfg(test)]
pub(crate) fn encode(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gzipped_and_plain_images_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let images = encode(&[2, 2, 2], &[0, 255, 0, 255, 10, 20, 30, 40]);
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        for (name, bytes) in [("i.gz", gzip(&images)), ("i", images.clone())] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let ds = load_images(&path, &spec, usize::MAX).unwrap();
            assert_eq!(ds.len(), 2);
            assert_eq!(ds.samples[1].pixels, Some(vec![10, 20, 30, 40]));
            assert_eq!(ds.samples[0].input, vec![0.0, 1.0, 0.0, 1.0]);
            assert!(ds.notes.is_empty());
        }
        let labels = dir.path().join("l.gz");
        std::fs::write(&labels, gzip(&encode(&[2], &[9, 3]))).unwrap();
        assert_eq!(load_labels(&labels).unwrap(), vec![9, 3]);
    }

    #[test]
    fn images_of_another_size_are_resized_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, encode(&[1, 4, 4], &[100; 16])).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let ds = load_images(&path, &spec, usize::MAX).unwrap();
        assert_eq!(ds.samples[0].pixels, Some(vec![100; 4]));
        assert_eq!(ds.notes.len(), 1, "{:?}", ds.notes);
        assert!(ds.notes[0].contains("4x4"), "{:?}", ds.notes);
    }

    #[test]
    fn labels_passed_as_images_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels-idx1-ubyte");
        std::fs::write(&path, encode(&[3], &[1, 2, 3])).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let msg = load_images(&path, &spec, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--labels"), "{msg}");
        assert!(msg.contains("labels-idx1-ubyte"), "{msg}");
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut");
        let full = encode(&[2, 2, 2], &[0; 8]);
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        for cut in [3, 9, 15] {
            std::fs::write(&path, &full[..cut]).unwrap();
            assert!(
                load_images(&path, &spec, usize::MAX).is_err(),
                "cut at {cut}"
            );
        }
        let gz = gzip(&full);
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let msg = load_images(&path, &spec, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("gzip"), "{msg}");
    }
}
