//! The `.cbam` blob writer: the one writer of `crates/cbam-core/FORMAT.md`, version 1.
//!
//! Layout: header, tensor table, op table, then each op's constant arrays (16-byte
//! aligned) followed by its parameter words, then kept-channel lists and metadata.

use crate::plan::Plan;
use crate::quant::{Clamp, ConvParams, QModel, QOpKind, Requant};

pub const MAGIC: &[u8; 4] = b"CBAM";
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 64;
const TENSOR_RECORD: usize = 32;
const OP_RECORD: usize = 32;
const ALIGN: usize = 16;
const NO_INPUT: u16 = 0xFFFF;

/// The metadata lines the tools write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlobMeta {
    pub name: String,
    pub labels: Vec<String>,
    pub source: String,
    pub calibration: String,
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
        format!(
            "name={}\nlabels={}\nsource={}\ncalibration={}\n",
            line(&self.name),
            labels.join(","),
            line(&self.source),
            line(&self.calibration)
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("the blob would be {bytes} bytes, beyond the format's 4 GiB limit")]
    TooLarge { bytes: usize },
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
    let tensors_off = HEADER_LEN;
    let ops_off = tensors_off + TENSOR_RECORD * model.tensors.len();
    let mut w = Writer {
        buf: vec![0u8; ops_off + OP_RECORD * model.ops.len()],
    };
    for (i, op) in model.ops.iter().enumerate() {
        let words = w.op_params(&op.kind);
        let params_off = w.words(&words);
        let rec = ops_off + i * OP_RECORD;
        if op.inputs.is_empty() || op.inputs.len() > 4 {
            return Err(BlobError::Inputs {
                op: op.node.clone(),
                count: op.inputs.len(),
            });
        }
        w.put_u16(rec, op.kind.code());
        w.put_u16(rec + 2, op.inputs.len() as u16);
        for slot in 0..4 {
            let t = op
                .inputs
                .get(slot)
                .map_or(Ok(NO_INPUT), |t| u16_count("tensors", *t))?;
            w.put_u16(rec + 4 + 2 * slot, t);
        }
        w.put_u16(rec + 12, u16_count("tensors", op.output)?);
        w.put_u32(rec + 16, params_off);
        w.put_u32(rec + 20, (4 * words.len()) as u32);
        w.put_u32(rec + 24, plan.op_scratch[i]);
    }
    for (i, t) in model.tensors.iter().enumerate() {
        let kept_off = match &t.kept {
            Some(kept) => w.array(
                &kept
                    .iter()
                    .flat_map(|k| k.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
            None => 0,
        };
        let rec = tensors_off + i * TENSOR_RECORD;
        for (k, dim) in [t.shape[0], t.shape[1], t.shape[2], t.full_c]
            .into_iter()
            .enumerate()
        {
            let value = u16::try_from(dim).map_err(|_| BlobError::Dimension {
                tensor: t.name.clone(),
                value: dim,
            })?;
            w.put_u16(rec + 2 * k, value);
        }
        w.put_u32(rec + 8, plan.offsets[i]);
        w.put_u32(rec + 12, kept_off);
        w.put_u32(rec + 16, t.q.scale.to_bits());
        w.put_i32(rec + 20, t.q.zero_point);
        let flags = u32::from(i == model.input) | (u32::from(i == model.output) << 1);
        w.put_u32(rec + 24, flags);
    }
    let meta_text = meta.to_text();
    let meta_off = w.buf.len();
    w.buf.extend_from_slice(meta_text.as_bytes());
    let total = w.buf.len();
    let total_u32 = u32::try_from(total).map_err(|_| BlobError::TooLarge { bytes: total })?;

    w.buf[..4].copy_from_slice(MAGIC);
    w.put_u16(4, VERSION);
    w.put_u16(6, HEADER_LEN as u16);
    w.put_u32(8, total_u32);
    w.put_u32(16, plan.arena_size);
    w.put_u32(20, plan.scratch_off);
    w.put_u32(24, plan.scratch_size);
    w.put_u16(28, n_tensors);
    w.put_u16(30, n_ops);
    w.put_u32(32, tensors_off as u32);
    w.put_u32(36, ops_off as u32);
    w.put_u16(40, u16_count("tensors", model.input)?);
    w.put_u16(42, u16_count("tensors", model.output)?);
    w.put_u32(44, u32::from(model.input_is_pixels));
    w.put_u32(48, meta_off as u32);
    w.put_u32(52, meta_text.len() as u32);
    w.put_u32(56, u32::try_from(model.macs).unwrap_or(u32::MAX));
    let crc = crc32fast::hash(&w.buf[16..total]);
    w.put_u32(12, crc);
    Ok(w.buf)
}

fn u16_count(what: &'static str, count: usize) -> Result<u16, BlobError> {
    u16::try_from(count).map_err(|_| BlobError::TooMany { what, count })
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn put(&mut self, at: usize, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    fn put_u16(&mut self, at: usize, v: u16) {
        self.put(at, &v.to_le_bytes());
    }
    fn put_u32(&mut self, at: usize, v: u32) {
        self.put(at, &v.to_le_bytes());
    }
    fn put_i32(&mut self, at: usize, v: i32) {
        self.put(at, &v.to_le_bytes());
    }

    fn pad_to(&mut self, align: usize) {
        let len = self.buf.len().div_ceil(align) * align;
        self.buf.resize(len, 0);
    }

    /// Appends a 16-byte aligned constant array; returns its offset.
    fn array(&mut self, bytes: &[u8]) -> u32 {
        self.pad_to(ALIGN);
        let off = self.buf.len();
        self.buf.extend_from_slice(bytes);
        off as u32
    }

    fn i8s(&mut self, v: &[i8]) -> i32 {
        self.array(&v.iter().map(|x| *x as u8).collect::<Vec<_>>()) as i32
    }

    fn i32s(&mut self, v: &[i32]) -> i32 {
        self.array(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()) as i32
    }

    /// Appends 4-byte aligned parameter words; returns their offset.
    fn words(&mut self, words: &[i32]) -> u32 {
        self.pad_to(4);
        let off = self.buf.len();
        self.buf.extend(words.iter().flat_map(|x| x.to_le_bytes()));
        off as u32
    }

    /// Writes the op's constant arrays and returns its parameter words.
    fn op_params(&mut self, kind: &QOpKind) -> Vec<i32> {
        match kind {
            QOpKind::Conv(c) => self.conv_words(c),
            QOpKind::Depthwise {
                conv,
                depth_multiplier,
            } => {
                let mut words = self.conv_words(conv);
                words.push(*depth_multiplier as i32);
                words
            }
            QOpKind::FullyConnected(f) => {
                let (wo, bo) = (self.i8s(&f.weights), self.i32s(&f.bias));
                let (mo, so) = (self.i32s(&f.mult), self.i32s(&f.shift));
                vec![wo, bo, mo, so, f.clamp.min, f.clamp.max]
            }
            QOpKind::MaxPool(p) | QOpKind::AvgPool(p) => {
                let mut words = dims(p.kernel, p.stride);
                words.extend(p.pads.iter().map(|x| *x as i32));
                words.extend(clamp_words(p.clamp));
                words
            }
            QOpKind::GlobalAvgPool(r) => vec![r.mult, r.shift],
            QOpKind::GlobalMaxPool => Vec::new(),
            QOpKind::Add(a) => {
                let mut words = vec![a.left_shift];
                words.extend(requant_words(a.in1));
                words.extend(requant_words(a.in2));
                words.extend(requant_words(a.out));
                words.extend(clamp_words(a.clamp));
                words
            }
            QOpKind::Mul(m) => {
                let mut words = requant_words(m.out).to_vec();
                words.extend(clamp_words(m.clamp));
                words
            }
            QOpKind::Concat(rs) => rs.iter().flat_map(|r| requant_words(*r)).collect(),
            QOpKind::Sigmoid(lut) => vec![self.i8s(&lut[..])],
            QOpKind::Cbam(p) => {
                let w1 = self.i8s(&p.w1);
                let b1 = self.i32s(&p.b1);
                let m1 = self.i32s(&p.m1);
                let s1 = self.i32s(&p.s1);
                let w2 = self.i8s(&p.w2);
                let b2 = self.i32s(&p.b2);
                let m2 = self.i32s(&p.m2);
                let s2 = self.i32s(&p.s2);
                let lut_c = self.i8s(&p.lut_c[..]);
                let ws = self.i8s(&p.ws);
                let lut_s = self.i8s(&p.lut_s[..]);
                vec![
                    p.channels as i32,
                    p.hidden as i32,
                    p.kernel as i32,
                    i32::from(p.order),
                    w1,
                    b1,
                    m1,
                    s1,
                    p.hidden_q.zero_point,
                    w2,
                    b2,
                    m2,
                    s2,
                    p.logit_q.zero_point,
                    lut_c,
                    p.f1.mult,
                    p.f1.shift,
                    p.f1_q.zero_point,
                    ws,
                    p.bs,
                    p.ms.mult,
                    p.ms.shift,
                    p.spatial_q.zero_point,
                    lut_s,
                    p.out.mult,
                    p.out.shift,
                ]
            }
        }
    }

    fn conv_words(&mut self, c: &ConvParams) -> Vec<i32> {
        let (wo, bo) = (self.i8s(&c.weights), self.i32s(&c.bias));
        let (mo, so) = (self.i32s(&c.mult), self.i32s(&c.shift));
        let mut words = dims(c.kernel, c.stride);
        words.extend(c.dilation.iter().map(|x| *x as i32));
        words.extend(c.pads.iter().map(|x| *x as i32));
        words.extend(clamp_words(c.clamp));
        words.extend([wo, bo, mo, so]);
        words
    }
}

fn dims(kernel: [usize; 2], stride: [usize; 2]) -> Vec<i32> {
    vec![
        kernel[0] as i32,
        kernel[1] as i32,
        stride[0] as i32,
        stride[1] as i32,
    ]
}

fn clamp_words(c: Clamp) -> [i32; 2] {
    [c.min, c.max]
}

fn requant_words(r: Requant) -> [i32; 2] {
    [r.mult, r.shift]
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
        };
        let b = write(&m, &p, &meta).unwrap();
        (m, p, b)
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn header_fields_are_where_format_md_says() {
        let (m, p, b) = small_blob();
        assert_eq!(&b[..4], b"CBAM");
        assert_eq!(u32_at(&b, 8) as usize, b.len());
        assert_eq!(u32_at(&b, 12), crc32fast::hash(&b[16..]));
        assert_eq!(u32_at(&b, 16), p.arena_size);
        assert_eq!(u32_at(&b, 44), 1, "pixel input flag");
        let meta_off = u32_at(&b, 48) as usize;
        let meta = std::str::from_utf8(&b[meta_off..]).unwrap();
        assert!(meta.contains("labels=a,b;c\n") && meta.contains("calibration=minmax\n"));
        assert_eq!(u32_at(&b, 56) as u64, m.macs);
    }

    #[test]
    fn constant_arrays_are_16_byte_aligned() {
        let (_, _, b) = small_blob();
        let ops_off = u32_at(&b, 36) as usize;
        // Op 0 is CONV2D: words 12..16 are array offsets.
        let params = u32_at(&b, ops_off + 16) as usize;
        for k in 12..16 {
            assert_eq!(u32_at(&b, params + 4 * k) % 16, 0);
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
    }

    #[test]
    fn corrupting_a_byte_is_caught_by_the_crc() {
        let (_, _, mut b) = small_blob();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(cbam_core::Model::parse(&b).is_err());
    }
}
