//! IDX files (the MNIST / Fashion-MNIST format), gzipped or not: `idx3-ubyte` images
//! `[N, H, W]` and `idx1-ubyte` labels `[N]`.

use std::io::{BufReader, Read};

use super::{convert::InputSpec, read_up_to, Cap, DataError, Dataset};
use crate::fsio;

/// Element type code of unsigned bytes, the only one MNIST-style data uses.
const UBYTE: u8 = 0x08;

pub(crate) fn looks_like_idx(head: &[u8]) -> bool {
    matches!(head, [0, 0, UBYTE, 1..=4, ..])
}

struct Idx {
    dims: Vec<usize>,
    /// The first items (entries along the first axis) asked for.
    data: Vec<u8>,
}

pub(crate) fn load_images(cap: &Cap, spec: &InputSpec) -> Result<Dataset, DataError> {
    let path = cap.path;
    let idx = read_idx(cap, cap.limit)?;
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
    let taken = n.min(cap.limit);
    cap.check_samples(taken, spec)?;
    let mut samples = Vec::with_capacity(taken);
    let (mut fitted, mut first_note) = (0, None);
    for image in idx.data.chunks_exact(h * w).take(taken) {
        let (sample, note) = spec.sample_from_gray(image.to_vec(), h, w)?;
        if let Some(note) = note {
            fitted += 1;
            first_note.get_or_insert(note);
        }
        samples.push(sample);
    }
    let notes = first_note
        .map(|note| InputSpec::resize_note(fitted, &note))
        .into_iter()
        .collect();
    Ok(Dataset {
        shape: spec.shape,
        samples,
        classes: Vec::new(),
        notes,
        source_len: n,
    })
}

pub(crate) fn load_labels(cap: &Cap) -> Result<Vec<i64>, DataError> {
    let idx = read_idx(cap, usize::MAX)?;
    if idx.dims.len() != 1 {
        return Err(DataError::Malformed {
            path: cap.path.to_path_buf(),
            kind: "IDX labels",
            why: format!(
                "dimensions {:?} are not a label vector; pass the idx1-ubyte labels file",
                idx.dims
            ),
        });
    }
    Ok(idx.data.iter().map(|&b| i64::from(b)).collect())
}

/// Reads the header and the first `keep` items of an IDX file, gzipped or not, streaming:
/// the data the header declares is checked against the cap first, and no more than that is
/// ever decompressed (a gzip bomb ends at what it declared). The rest of the declared data
/// is read and dropped, so a file shorter than its header says is still an error.
fn read_idx(cap: &Cap, keep: usize) -> Result<Idx, DataError> {
    let path = cap.path;
    let bad = |why: String| DataError::Malformed {
        path: path.to_path_buf(),
        kind: "IDX",
        why,
    };
    let (file, len) = fsio::open_regular(path).map_err(|e| DataError::io(path, e))?;
    cap.check(|| "the IDX file".into(), Some(len))?;
    let mut file = BufReader::new(file);
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut file, &mut magic).map_err(|e| DataError::io(path, e))?;
    let gzipped = got == 2 && magic == [0x1f, 0x8b];
    let head = std::io::Cursor::new(magic.get(..got).unwrap_or_default().to_vec());
    let mut reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(head.chain(file)))
    } else {
        Box::new(head.chain(file))
    };
    let stream_err = |e: std::io::Error| {
        if gzipped {
            bad(format!("the gzip stream is corrupt or truncated ({e})"))
        } else {
            DataError::io(path, e)
        }
    };
    let mut header = [0u8; 4];
    if read_up_to(&mut reader, &mut header).map_err(stream_err)? < 4 {
        return Err(bad("no IDX magic (0x00 0x00 type ndim) at the start".into()));
    }
    let [0, 0, kind, ndim] = header else {
        return Err(bad("no IDX magic (0x00 0x00 type ndim) at the start".into()));
    };
    if kind != UBYTE {
        return Err(bad(format!(
            "element type 0x{kind:02x} is not unsigned byte (0x08); only 8-bit images and labels are read"
        )));
    }
    let mut raw_dims = vec![0u8; 4 * usize::from(ndim)];
    if read_up_to(&mut reader, &mut raw_dims).map_err(stream_err)? < raw_dims.len() {
        return Err(bad("the header is cut off; the file is truncated".into()));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let needed = crate::limits::product(dims.iter().copied());
    cap.check(
        || format!("the data its header declares ({dims:?})"),
        needed,
    )?;
    let needed = needed.unwrap_or(0);
    let item = crate::limits::product(dims.iter().skip(1).copied()).unwrap_or(u64::MAX);
    let kept = item.saturating_mul(keep as u64).min(needed);
    let mut data = Vec::with_capacity(kept as usize);
    let read = (&mut reader)
        .take(kept)
        .read_to_end(&mut data)
        .map_err(stream_err)? as u64;
    let rest = std::io::copy(&mut (&mut reader).take(needed - kept), &mut std::io::sink())
        .map_err(stream_err)?;
    if read + rest < needed {
        return Err(bad(format!(
            "dimensions {dims:?} need {needed} bytes but the file has {}; the file is truncated",
            read + rest
        )));
    }
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
            let ds = load_images(&Cap::whole(&path), &spec).unwrap();
            assert_eq!(ds.len(), 2);
            assert_eq!(ds.samples[1].pixels, Some(vec![10, 20, 30, 40]));
            assert_eq!(ds.samples[0].input, vec![0.0, 1.0, 0.0, 1.0]);
            assert!(ds.notes.is_empty());
        }
        let labels = dir.path().join("l.gz");
        std::fs::write(&labels, gzip(&encode(&[2], &[9, 3]))).unwrap();
        assert_eq!(load_labels(&Cap::whole(&labels)).unwrap(), vec![9, 3]);
    }

    #[test]
    fn images_of_another_size_are_resized_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, encode(&[1, 4, 4], &[100; 16])).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let ds = load_images(&Cap::whole(&path), &spec).unwrap();
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
        let msg = load_images(&Cap::whole(&path), &spec)
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
                load_images(&Cap::whole(&path), &spec).is_err(),
                "cut at {cut}"
            );
        }
        let gz = gzip(&full);
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let msg = load_images(&Cap::whole(&path), &spec)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("gzip"), "{msg}");
    }

    #[test]
    fn a_header_declaring_more_than_the_cap_is_refused_before_decompressing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb-idx3-ubyte.gz");
        std::fs::write(&path, gzip(&encode(&[60_000, 65_535, 65_535], &[0; 64]))).unwrap();
        let spec = InputSpec::new([1, 28, 28], &[], &[]).unwrap();
        let msg = load_images(&Cap::whole(&path), &spec)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--max-data-bytes"), "{msg}");
    }

    #[test]
    fn a_gzip_bomb_is_read_only_as_far_as_its_header_declares() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb-idx1-ubyte.gz");
        // 64 MiB of zeros behind a header declaring 3 labels: about 64 KiB compressed.
        let mut raw = encode(&[3], &[1, 2, 3]);
        raw.resize(64 << 20, 0);
        std::fs::write(&path, gzip(&raw)).unwrap();
        let small = Cap {
            max_bytes: 1 << 20,
            ..Cap::whole(&path)
        };
        assert_eq!(load_labels(&small).unwrap(), vec![1, 2, 3]);
    }
}
