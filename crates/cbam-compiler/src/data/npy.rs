//! NumPy `.npy` files (format versions 1 to 3): a float32 input array and integer labels.
//!
//! A reader of our own rather than a crate: only C-ordered float32 inputs and integer
//! labels are needed, and the header is a short Python dict literal.

use std::path::Path;

use super::{convert::InputSpec, Cap, DataError, Dataset, Sample};

pub(crate) const MAGIC: &[u8] = b"\x93NUMPY";

/// Element type from the header's `descr`, e.g. `<f4`, `|u1`, `<i8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dtype {
    kind: char,
    size: usize,
    big_endian: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Array<'a> {
    dtype: Dtype,
    descr: String,
    shape: Vec<usize>,
    data: &'a [u8],
}

pub(crate) fn load_inputs(cap: &Cap, spec: &InputSpec) -> Result<Dataset, DataError> {
    let path = cap.path;
    let bytes = cap.read()?;
    let array = parse(&bytes, path)?;
    if array.dtype.kind != 'f' || array.dtype.size != 4 {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            kind: ".npy",
            why: format!(
                "dtype {} is not float32; save the inputs with arr.astype(np.float32)",
                array.descr
            ),
        });
    }
    let [c, h, w] = spec.shape;
    let per_sample = spec.len();
    let fits = array.shape.len() == 4 && array.shape.get(1..) == Some(&[c, h, w][..]);
    if !fits || per_sample == 0 {
        return Err(DataError::Shape {
            path: path.to_path_buf(),
            found: format!("{:?}", array.shape),
            expected: format!("[N, {c}, {h}, {w}] (NCHW float32, already normalised)"),
            fix: format!(
                "Save an array shaped (N, {c}, {h}, {w}), e.g. x.reshape(-1, {c}, {h}, {w}), \
                 or pass the images as an ImageFolder so cbam converts them"
            ),
        });
    }
    let source_len = array.shape.first().copied().unwrap_or(0);
    cap.check_samples(source_len.min(cap.limit), spec)?;
    let samples = array
        .data
        .chunks_exact(per_sample * 4)
        .take(source_len.min(cap.limit))
        .enumerate()
        .map(|(index, chunk)| {
            let input: Vec<f32> = chunk
                .chunks_exact(4)
                .map(|b| {
                    let b = [b[0], b[1], b[2], b[3]];
                    if array.dtype.big_endian {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    }
                })
                .collect();
            if let Some(position) = input.iter().position(|x| !x.is_finite()) {
                return Err(DataError::NotFinite {
                    path: path.to_path_buf(),
                    index,
                    position,
                    value: input[position],
                });
            }
            // A uniform normalisation is carried by the blob's input scale; a per-channel one
            // is not, so the core needs the pixels back.
            let pixels = spec.is_per_channel().then(|| spec.pixels_of(&input));
            Ok(Sample {
                input,
                pixels,
                label: None,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Dataset {
        shape: spec.shape,
        samples,
        classes: Vec::new(),
        notes: Vec::new(),
        source_len,
    })
}

pub(crate) fn load_labels(cap: &Cap) -> Result<Vec<i64>, DataError> {
    let path = cap.path;
    let bytes = cap.read()?;
    let array = parse(&bytes, path)?;
    let n = array.shape.first().copied().unwrap_or(0);
    let is_vector = matches!(array.shape.as_slice(), [_] | [_, 1]);
    if !is_vector {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            kind: "labels .npy",
            why: format!(
                "shape {:?} is not a vector of labels; save a 1-D integer array (N,)",
                array.shape
            ),
        });
    }
    if !matches!(array.dtype.kind, 'i' | 'u') || !matches!(array.dtype.size, 1 | 2 | 4 | 8) {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            kind: "labels .npy",
            why: format!(
                "dtype {} is not an integer type; save class indices as int64, int32 or uint8",
                array.descr
            ),
        });
    }
    Ok(array
        .data
        .chunks_exact(array.dtype.size)
        .take(n)
        .map(|b| read_int(b, array.dtype))
        .collect())
}

fn read_int(bytes: &[u8], dtype: Dtype) -> i64 {
    let mut le = [0u8; 8];
    for (i, &b) in bytes.iter().enumerate() {
        let at = if dtype.big_endian {
            bytes.len() - 1 - i
        } else {
            i
        };
        if let Some(slot) = le.get_mut(at) {
            *slot = b;
        }
    }
    let unsigned = u64::from_le_bytes(le);
    if dtype.kind == 'u' || dtype.size == 8 {
        return unsigned as i64;
    }
    // Sign-extend a narrower signed integer.
    let bits = 64 - 8 * dtype.size as u32;
    ((unsigned << bits) as i64) >> bits
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<Array<'a>, DataError> {
    let bad = |why: String| DataError::Malformed {
        path: path.to_path_buf(),
        kind: ".npy",
        why,
    };
    if !bytes.starts_with(MAGIC) {
        return Err(bad("no NumPy magic \\x93NUMPY at the start".into()));
    }
    let major = bytes.get(6).copied().unwrap_or(0);
    let (len, start): (Option<usize>, usize) = match major {
        1 => (
            bytes
                .get(8..10)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize),
            10,
        ),
        2 | 3 => (
            bytes
                .get(8..12)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
            12,
        ),
        v => return Err(bad(format!("format version {v} is not 1, 2 or 3"))),
    };
    let header_end = len.and_then(|l| start.checked_add(l));
    let header = header_end
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| bad("the header is cut off; the file is truncated".into()))?;
    let header = String::from_utf8_lossy(header);
    let descr =
        dict_string(&header, "descr").ok_or_else(|| bad("no 'descr' in the header".into()))?;
    let dtype = parse_dtype(&descr).ok_or_else(|| bad(format!("unsupported dtype {descr}")))?;
    if dict_value(&header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad(
            "the array is Fortran-ordered; save np.ascontiguousarray(arr) instead".into(),
        ));
    }
    let shape = dict_value(&header, "shape")
        .and_then(parse_shape)
        .ok_or_else(|| bad("no readable 'shape' tuple in the header".into()))?;
    let data = header_end
        .and_then(|end| bytes.get(end..))
        .unwrap_or_default();
    let needed = shape
        .iter()
        .try_fold(dtype.size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    if data.len() < needed {
        return Err(bad(format!(
            "shape {shape:?} needs {needed} data bytes but the file has {}; the file is truncated",
            data.len()
        )));
    }
    Ok(Array {
        dtype,
        descr,
        shape,
        data: data.get(..needed).unwrap_or_default(),
    })
}

/// The text after `'key':` in the header dict, leading spaces removed.
fn dict_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let quoted = format!("'{key}'");
    let at = header.find(&quoted)? + quoted.len();
    let rest = header.get(at..)?.trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

fn dict_string(header: &str, key: &str) -> Option<String> {
    let value = dict_value(header, key)?;
    let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = value.get(1..)?;
    Some(inner.get(..inner.find(quote)?)?.to_string())
}

fn parse_shape(value: &str) -> Option<Vec<usize>> {
    let inner = value.strip_prefix('(')?;
    let inner = inner.get(..inner.find(')')?)?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

fn parse_dtype(descr: &str) -> Option<Dtype> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    let kind = chars.next()?;
    let size: usize = chars.as_str().parse().ok()?;
    let big_endian = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return None,
    };
    Some(Dtype {
        kind,
        size,
        big_endian,
    })
}

/// An `.npy` file image, for tests here and in sibling modules.
#[cfg(test)]
pub(crate) fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_float32_inputs_in_nchw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let values: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).collect();
        std::fs::write(&path, encode("<f4", &[2, 1, 2, 2], &f32_bytes(&values))).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let ds = load_inputs(&Cap::whole(&path), &spec).unwrap();
        assert_eq!(ds.source_len, 2);
        assert_eq!(ds.samples[1].input, vec![2.0, 2.5, 3.0, 3.5]);
        assert_eq!(ds.samples[0].pixels, None);
        let limited = load_inputs(
            &Cap {
                limit: 1,
                ..Cap::whole(&path)
            },
            &spec,
        )
        .unwrap();
        assert_eq!((limited.len(), limited.source_len), (1, 2));
    }

    #[test]
    fn per_channel_normalisation_recovers_the_pixels_for_the_core() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgb.npy");
        let spec =
            InputSpec::new([3, 1, 1], &[0.485, 0.456, 0.406], &[0.229, 0.224, 0.225]).unwrap();
        let pixels = vec![0u8, 128, 255];
        let input = spec.sample_from_chw(pixels.clone()).input;
        std::fs::write(&path, encode("<f4", &[1, 3, 1, 1], &f32_bytes(&input))).unwrap();
        let ds = load_inputs(&Cap::whole(&path), &spec).unwrap();
        assert_eq!(ds.samples[0].pixels, Some(pixels));
        assert_eq!(ds.samples[0].input, input);
    }

    #[test]
    fn wrong_shape_names_the_file_and_the_expected_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrong.npy");
        std::fs::write(&path, encode("<f4", &[1, 1, 3, 3], &f32_bytes(&[0.0; 9]))).unwrap();
        let spec = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let msg = load_inputs(&Cap::whole(&path), &spec)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("wrong.npy"), "{msg}");
        assert!(msg.contains("[N, 1, 2, 2]"), "{msg}");
        assert!(msg.contains("[1, 1, 3, 3]"), "{msg}");
    }

    #[test]
    fn rejects_float64_and_truncated_data() {
        let dir = tempfile::tempdir().unwrap();
        let spec = InputSpec::new([1, 1, 1], &[], &[]).unwrap();
        let f64_path = dir.path().join("f64.npy");
        std::fs::write(&f64_path, encode("<f8", &[1, 1, 1, 1], &[0; 8])).unwrap();
        let msg = load_inputs(&Cap::whole(&f64_path), &spec)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("float32"), "{msg}");

        let short = dir.path().join("short.npy");
        std::fs::write(&short, encode("<f4", &[3, 1, 1, 1], &[0; 8])).unwrap();
        let msg = load_inputs(&Cap::whole(&short), &spec)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("truncated"), "{msg}");
    }

    #[test]
    fn nan_and_infinite_inputs_are_rejected_naming_the_sample() {
        let dir = tempfile::tempdir().unwrap();
        let spec = InputSpec::new([1, 1, 2], &[], &[]).unwrap();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let path = dir.path().join("bad.npy");
            let values = [0.5, 0.25, 0.0, bad];
            std::fs::write(&path, encode("<f4", &[2, 1, 1, 2], &f32_bytes(&values))).unwrap();
            let err = load_inputs(&Cap::whole(&path), &spec).unwrap_err();
            assert!(
                matches!(
                    err,
                    DataError::NotFinite {
                        index: 1,
                        position: 1,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn samples_over_the_data_cap_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let file = encode("<f4", &[4, 1, 8, 8], &f32_bytes(&[0.0; 256]));
        std::fs::write(&path, &file).unwrap();
        let spec = InputSpec::new([1, 8, 8], &[], &[]).unwrap();
        // The file fits; its 4 samples decoded (4 x 64 x 5 bytes) do not.
        assert!(file.len() < 1200);
        let small = Cap {
            max_bytes: 1200,
            ..Cap::whole(&path)
        };
        let err = load_inputs(&small, &spec).unwrap_err().to_string();
        assert!(err.contains("--max-data-bytes"), "{err}");
    }

    #[test]
    fn reads_integer_labels_of_every_common_width() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.npy");
        let i64s: Vec<u8> = [3i64, 0, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, encode("<i8", &[3], &i64s)).unwrap();
        assert_eq!(load_labels(&Cap::whole(&path)).unwrap(), vec![3, 0, 9]);

        let i32s: Vec<u8> = [-1i32, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, encode("<i4", &[2], &i32s)).unwrap();
        assert_eq!(load_labels(&Cap::whole(&path)).unwrap(), vec![-1, 4]);

        std::fs::write(&path, encode("|u1", &[2, 1], &[200, 1])).unwrap();
        assert_eq!(load_labels(&Cap::whole(&path)).unwrap(), vec![200, 1]);

        std::fs::write(&path, encode("<f4", &[1], &[0; 4])).unwrap();
        assert!(load_labels(&Cap::whole(&path)).is_err());
    }

    #[test]
    fn header_parsing_tolerates_version_2_and_odd_spacing() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[2, 0]);
        let header = "{\"descr\" : '<i4', 'fortran_order':False,'shape':( 1 , ) }\n";
        let header = header.replace("\"descr\"", "'descr'");
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&7i32.to_le_bytes());
        let array = parse(&bytes, Path::new("v2.npy")).unwrap();
        assert_eq!(array.shape, vec![1]);
        assert_eq!(read_int(array.data, array.dtype), 7);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b"\x93NUMPY"[..],
            b"\x93NUMPY\x01\x00\xff\xff{",
            b"\x93NUMPY\x09",
        ] {
            assert!(parse(bytes, Path::new("g.npy")).is_err());
        }
    }
}
