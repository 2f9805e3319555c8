//! The `.cbam` blob writer: the one writer of `crates/cbam-core/FORMAT.md`, version 2.
//!
//! Layout: header, tensor table, op table, then each op's constant arrays (16-byte
//! aligned) followed by its parameter words, then kept-channel lists and metadata.

use cbam_core::format::{
    BlobWriter, HeaderFields, OpFields, StageFields, TensorFields, FLAG_RAW_PIXELS, MAX_INPUTS,
    NO_INPUT, OP_RECORD_LEN, STAGE_FLAG_LOOKAHEAD, TENSOR_FLAG_INPUT, TENSOR_FLAG_OUTPUT,
    TENSOR_RECORD_LEN,
};

use crate::data::Preprocess;
use crate::plan::Plan;
use crate::quant::QModel;

/// The metadata lines the tools write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlobMeta {
    pub name: String,
    pub labels: Vec<String>,
    pub source: String,
    pub calibration: String,
    /// The input normalisation the model was quantized with (empty: plain `pixel / 255`),
    /// so a blob whose input is not raw pixels still says how to feed it images.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// How pictures become the input picture; written only when not the default, so
    /// blobs of models that need nothing else stay as they were.
    pub preprocess: Preprocess,
}

impl BlobMeta {
    fn to_text(&self) -> String {
        // Values are single lines; labels are comma-separated, so commas inside a label
        // become semicolons.
        let line = |v: &str| v.replace(['\n', '\r'], " ");
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|l| line(l).replace(',', ";"))
            .collect();
        let floats = |v: &[f32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut text = format!(
            "name={}\nlabels={}\nsource={}\ncalibration={}\n",
            line(&self.name),
            labels.join(","),
            line(&self.source),
            line(&self.calibration)
        );
        if !self.mean.is_empty() || !self.std.is_empty() {
            text.push_str(&format!(
                "mean={}\nstd={}\n",
                floats(&self.mean),
                floats(&self.std)
            ));
        }
        if !self.preprocess.is_default() {
            text.push_str(&format!(
                "{CHANNEL_ORDER_KEY}={}\n{RESIZE_KEY}={}\n",
                self.preprocess.order, self.preprocess.resize
            ));
        }
        text
    }
}

/// The metadata keys of [`Preprocess`] (the blob's and the ONNX `cbam.` ones).
pub const CHANNEL_ORDER_KEY: &str = "channel_order";
pub const RESIZE_KEY: &str = "resize";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("{0}")]
    TooLarge(#[from] cbam_core::format::TooLarge),
    #[error("the model has {count} {what}; the format holds at most 65535")]
    TooMany { what: &'static str, count: usize },
    #[error("the plan covers {planned} tensors but the model has {tensors}; plan the same model")]
    PlanMismatch { planned: usize, tensors: usize },
    #[error("op `{op}` has {count} inputs; the format allows 1 to 4")]
    Inputs { op: String, count: usize },
    #[error("tensor `{tensor}` dimension {value} does not fit in u16")]
    Dimension { tensor: String, value: usize },
}

/// Serialises `model` with its arena `plan` and metadata into FORMAT.md bytes.
pub fn write(model: &QModel, plan: &Plan, meta: &BlobMeta) -> Result<Vec<u8>, BlobError> {
    if plan.offsets.len() != model.tensors.len() || plan.op_scratch.len() != model.ops.len() {
        return Err(BlobError::PlanMismatch {
            planned: plan.offsets.len(),
            tensors: model.tensors.len(),
        });
    }
    let n_tensors = u16_count("tensors", model.tensors.len())?;
    let n_ops = u16_count("ops", model.ops.len())?;
    let mut w = BlobWriter::new();
    let tensors_off = w.reserve(TENSOR_RECORD_LEN * model.tensors.len());
    let ops_off = w.reserve(OP_RECORD_LEN * model.ops.len());
    for (i, op) in model.ops.iter().enumerate() {
        if op.inputs.is_empty() || op.inputs.len() > MAX_INPUTS {
            return Err(BlobError::Inputs {
                op: op.node.clone(),
                count: op.inputs.len(),
            });
        }
        let params = op.kind.params(&mut w);
        let words = params.encode();
        let params_off = w.words(&words);
        let mut inputs = [NO_INPUT; MAX_INPUTS];
        for (slot, &t) in inputs.iter_mut().zip(&op.inputs) {
            *slot = u16_count("tensors", t)?;
        }
        let record = OpFields {
            code: params.code().code(),
            n_inputs: op.inputs.len() as u16,
            inputs,
            output: u16_count("tensors", op.output)?,
            params_off,
            params_len: (4 * words.len()) as u32,
            scratch_len: plan.op_scratch[i],
            ..OpFields::default()
        };
        w.put(record_at(ops_off, i, OP_RECORD_LEN), &record.write());
    }
    for (i, t) in model.tensors.iter().enumerate() {
        let kept_off = t.kept.as_deref().map_or(0, |kept| w.u16s(kept));
        let dim = |value: usize| {
            u16::try_from(value).map_err(|_| BlobError::Dimension {
                tensor: t.name.clone(),
                value,
            })
        };
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        let flags =
            flag(i == model.input, TENSOR_FLAG_INPUT) | flag(i == model.output, TENSOR_FLAG_OUTPUT);
        let record = TensorFields {
            h: dim(t.shape[0])?,
            w: dim(t.shape[1])?,
            c: dim(t.shape[2])?,
            full_c: dim(t.full_c)?,
            arena_off: plan.offsets[i],
            kept_off,
            scale: t.q.scale,
            zero_point: t.q.zero_point,
            flags,
            band_rows: plan.band_rows.get(i).copied().unwrap_or(0),
        };
        w.put(
            record_at(tensors_off, i, TENSOR_RECORD_LEN),
            &record.write(),
        );
    }
    let stages = plan
        .stages
        .iter()
        .map(|s| {
            let field = |v: usize| {
                u16::try_from(v).map_err(|_| BlobError::TooMany {
                    what: "ops",
                    count: v,
                })
            };
            Ok(StageFields {
                first_op: field(s.first)?,
                end_op: field(s.end)?,
                band_rows: field(s.band_rows)?,
                flags: if s.lookahead { STAGE_FLAG_LOOKAHEAD } else { 0 },
            })
        })
        .collect::<Result<Vec<_>, BlobError>>()?;
    let schedule_off = w.schedule(&stages);
    let meta_text = meta.to_text();
    let meta_off = w.text(&meta_text);
    let header = HeaderFields {
        arena_size: plan.arena_size,
        scratch_off: plan.scratch_off,
        scratch_size: plan.scratch_size,
        n_tensors,
        n_ops,
        tensors_off,
        ops_off,
        input_tensor: u16_count("tensors", model.input)?,
        output_tensor: u16_count("tensors", model.output)?,
        flags: if model.input_is_pixels {
            FLAG_RAW_PIXELS
        } else {
            0
        },
        meta_off,
        meta_len: meta_text.len() as u32,
        macs: u32::try_from(model.macs).unwrap_or(u32::MAX),
        schedule_off,
        ..HeaderFields::default()
    };
    Ok(w.finish(header)?)
}

/// The offset of record `index` in the table at `table` (the table is already reserved, so
/// the sum fits the offset the writer handed out).
fn record_at(table: u32, index: usize, record_len: usize) -> u32 {
    table.saturating_add(u32::try_from(index * record_len).unwrap_or(u32::MAX))
}

fn u16_count(what: &'static str, count: usize) -> Result<u16, BlobError> {
    u16::try_from(count).map_err(|_| BlobError::TooMany { what, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::quant::{lower, testing::small_cbam_graph, LowerOptions};

    fn small_blob() -> (QModel, Plan, Vec<u8>) {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &LowerOptions::default()).unwrap();
        let p = plan(&m).unwrap();
        let meta = BlobMeta {
            name: "small".into(),
            labels: vec!["a".into(), "b,c".into()],
            source: "small.onnx".into(),
            calibration: "minmax".into(),
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
            preprocess: Preprocess::default(),
        };
        let b = write(&m, &p, &meta).unwrap();
        (m, p, b)
    }

    #[test]
    fn header_fields_are_where_format_md_says() {
        let (m, p, b) = small_blob();
        let h = HeaderFields::read(&b).unwrap();
        assert_eq!(&b[..4], b"CBAM");
        assert_eq!(h.total_len as usize, b.len());
        assert_eq!(h.crc32, crc32fast::hash(&b[16..]));
        assert_eq!(h.arena_size, p.arena_size);
        assert_eq!(h.flags, FLAG_RAW_PIXELS, "pixel input flag");
        let meta = std::str::from_utf8(&b[h.meta_off as usize..]).unwrap();
        assert!(meta.contains("labels=a,b;c\n") && meta.contains("calibration=minmax\n"));
        assert_eq!(u64::from(h.macs), m.macs);
    }

    #[test]
    fn constant_arrays_are_16_byte_aligned() {
        use cbam_core::format::{OpCode, OpParams};
        let (_, _, b) = small_blob();
        let h = HeaderFields::read(&b).unwrap();
        let op = OpFields::read(&b[h.ops_off as usize..]).unwrap();
        let words = &b[op.params_off as usize..][..op.params_len as usize];
        let params = OpParams::decode(OpCode::Conv2d, cbam_core::le::I32Le::new(words), 1);
        let Some(OpParams::Conv2d(conv)) = params else {
            panic!("op 0 is not a CONV2D: {params:?}")
        };
        let c = conv.channels;
        for off in [conv.weights_off, c.bias_off, c.mult_off, c.shift_off] {
            assert_eq!(off % 16, 0);
        }
    }

    #[test]
    fn core_parses_and_runs_the_blob() {
        let (m, _, b) = small_blob();
        let model = cbam_core::Model::parse(&b).unwrap();
        let mut arena = vec![0u8; model.arena_size()];
        let input: Vec<i8> = (0..64).map(|i| (i * 3 % 256 - 128) as i8).collect();
        let mut out = [0i8; 3];
        model.run(&mut arena, &input, &mut out).unwrap();
        // Rerunning on the same arena gives the same answer (no state leaks between runs).
        let mut again = [0i8; 3];
        model.run(&mut arena, &input, &mut again).unwrap();
        assert_eq!(out, again);
        assert_eq!(m.tensors[m.output].shape, [1, 1, 3]);
        assert_eq!(model.meta("mean"), Some("0.485,0.456,0.406"));
        assert_eq!(model.meta("std"), Some("0.229,0.224,0.225"));
        assert_eq!(model.labels().collect::<Vec<_>>(), ["a", "b;c"]);
    }

    #[test]
    fn a_preprocessing_other_than_the_default_is_recorded() {
        use crate::data::{ChannelOrder, Resize};
        let (m, p, default) = small_blob();
        let model = cbam_core::Model::parse(&default).unwrap();
        assert_eq!(model.meta(CHANNEL_ORDER_KEY), None);
        assert_eq!(model.meta(RESIZE_KEY), None);
        let meta = BlobMeta {
            preprocess: Preprocess {
                order: ChannelOrder::Bgr,
                resize: Resize::Crop { fraction: 0.875 },
            },
            ..BlobMeta::default()
        };
        let b = write(&m, &p, &meta).unwrap();
        let model = cbam_core::Model::parse(&b).unwrap();
        assert_eq!(model.meta(CHANNEL_ORDER_KEY), Some("bgr"));
        assert_eq!(model.meta(RESIZE_KEY), Some("crop:0.875"));
    }

    #[test]
    fn corrupting_a_byte_is_caught_by_the_crc() {
        let (_, _, mut b) = small_blob();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(cbam_core::Model::parse(&b).is_err());
    }
}
