//! What a MODEL argument is (float/QDQ ONNX for tract, or a `.cbam` blob for the core) and
//! the input it expects, read without importing the whole graph so QDQ models work too.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cbam_compiler::blob::{CHANNEL_ORDER_KEY, RESIZE_KEY};
use cbam_compiler::data::{self, InputSpec, Preprocess};
use cbam_compiler::float_run::FloatModel;
use cbam_compiler::import::{self, ImportError};
use cbam_compiler::limits::Limits;
use tract_onnx::pb::ModelProto;

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

/// The bytes of a model file: a regular file of at most 2 GiB.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    import::read_model_file(path).with_context(|| format!("cannot read model {}", path.display()))
}

/// Decodes an ONNX model and checks it as everything that reads it does
/// ([`import::check_model`]).
pub fn decode_onnx(path: &Path, bytes: &[u8]) -> Result<ModelProto> {
    let proto = import::decode_model(bytes, path)?;
    import::check_model(&proto, path.parent())
        .with_context(|| format!("{} is malformed", path.display()))?;
    Ok(proto)
}

/// The class names an ONNX model records (`cbam.labels` in `metadata_props`, comma
/// separated); none when it records none.
pub fn onnx_labels(proto: &ModelProto) -> Vec<String> {
    proto
        .metadata_props
        .iter()
        .find(|p| p.key == "cbam.labels")
        .map(|p| p.value.split(',').map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
}

/// Runs the importer over an ONNX model before tract sees it, for what tract does not
/// check (damaged weights, windows larger than their input, shapes past the caps). An op
/// the importer does not translate (the QDQ ops, say) is no error here: tract may run it.
pub fn vet_onnx(path: &Path, proto: &ModelProto) -> Result<()> {
    match import::import_model(proto, path.parent()) {
        Ok(_) | Err(ImportError::Unsupported { .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{} is malformed", path.display())),
    }
}

/// The input shape of an ONNX model and its pixel normalisation (`cbam.mean`, `cbam.std`
/// in `metadata_props`; none means plain `pixel / 255`), within `limits`.
pub fn onnx_input_spec(path: &Path, bytes: &[u8], limits: &Limits) -> Result<InputSpec> {
    let proto = decode_onnx(path, bytes)?;
    let (_, shape) = import::input_of(&proto)
        .with_context(|| format!("cannot find the image input of {}", path.display()))?;
    limits.check_input(&path.display().to_string(), &shape)?;
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
    let meta = |key: &str| {
        let key = format!("cbam.{key}");
        proto
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    };
    let preprocess = preprocess_from(path, meta)?;
    Ok(InputSpec::new(chw, &mean, &std)
        .with_context(|| format!("model {}", path.display()))?
        .with_preprocess(preprocess))
}

/// The crop, resize and channel order a model file records (`meta` reads one key of its
/// metadata), or the defaults.
fn preprocess_from<'m>(path: &Path, meta: impl Fn(&str) -> Option<&'m str>) -> Result<Preprocess> {
    let mut preprocess = Preprocess::default();
    if let Some(v) = meta(CHANNEL_ORDER_KEY) {
        preprocess.order = v.parse().map_err(|why| {
            anyhow::anyhow!("{}: metadata {CHANNEL_ORDER_KEY}: {why}", path.display())
        })?;
    }
    if let Some(v) = meta(RESIZE_KEY) {
        preprocess.resize = v
            .parse()
            .map_err(|why| anyhow::anyhow!("{}: metadata {RESIZE_KEY}: {why}", path.display()))?;
    }
    Ok(preprocess)
}

/// The crop, resize and channel order a blob was quantized with.
pub fn blob_preprocess(path: &Path, model: &cbam_core::Model) -> Result<Preprocess> {
    preprocess_from(path, |key| model.meta(key))
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

/// A parsed blob whose input and arena are within `limits`, with the error saying what to
/// do when it is not one.
pub fn parse_blob<'b>(
    path: &Path,
    bytes: &'b [u8],
    limits: &Limits,
) -> Result<cbam_core::Model<'b>> {
    let model = cbam_core::Model::parse(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid .cbam model blob: {e}; re-create it with `cbam quantize`",
            path.display()
        )
    })?;
    let shown = path.display().to_string();
    let input = model.input();
    limits.check_input(&shown, &[input.c, input.h, input.w])?;
    limits.check_arena(&shown, model.arena_size() as u64)?;
    Ok(model)
}

/// Classes of a blob: its output must be a vector of scores.
pub fn blob_classes(path: &Path, model: &cbam_core::Model) -> Result<usize> {
    let out = model.output();
    classes(path, &[out.h, out.w, out.c])
}

/// Classes of an ONNX model, from the output shape tract infers.
pub fn onnx_classes(path: &Path, model: &FloatModel) -> Result<usize> {
    let shape = model
        .output_shape()
        .with_context(|| format!("tract cannot run {}", path.display()))?;
    classes(path, &shape)
}

/// Scores that are not all numbers name no class: the model's weights or its
/// normalisation are damaged, and every input would get a garbage answer.
pub fn check_scores(scores: &[f32]) -> Result<()> {
    match scores.iter().find(|s| !s.is_finite()) {
        Some(bad) => bail!(
            "a class score is {bad}, so no class can be read from it; the model's weights or \
             its cbam.mean/cbam.std are damaged"
        ),
        None => Ok(()),
    }
}

fn classes(path: &Path, shape: &[usize]) -> Result<usize> {
    data::class_count(shape).with_context(|| {
        format!(
            "{}: the output {shape:?} is not a vector of class scores; cbam evaluates and runs \
             image classifiers (export the logits, e.g. shape [1, 10])",
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
        let msg = parse_blob(Path::new("bad.cbam"), b"CBAM", &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("bad.cbam") && msg.contains("cbam quantize"),
            "{msg}"
        );
    }
}
