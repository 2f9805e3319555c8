//! What a MODEL argument is (float/QDQ ONNX for tract, or a `.cbam` blob for the core) and
//! the input it expects, read without importing the whole graph so QDQ models work too.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cbam_compiler::data::InputSpec;
use cbam_compiler::import;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// An ONNX model, run by tract.
    Onnx,
    /// A `.cbam` blob, run by the int8 core.
    Blob,
}

/// By content first (a blob starts with `CBAM`), then by extension, so a blob renamed or a
/// damaged blob still reaches the blob reader and gets its precise error.
pub fn kind_of(path: &Path, bytes: &[u8]) -> ModelKind {
    let is_blob_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("cbam"));
    if bytes.starts_with(&cbam_core::MAGIC) || is_blob_name {
        ModelKind::Blob
    } else {
        ModelKind::Onnx
    }
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))
}

/// The input shape of an ONNX model and its pixel normalisation (`cbam.mean`, `cbam.std`
/// in `metadata_props`; none means plain `pixel / 255`).
pub fn onnx_input_spec(path: &Path, bytes: &[u8]) -> Result<InputSpec> {
    let proto = import::decode_model(bytes, path)?;
    let (_, shape) = import::input_of(&proto)
        .with_context(|| format!("cannot find the image input of {}", path.display()))?;
    let chw: [usize; 3] = match shape.as_slice() {
        [1, c, h, w] => [*c, *h, *w],
        other => bail!(
            "{}: input shape {other:?} is not an image batch [1, C, H, W]; cbam works on \
             image classifiers",
            path.display()
        ),
    };
    let mut mean = Vec::new();
    let mut std = Vec::new();
    for prop in &proto.metadata_props {
        let target = match prop.key.as_str() {
            "cbam.mean" => &mut mean,
            "cbam.std" => &mut std,
            _ => continue,
        };
        *target = parse_floats(&prop.value).with_context(|| {
            format!(
                "{}: metadata {} = {:?} is not a comma-separated list of numbers",
                path.display(),
                prop.key,
                prop.value
            )
        })?;
    }
    InputSpec::new(chw, &mean, &std).with_context(|| format!("model {}", path.display()))
}

fn parse_floats(text: &str) -> Result<Vec<f32>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Ok(s.parse::<f32>()?))
        .collect()
}

/// The normalisation a blob was quantized with: its `mean`/`std` metadata (none: plain
/// `pixel / 255`).
pub fn blob_normalisation(path: &Path, model: &cbam_core::Model) -> Result<(Vec<f32>, Vec<f32>)> {
    let read = |key: &str| -> Result<Vec<f32>> {
        model
            .meta(key)
            .map(|v| {
                parse_floats(v).with_context(|| {
                    format!(
                        "{}: metadata {key} = {v:?} is not a comma-separated list of numbers",
                        path.display()
                    )
                })
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok((read("mean")?, read("std")?))
}

/// A parsed blob, with the error saying what to do when it is not one.
pub fn parse_blob<'b>(path: &Path, bytes: &'b [u8]) -> Result<cbam_core::Model<'b>> {
    cbam_core::Model::parse(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid .cbam model blob: {e}; re-create it with `cbam quantize`",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_recognised_by_magic_or_extension() {
        assert_eq!(
            kind_of(Path::new("m.bin"), b"CBAM\x01\x00"),
            ModelKind::Blob
        );
        assert_eq!(kind_of(Path::new("m.CBAM"), b"junk"), ModelKind::Blob);
        assert_eq!(kind_of(Path::new("m.onnx"), b"\x08\x07"), ModelKind::Onnx);
    }

    #[test]
    fn floats_parse_with_spaces_and_reject_words() {
        assert_eq!(parse_floats("0.5, 0.25,1").unwrap(), vec![0.5, 0.25, 1.0]);
        assert!(parse_floats("0.5,abc").is_err());
    }

    #[test]
    fn garbage_is_not_a_blob_and_the_error_says_what_to_do() {
        let msg = parse_blob(Path::new("bad.cbam"), b"CBAM")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("bad.cbam") && msg.contains("cbam quantize"),
            "{msg}"
        );
    }
}
