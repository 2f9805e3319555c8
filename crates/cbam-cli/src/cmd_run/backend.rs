//! The two ways `cbam run` and `cbam attention` execute a model on one frame: tract (float
//! or QDQ ONNX) and the int8 core (`.cbam` blob), each returning class scores and the
//! spatial attention map of every CBAM block.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use cbam_compiler::data::{self, InputSpec};
use cbam_compiler::float_run::FloatModel;
use cbam_compiler::ir::Op;
use cbam_compiler::limits::Limits;
use cbam_compiler::{import, passes};

use crate::layer_threads::LayerThreads;
use crate::model_file::{self, ModelKind};
use crate::norm::NormArgs;
use crate::packed_weights;

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// tract, for float and QDQ .onnx models
    Tract,
    /// the int8 core, for .cbam blobs
    Core,
}

/// A spatial attention map, values in 0..1, row-major `h x w`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMap {
    pub h: usize,
    pub w: usize,
    pub values: Vec<f32>,
}

/// What one frame produced.
#[derive(Debug, Clone)]
pub struct Inference {
    /// Class scores, as the model outputs them (probabilities or logits).
    pub scores: Vec<f32>,
    /// The core's raw int8 output (bit-exact comparisons across machines); none for tract.
    pub output_q: Option<Vec<i8>>,
    /// One map per CBAM block, in graph order; empty unless requested.
    pub attention: Vec<AttentionMap>,
    /// Each CBAM block's channel attention (one weight in 0..1 per channel), one entry per
    /// map in `attention`; empty unless requested. An entry is empty for a block whose
    /// channel weights the model does not name (QDQ models).
    pub channel_attention: Vec<Vec<f32>>,
}

/// A model file read into memory, with the engine that will run it.
pub struct ModelFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub backend: BackendKind,
    /// A blob's convolution weights packed for this CPU, once.
    packing: OnceLock<Vec<i32>>,
}

impl ModelFile {
    /// Reads `path`; `requested` must match what the file is (tract cannot run a blob, the
    /// core cannot run ONNX), so a mismatch says which file the user wants instead.
    pub fn open(path: &Path, requested: Option<BackendKind>) -> Result<Self> {
        let bytes = model_file::read(path)?;
        let actual = match model_file::kind_of(path, &bytes) {
            ModelKind::Onnx => BackendKind::Tract,
            ModelKind::Blob => BackendKind::Core,
        };
        match (requested, actual) {
            (Some(BackendKind::Core), BackendKind::Tract) => bail!(
                "--backend core runs .cbam blobs but {} is ONNX; make a blob with \
                 `cbam quantize {} --calib CALIB --out model.cbam` or use --backend tract",
                path.display(),
                path.display()
            ),
            (Some(BackendKind::Tract), BackendKind::Core) => bail!(
                "--backend tract runs .onnx models but {} is a .cbam blob; pass the float \
                 .onnx or the QDQ .int8.onnx that `cbam quantize --qdq` wrote",
                path.display()
            ),
            _ => {}
        }
        Ok(ModelFile {
            path: path.to_path_buf(),
            bytes,
            backend: actual,
            packing: OnceLock::new(),
        })
    }
}

/// A model ready to run frame after frame.
pub enum Runner<'b> {
    Tract(TractRunner),
    Core(Box<CoreRunner<'b>>),
}

pub struct TractRunner {
    /// Shared by the workers of a multi-threaded run (tract's plans are thread-safe).
    model: Arc<FloatModel>,
    spec: InputSpec,
    labels: Vec<String>,
    attention: Vec<AttentionValue>,
}

/// Where tract finds one block's spatial attention.
#[derive(Clone)]
struct AttentionValue {
    name: String,
    /// Known from the float IR; for QDQ models guessed from the map size.
    hw: Option<(usize, usize)>,
    /// The value is the pre-sigmoid logit (float models), so apply the sigmoid here.
    logit: bool,
    /// The block's channel attention (already a sigmoid output), when the model names it.
    channel: Option<String>,
}

pub struct CoreRunner<'b> {
    model: cbam_core::Model<'b>,
    arena: Vec<u8>,
    /// The quantized frame, reused from frame to frame.
    input: Vec<i8>,
    output: Vec<i8>,
    labels: Vec<String>,
    /// From the blob's metadata and the flags; the normalisation is only used when the
    /// blob's input is not raw pixels.
    spec: InputSpec,
    /// The threads each frame's layers are split over (shared by the workers; one thread
    /// unless `--split-layers`).
    layers: Arc<LayerThreads>,
}

impl<'b> Runner<'b> {
    /// `with_attention`: locate the attention values (costs a graph import for ONNX).
    /// Notes for the user (e.g. no attention found) are pushed to `notes`. The model must be
    /// a classifier within `limits`; `norm` replaces what the model records of its input.
    pub fn new(
        file: &'b ModelFile,
        with_attention: bool,
        notes: &mut Vec<String>,
        limits: &Limits,
        norm: &NormArgs,
    ) -> Result<Self> {
        match file.backend {
            BackendKind::Tract => Ok(Runner::Tract(TractRunner::new(
                file,
                with_attention,
                notes,
                limits,
                norm,
            )?)),
            BackendKind::Core => Ok(Runner::Core(Box::new(CoreRunner::new(
                file, notes, limits, norm,
            )?))),
        }
    }

    /// The model input: its shape, normalisation and how pictures are fitted to it.
    pub fn input_spec(&self) -> &InputSpec {
        match self {
            Runner::Tract(t) => &t.spec,
            Runner::Core(c) => &c.spec,
        }
    }

    pub fn label(&self, class: usize) -> String {
        let labels = match self {
            Runner::Tract(t) => &t.labels,
            Runner::Core(c) => &c.labels,
        };
        labels
            .get(class)
            .cloned()
            .unwrap_or_else(|| format!("class {class}"))
    }

    /// A runner for another thread: the same model (tract's plan and the core's blob are
    /// shared, not reloaded) with buffers of its own (the core's arena).
    pub fn worker(&self) -> Runner<'b> {
        match self {
            Runner::Tract(t) => Runner::Tract(TractRunner {
                model: t.model.clone(),
                spec: t.spec.clone(),
                labels: t.labels.clone(),
                attention: t.attention.clone(),
            }),
            Runner::Core(c) => Runner::Core(Box::new(CoreRunner {
                model: c.model,
                arena: vec![0u8; c.arena.len()],
                input: Vec::with_capacity(c.input.capacity()),
                output: vec![0i8; c.output.len()],
                labels: c.labels.clone(),
                spec: c.spec.clone(),
                layers: Arc::clone(&c.layers),
            })),
        }
    }

    /// Splits each frame's layers over `threads` threads (the int8 core only); `false` for
    /// a runner that runs every frame on one thread (tract).
    pub fn split_layers(&mut self, threads: usize) -> Result<bool> {
        match self {
            Runner::Tract(_) => Ok(false),
            Runner::Core(c) => {
                c.layers = Arc::new(LayerThreads::new(threads)?);
                Ok(true)
            }
        }
    }

    /// Runs one frame given as `[C, H, W]` pixels at the model's input size.
    pub fn infer(&mut self, pixels_chw: &[u8], with_attention: bool) -> Result<Inference> {
        match self {
            Runner::Tract(t) => t.infer(pixels_chw, with_attention),
            Runner::Core(c) => c.infer(pixels_chw, with_attention),
        }
    }
}

impl TractRunner {
    fn new(
        file: &ModelFile,
        with_attention: bool,
        notes: &mut Vec<String>,
        limits: &Limits,
        norm: &NormArgs,
    ) -> Result<Self> {
        let path = &file.path;
        let spec = norm.apply(model_file::onnx_input_spec(path, &file.bytes, limits)?)?;
        let proto = model_file::decode_onnx(path, &file.bytes)?;
        model_file::vet_onnx(path, &proto)?;
        let labels = proto
            .metadata_props
            .iter()
            .find(|p| p.key == "cbam.labels")
            .map(|p| p.value.split(',').map(|l| l.trim().to_string()).collect())
            .unwrap_or_default();
        let model = FloatModel::from_proto(&proto, path.parent())
            .with_context(|| format!("tract cannot run {}", path.display()))?;
        model_file::onnx_classes(path, &model)?;
        let attention = if with_attention {
            attention_values(&proto, path, notes)
        } else {
            Vec::new()
        };
        Ok(TractRunner {
            model: Arc::new(model),
            spec,
            labels,
            attention,
        })
    }

    fn infer(&mut self, pixels_chw: &[u8], with_attention: bool) -> Result<Inference> {
        let [_, h, w] = self.spec.shape;
        let input = self.spec.sample_from_chw(pixels_chw.to_vec()).input;
        if !with_attention || self.attention.is_empty() {
            let scores = self
                .model
                .run(&input)
                .context("tract failed on the frame")?;
            model_file::check_scores(&scores).context("the model's scores for the frame")?;
            return Ok(Inference {
                scores,
                output_q: None,
                attention: Vec::new(),
                channel_attention: Vec::new(),
            });
        }
        let mut names: Vec<String> = vec![self.model.output_name().to_string()];
        names.extend(self.attention.iter().map(|a| a.name.clone()));
        names.extend(self.attention.iter().filter_map(|a| a.channel.clone()));
        let mut values = self
            .model
            .run_with_values(&input, &names)
            .context("tract failed on the frame")?;
        let scores = values.remove(self.model.output_name()).unwrap_or_default();
        model_file::check_scores(&scores).context("the model's scores for the frame")?;
        let mut maps = Vec::new();
        let mut channels = Vec::new();
        for a in &self.attention {
            let raw = values.remove(&a.name).unwrap_or_default();
            let (mh, mw) = a.hw.unwrap_or_else(|| guess_hw(raw.len(), h, w));
            if mh * mw != raw.len() || raw.is_empty() {
                continue;
            }
            // One entry beside every map (empty when the model does not name the block's
            // channel weights), so block i's channel weights stay at index i.
            channels.push(
                a.channel
                    .as_ref()
                    .and_then(|n| values.remove(n))
                    .unwrap_or_default(),
            );
            let values = if a.logit {
                raw.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect()
            } else {
                raw
            };
            maps.push(AttentionMap {
                h: mh,
                w: mw,
                values,
            });
        }
        Ok(Inference {
            scores,
            output_q: None,
            attention: maps,
            channel_attention: channels,
        })
    }
}

/// The spatial attention values of an ONNX model: from the float IR's CBAM blocks, or, for
/// a QDQ model (which the float importer does not take), the `<block>__as` values the QDQ
/// writer names after the quantized sigmoid output.
fn attention_values(
    proto: &tract_onnx::pb::ModelProto,
    path: &Path,
    notes: &mut Vec<String>,
) -> Vec<AttentionValue> {
    let from_ir = import::import_model(proto, path.parent())
        .ok()
        .and_then(|g| passes::optimize(g).ok())
        .map(|g| {
            g.nodes
                .iter()
                .filter_map(|node| match &node.op {
                    Op::Cbam(c) => {
                        let shape = &g.tensors.get(node.output)?.shape;
                        let hw = match shape.as_slice() {
                            [_, h, w] => Some((*h, *w)),
                            _ => None,
                        };
                        Some(AttentionValue {
                            name: c.values.spatial_logit.clone(),
                            hw,
                            logit: true,
                            channel: Some(c.values.channel_attention.clone()),
                        })
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if !from_ir.is_empty() {
        return from_ir;
    }
    let qdq: Vec<AttentionValue> = proto
        .graph
        .iter()
        .flat_map(|g| g.node.iter())
        .flat_map(|n| n.output.iter())
        .filter(|name| name.ends_with("__as"))
        .map(|name| AttentionValue {
            name: name.clone(),
            hw: None,
            logit: false,
            channel: None,
        })
        .collect();
    if qdq.is_empty() {
        notes.push(format!(
            "{}: no CBAM block recognised, so there is no attention map to draw",
            path.display()
        ));
    }
    qdq
}

/// `h x w` of a map of `len` values inside an `ih x iw` input: the size with the input's
/// aspect ratio (downsampling keeps it), checked by the caller.
fn guess_hw(len: usize, ih: usize, iw: usize) -> (usize, usize) {
    let h = ((len * ih) as f64 / iw.max(1) as f64)
        .sqrt()
        .round()
        .max(1.0) as usize;
    (h, len / h)
}

impl<'b> CoreRunner<'b> {
    fn new(
        file: &'b ModelFile,
        notes: &mut Vec<String>,
        limits: &Limits,
        norm: &NormArgs,
    ) -> Result<Self> {
        let model = model_file::parse_blob(&file.path, &file.bytes, limits)?;
        let model = packed_weights::with_packed_weights(&file.path, model, &file.packing)?;
        model_file::blob_classes(&file.path, &model)?;
        let (mean, std) = model_file::blob_normalisation(&file.path, &model)?;
        let info = model.input();
        let spec = InputSpec::new([info.c, info.h, info.w], &mean, &std)
            .with_context(|| format!("model {}", file.path.display()))?
            .with_preprocess(model_file::blob_preprocess(&file.path, &model)?);
        let spec = norm.apply(spec)?;
        if !model.input_is_raw_pixels()
            && mean.is_empty()
            && std.is_empty()
            && norm.given().is_none()
        {
            notes.push(format!(
                "{}: the blob's input is not raw pixels and it records no normalisation; \
                 frames are fed as pixel/255",
                file.path.display()
            ));
        }
        Ok(CoreRunner {
            spec,
            arena: vec![0u8; model.arena_size()],
            input: Vec::with_capacity(model.input().len()),
            output: vec![0i8; model.output().len()],
            labels: model.labels().map(str::to_string).collect(),
            model,
            layers: Arc::new(LayerThreads::new(1)?),
        })
    }

    fn infer(&mut self, pixels_chw: &[u8], with_attention: bool) -> Result<Inference> {
        let info = self.model.input();
        let sample = self.spec.sample_from_chw(pixels_chw.to_vec());
        let raw = self.model.input_is_raw_pixels();
        data::core_input_for_into(&sample, &info, raw, &mut self.input)
            .context("the frame does not fit the blob's input")?;
        let mut maps = MapCollector {
            enabled: with_attention,
            maps: Vec::new(),
            channels: Vec::new(),
        };
        self.layers
            .run_observed(
                &self.model,
                &mut self.arena,
                &self.input,
                &mut self.output,
                &mut maps,
            )
            .map_err(|e| anyhow::anyhow!("the int8 core failed on the frame: {e}"))?;
        let out = self.model.output();
        Ok(Inference {
            scores: self.output.iter().map(|&v| out.dequantize(v)).collect(),
            output_q: Some(self.output.clone()),
            attention: maps.maps,
            channel_attention: maps.channels,
        })
    }
}

struct MapCollector {
    enabled: bool,
    maps: Vec<AttentionMap>,
    channels: Vec<Vec<f32>>,
}

impl cbam_core::Observer for MapCollector {
    fn cbam_attention(
        &mut self,
        _index: usize,
        channel: &[i8],
        spatial: &[i8],
        h: usize,
        w: usize,
    ) {
        if self.enabled {
            // Scale 1/256, zero point -128 (the core's sigmoid output).
            let dequantize = |q: &[i8]| -> Vec<f32> {
                q.iter().map(|&q| (f32::from(q) + 128.0) / 256.0).collect()
            };
            self.maps.push(AttentionMap {
                h,
                w,
                values: dequantize(spatial),
            });
            self.channels.push(dequantize(channel));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_size_follows_the_input_aspect() {
        assert_eq!(guess_hw(49, 28, 28), (7, 7));
        assert_eq!(guess_hw(8 * 4, 16, 8), (8, 4));
    }
}
