//! Layer-by-layer agreement of the QDQ model (run by tract) with the int8 core.
//!
//! The QDQ writer records, in the `cbam.core_ops` metadata key, which QDQ value mirrors the
//! output of each core op and which values feed it. Every such value is the output of a
//! DequantizeLinear, so dividing by its scale recovers the int8 level exactly; the core's
//! [`Observer`] hands over the same op's int8 output. Running each op's own share of the
//! QDQ graph on the core's int8 inputs separates what an op adds from what it inherits.

use std::collections::HashMap;
use std::fmt;

use cbam_core::{Observer, OpCode};
use prost::Message;
use tract_onnx::pb::{tensor_proto::DataType, ModelProto};

use super::proto::input_value;
use crate::data::{self, Sample};
use op_model::OpModel;

mod op_model;
use crate::float_run::{FloatModel, FloatRunError};

/// Metadata key of the op map: one line per core op, tab-separated QDQ value names,
/// the op's output first, then its inputs.
pub const CORE_OPS_KEY: &str = "cbam.core_ops";

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("the QDQ model does not decode as ONNX")]
    Decode(#[from] prost::DecodeError),
    #[error("the QDQ model has no `{CORE_OPS_KEY}` op map; write it with this version of `cbam quantize --qdq`")]
    NoOpMap,
    #[error("the QDQ op map lists {qdq} ops, the blob has {blob}; compare the QDQ model with the blob compiled alongside it")]
    OpCount { qdq: usize, blob: usize },
    #[error(
        "QDQ value `{0}` has no scale/zero point initializer; the op map and the graph disagree"
    )]
    NoQuantization(String),
    #[error("the QDQ model has uint8 activations (`--qdq-form standard`); the op-by-op comparison feeds the core's int8 levels, so compare a model written with --qdq-form standard-s8 or exact")]
    Uint8Activations,
    #[error("the int8 core rejected the blob")]
    Blob(#[from] cbam_core::Error),
    #[error("op {0} of the blob does not decode")]
    BlobOp(usize),
    #[error("QDQ value `{name}` has {got} values, the core's tensor {expected}")]
    Size {
        name: String,
        got: usize,
        expected: usize,
    },
    #[error("cannot cut the QDQ sub-graph computing `{value}` out for tract: {why}")]
    Cut { value: String, why: String },
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Run(#[from] FloatRunError),
}

/// How far two int8 tensors are apart, accumulated over samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Steps {
    /// Samples counted.
    pub samples: usize,
    /// Elements compared.
    pub elements: usize,
    /// Elements that differ at all.
    pub differing: usize,
    /// Elements that differ by more than one quantization step.
    pub beyond_one: usize,
    /// The largest difference in steps.
    pub max: u32,
}

impl Steps {
    fn add(&mut self, a: &[i8], b: &[i8]) {
        self.samples += 1;
        for (x, y) in a.iter().zip(b) {
            let d = (i32::from(*x) - i32::from(*y)).unsigned_abs();
            self.elements += 1;
            self.differing += usize::from(d > 0);
            self.beyond_one += usize::from(d > 1);
            self.max = self.max.max(d);
        }
    }

    /// Fraction of elements that differ at all.
    pub fn differing_fraction(&self) -> f64 {
        self.differing as f64 / self.elements.max(1) as f64
    }
}

/// Which of an op's values a row compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Output,
    /// A CBAM block's channel attention `a[c]`.
    ChannelAttention,
    /// A CBAM block's spatial attention `as[y, x]`.
    SpatialAttention,
}

/// One compared value: a core op's output, or a CBAM op's attention vector/map.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerAgreement {
    pub op: usize,
    pub code: OpCode,
    pub part: Part,
    /// The QDQ value name (the ONNX value name of the float model, or `<block>__a` /
    /// `<block>__as` for a CBAM block's channel and spatial attention).
    pub value: String,
    /// Over all samples, differences inherited from earlier layers included.
    pub chained: Steps,
    /// The op's own QDQ sub-graph fed the core's int8 inputs: what the op adds.
    pub isolated: Steps,
    /// Samples for which this is the first value (in execution order) that differs.
    pub first_difference: usize,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub samples: usize,
    /// Model input (QDQ QuantizeLinear vs the core's input).
    pub input: Steps,
    pub layers: Vec<LayerAgreement>,
}

impl Agreement {
    /// The model output (the last core op).
    pub fn logits(&self) -> Steps {
        self.layers
            .iter()
            .rev()
            .find(|l| l.part == Part::Output)
            .map(|l| l.chained)
            .unwrap_or_default()
    }

    /// The largest difference any op adds on bit-identical inputs.
    pub fn worst_isolated(&self) -> Option<&LayerAgreement> {
        self.layers.iter().max_by_key(|l| l.isolated.max)
    }
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} samples; input differs in {} of {} values",
            self.samples, self.input.differing, self.input.elements
        )?;
        writeln!(
            f,
            "{:>3} {:<16} {:>9} {:>5} | {:>9} {:>5} {:>7} | {:>5}  value",
            "op", "code", "chained%", "max", "iso%", "max", "iso-n", "first"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:>3} {:<16} {:>9.4} {:>5} | {:>9.4} {:>5} {:>7} | {:>5}  {}",
                l.op,
                format!("{:?}", l.code),
                l.chained.differing_fraction() * 100.0,
                l.chained.max,
                l.isolated.differing_fraction() * 100.0,
                l.isolated.max,
                l.isolated.samples,
                l.first_difference,
                l.value
            )?;
        }
        Ok(())
    }
}

/// One core op as the op map describes it.
struct MappedOp {
    code: OpCode,
    output: String,
    inputs: Vec<String>,
    /// Values compared for this op: its output, and for CBAM the two attention tensors.
    compared: Vec<Compared>,
}

struct Compared {
    part: Part,
    value: String,
    scale: f32,
    zero_point: i32,
    /// NCHW dims `(c, h, w)` of the QDQ value, to reorder into the core's NHWC.
    chw: (usize, usize, usize),
}

/// NCHW dims `(c, h, w)` without the batch.
type Chw = (usize, usize, usize);

/// Where the core's value for an op input comes from.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    ModelInput,
    Op(usize),
}

/// An op's QDQ sub-graph and the core values that feed it (one per distinct input).
struct Cut {
    model: OpModel,
    fed_by: Vec<Source>,
}

/// Runs every sample through the QDQ model (tract) and the core and compares all layers:
/// the whole QDQ model for the chained numbers, and each op's own sub-graph fed the core's
/// int8 inputs for the isolated ones.
pub fn compare(qdq: &[u8], blob: &[u8], samples: &[Sample]) -> Result<Agreement, CompareError> {
    let proto = ModelProto::decode(qdq)?;
    if has_uint8_activations(&proto) {
        return Err(CompareError::Uint8Activations);
    }
    let core = cbam_core::Model::parse(blob)?;
    let ops = op_map(&proto, &core)?;
    let input = input_row(&proto, &core);
    let model = FloatModel::from_proto(&proto, None)?;
    let cuts = cut_ops(&proto, &ops, &input)?;
    let rows: Vec<(usize, &Compared)> = ops
        .iter()
        .enumerate()
        .flat_map(|(i, op)| op.compared.iter().map(move |c| (i, c)))
        .collect();
    let mut names: Vec<String> = rows.iter().map(|(_, c)| c.value.clone()).collect();
    names.push(input.value.clone());
    let mut agreement = Agreement {
        samples: samples.len(),
        input: Steps::default(),
        layers: rows
            .iter()
            .map(|(i, c)| LayerAgreement {
                op: *i,
                code: ops.get(*i).map_or(OpCode::Conv2d, |op| op.code),
                part: c.part,
                value: c.value.clone(),
                chained: Steps::default(),
                isolated: Steps::default(),
                first_difference: 0,
            })
            .collect(),
    };
    let mut arena = vec![0u8; core.arena_size()];
    let mut logits = vec![0i8; core.output().len()];
    for sample in samples {
        let core_in = data::core_input_for(sample, &core.input(), core.input_is_raw_pixels())?;
        let mut seen = Recorder::default();
        core.run_observed(&mut arena, &core_in, &mut logits, &mut seen)?;
        let values = model.run_with_values(&sample.input, &names)?;
        let qdq_in = levels(values.get(&input.value), &input)?;
        agreement.input.add(&qdq_in, &core_in);
        add_chained(&mut agreement.layers, &rows, &values, &seen)?;
        add_isolated(&mut agreement.layers, &ops, &cuts, &seen, &core_in)?;
    }
    Ok(agreement)
}

/// The model input as a compared value: the QDQ model's first QuantizeLinear output.
fn input_row(proto: &ModelProto, core: &cbam_core::Model) -> Compared {
    let info = core.input();
    Compared {
        part: Part::Output,
        value: proto
            .graph
            .as_ref()
            .and_then(|g| g.input.first())
            .map(|v| input_value(&v.name))
            .unwrap_or_default(),
        scale: info.scale,
        zero_point: info.zero_point,
        chw: (info.c, info.h, info.w),
    }
}

/// Cuts every op's sub-graph out of the QDQ model.
fn cut_ops(
    proto: &ModelProto,
    ops: &[MappedOp],
    input: &Compared,
) -> Result<Vec<Cut>, CompareError> {
    let mut producers: HashMap<&str, (Source, Chw)> = HashMap::new();
    producers.insert(input.value.as_str(), (Source::ModelInput, input.chw));
    let mut cuts = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let mut shapes = Vec::new();
        let mut fed_by = Vec::new();
        for value in &op.inputs {
            let (source, chw) = producers
                .get(value.as_str())
                .copied()
                .ok_or_else(|| CompareError::NoQuantization(value.clone()))?;
            shapes.push((value.clone(), chw));
            if !fed_by.contains(&source) {
                fed_by.push(source);
            }
        }
        let outputs: Vec<String> = op.compared.iter().map(|c| c.value.clone()).collect();
        let model = OpModel::cut(proto, &shapes, &outputs)?;
        cuts.push(Cut { model, fed_by });
        if let Some(out) = op.compared.first() {
            producers.insert(op.output.as_str(), (Source::Op(i), out.chw));
        }
    }
    Ok(cuts)
}

/// The whole QDQ model's values against the core's, for one sample.
fn add_chained(
    layers: &mut [LayerAgreement],
    rows: &[(usize, &Compared)],
    values: &HashMap<String, Vec<f32>>,
    seen: &Recorder,
) -> Result<(), CompareError> {
    let mut first_found = false;
    for ((op, c), layer) in rows.iter().zip(layers.iter_mut()) {
        let q = levels(values.get(&c.value), c)?;
        let core_values = seen.value(*op, c.part);
        layer.chained.add(&q, core_values);
        if q.as_slice() != core_values && !first_found {
            layer.first_difference += 1;
            first_found = true;
        }
    }
    Ok(())
}

/// Each op's sub-graph fed the core's int8 inputs, against the core's outputs.
fn add_isolated(
    layers: &mut [LayerAgreement],
    ops: &[MappedOp],
    cuts: &[Cut],
    seen: &Recorder,
    core_in: &[i8],
) -> Result<(), CompareError> {
    for (i, (cut, op)) in cuts.iter().zip(ops).enumerate() {
        let fed: Vec<&[i8]> = cut
            .fed_by
            .iter()
            .map(|source| match source {
                Source::Op(from) => seen.value(*from, Part::Output),
                Source::ModelInput => core_in,
            })
            .collect();
        let outs = cut.model.run(&fed)?;
        let own_rows = layers.iter_mut().filter(|l| l.op == i);
        for ((row, out), c) in own_rows.zip(&outs).zip(&op.compared) {
            let q = levels(Some(out), c)?;
            row.isolated.add(&q, seen.value(i, c.part));
        }
    }
    Ok(())
}

/// The int8 levels of a DequantizeLinear output, reordered NCHW -> NHWC.
fn levels(values: Option<&Vec<f32>>, c: &Compared) -> Result<Vec<i8>, CompareError> {
    let v = values.map(Vec::as_slice).unwrap_or(&[]);
    let (ch, h, w) = c.chw;
    if v.len() != ch * h * w {
        return Err(CompareError::Size {
            name: c.value.clone(),
            got: v.len(),
            expected: ch * h * w,
        });
    }
    let mut out = Vec::with_capacity(v.len());
    for y in 0..h {
        for x in 0..w {
            for k in 0..ch {
                let real = v.get((k * h + y) * w + x).copied().unwrap_or(0.0);
                let level =
                    (f64::from(real) / f64::from(c.scale)).round() + f64::from(c.zero_point);
                out.push(level.clamp(-128.0, 127.0) as i8);
            }
        }
    }
    Ok(out)
}

fn op_map(proto: &ModelProto, core: &cbam_core::Model) -> Result<Vec<MappedOp>, CompareError> {
    let text = proto
        .metadata_props
        .iter()
        .find(|p| p.key == CORE_OPS_KEY)
        .map(|p| p.value.as_str())
        .ok_or(CompareError::NoOpMap)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    if lines.len() != core.n_ops() {
        return Err(CompareError::OpCount {
            qdq: lines.len(),
            blob: core.n_ops(),
        });
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let info = core.op(i).ok_or(CompareError::BlobOp(i))?;
            let mut fields = line.split('\t').map(str::to_string);
            let output = fields.next().unwrap_or_default();
            let inputs: Vec<String> = fields.collect();
            let (h, w, c) = info.output;
            let mut compared = vec![compared(proto, &output, (c, h, w))?];
            if info.code == OpCode::Cbam {
                let sigmoid = (1.0 / 256.0, -128);
                let parts = [
                    (Part::ChannelAttention, "__a", (c, 1, 1)),
                    (Part::SpatialAttention, "__as", (1, h, w)),
                ];
                for (part, suffix, chw) in parts {
                    compared.push(Compared {
                        part,
                        value: format!("{output}{suffix}"),
                        scale: sigmoid.0,
                        zero_point: sigmoid.1,
                        chw,
                    });
                }
            }
            Ok(MappedOp {
                code: info.code,
                output,
                inputs,
                compared,
            })
        })
        .collect()
}

fn compared(
    proto: &ModelProto,
    value: &str,
    chw: (usize, usize, usize),
) -> Result<Compared, CompareError> {
    let (scale, zero_point) = quantization(proto, value)?;
    Ok(Compared {
        part: Part::Output,
        value: value.to_string(),
        scale,
        zero_point,
        chw,
    })
}

/// Whether any activation is quantized to uint8 (a QuantizeLinear with a uint8 zero point).
fn has_uint8_activations(proto: &ModelProto) -> bool {
    let Some(graph) = proto.graph.as_ref() else {
        return false;
    };
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .filter_map(|n| n.input.get(2))
        .filter_map(|zp| graph.initializer.iter().find(|t| &t.name == zp))
        .any(|t| t.data_type == DataType::Uint8 as i32)
}

/// The scale and zero point of the DequantizeLinear that produces `value`.
fn quantization(proto: &ModelProto, value: &str) -> Result<(f32, i32), CompareError> {
    let graph = proto.graph.as_ref();
    let node = graph
        .and_then(|g| {
            g.node
                .iter()
                .find(|n| n.op_type == "DequantizeLinear" && n.output.iter().any(|o| o == value))
        })
        .ok_or_else(|| CompareError::NoQuantization(value.to_string()))?;
    let init = |i: usize| {
        let name = node.input.get(i)?;
        graph?.initializer.iter().find(|t| &t.name == name)
    };
    let scale = init(1)
        .and_then(|t| t.raw_data.get(..4))
        .and_then(|b| b.try_into().ok())
        .map(f32::from_le_bytes);
    let zero_point = match init(2) {
        Some(t) if t.data_type == DataType::Int8 as i32 => {
            t.raw_data.first().map(|b| i32::from(*b as i8))
        }
        _ => None,
    };
    match (scale, zero_point) {
        (Some(s), Some(z)) => Ok((s, z)),
        _ => Err(CompareError::NoQuantization(value.to_string())),
    }
}

/// The core's op outputs and CBAM attention, per op index.
#[derive(Default)]
struct Recorder {
    outputs: HashMap<usize, Vec<i8>>,
    channel: HashMap<usize, Vec<i8>>,
    spatial: HashMap<usize, Vec<i8>>,
}

impl Recorder {
    fn value(&self, op: usize, part: Part) -> &[i8] {
        let table = match part {
            Part::Output => &self.outputs,
            Part::ChannelAttention => &self.channel,
            Part::SpatialAttention => &self.spatial,
        };
        table.get(&op).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl Observer for Recorder {
    fn op_end(&mut self, index: usize, _code: OpCode, output: &[i8]) {
        self.outputs.insert(index, output.to_vec());
    }

    fn cbam_attention(
        &mut self,
        index: usize,
        channel: &[i8],
        spatial: &[i8],
        _h: usize,
        _w: usize,
    ) {
        self.channel.insert(index, channel.to_vec());
        self.spatial.insert(index, spatial.to_vec());
    }
}
