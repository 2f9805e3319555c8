//! A test-only blob assembler: enough of a writer to build models for the reader's tests.
//! The product writer is `cbam-compiler`'s; this one only has to follow FORMAT.md.
//!
//! Layout chosen here: header | constants | tensor table | op table | metadata. The format
//! locates every table by offset, so the order is free.

use crate::blob::{HEADER_LEN, MAGIC, VERSION};
use crate::kernels::test_support::Rng;
use crate::kernels::ConvGeometry;
use crate::op_code::{scratch_size, OpCode};
use std::string::String;
use std::vec::Vec;

#[derive(Clone, Debug)]
pub struct TensorDef {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub full_c: usize,
    pub arena_off: usize,
    pub kept_off: i32,
    pub scale: f32,
    pub zp: i32,
}

#[derive(Clone, Debug)]
pub struct OpDef {
    pub code: OpCode,
    pub inputs: Vec<u16>,
    pub output: u16,
    pub params: Vec<i32>,
    pub scratch_len: usize,
}

#[derive(Clone, Debug, Default)]
pub struct BlobBuilder {
    consts: Vec<u8>,
    pub tensors: Vec<TensorDef>,
    pub ops: Vec<OpDef>,
    arena_top: usize,
    pub input: u16,
    pub output: u16,
    pub flags: u32,
    pub meta: String,
    pub macs: u32,
}

impl BlobBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a 16-byte aligned constant array; returns its blob offset.
    pub fn bytes(&mut self, data: &[u8]) -> i32 {
        while !(usize::from(HEADER_LEN) + self.consts.len()).is_multiple_of(16) {
            self.consts.push(0);
        }
        let off = usize::from(HEADER_LEN) + self.consts.len();
        self.consts.extend_from_slice(data);
        off as i32
    }

    pub fn i8s(&mut self, v: &[i8]) -> i32 {
        self.bytes(crate::le::as_u8(v))
    }

    pub fn i32s(&mut self, v: &[i32]) -> i32 {
        self.bytes(&crate::le::i32_bytes(v))
    }

    /// A fresh tensor in its own arena region.
    pub fn tensor(&mut self, (h, w, c): (usize, usize, usize), scale: f32, zp: i32) -> u16 {
        let arena_off = self.arena_top;
        self.arena_top += h * w * c;
        self.push_tensor(TensorDef {
            h,
            w,
            c,
            full_c: c,
            arena_off,
            kept_off: 0,
            scale,
            zp,
        })
    }

    /// A pruned tensor storing the channels `kept` of `full_c`.
    pub fn pruned_tensor(
        &mut self,
        (h, w): (usize, usize),
        kept: &[u16],
        full_c: usize,
        scale: f32,
        zp: i32,
    ) -> u16 {
        let kept_off = self.bytes(&crate::le::u16_bytes(kept));
        let arena_off = self.arena_top;
        self.arena_top += h * w * kept.len();
        self.push_tensor(TensorDef {
            h,
            w,
            c: kept.len(),
            full_c,
            arena_off,
            kept_off,
            scale,
            zp,
        })
    }

    /// A tensor sharing `of`'s arena bytes and shape (an in-place op's output).
    pub fn alias_tensor(&mut self, of: u16, scale: f32, zp: i32) -> u16 {
        let t = TensorDef {
            scale,
            zp,
            ..self.tensors[usize::from(of)].clone()
        };
        self.push_tensor(t)
    }

    fn push_tensor(&mut self, t: TensorDef) -> u16 {
        self.tensors.push(t);
        (self.tensors.len() - 1) as u16
    }

    pub fn shape(&self, t: u16) -> (usize, usize, usize) {
        let t = &self.tensors[usize::from(t)];
        (t.h, t.w, t.c)
    }

    /// Adds an op; its scratch_len is what the core says it needs.
    pub fn op(&mut self, code: OpCode, inputs: &[u16], output: u16, params: Vec<i32>) -> usize {
        let shapes: Vec<_> = inputs.iter().map(|&t| self.shape(t)).collect();
        let scratch_len = scratch_size(code, &params, &shapes, self.shape(output)).unwrap();
        self.ops.push(OpDef {
            code,
            inputs: inputs.to_vec(),
            output,
            params,
            scratch_len,
        });
        self.ops.len() - 1
    }

    /// Serialises the blob: scratch sits at the end of the arena, sized for the largest op.
    pub fn build(&self) -> Vec<u8> {
        let scratch_size = self.ops.iter().map(|o| o.scratch_len).max().unwrap_or(0);
        let mut out = vec![0u8; usize::from(HEADER_LEN)];
        out.extend_from_slice(&self.consts);
        let mut params_offs = Vec::new();
        for op in &self.ops {
            while !out.len().is_multiple_of(16) {
                out.push(0);
            }
            params_offs.push(out.len() as u32);
            out.extend(op.params.iter().flat_map(|p| p.to_le_bytes()));
        }
        let tensors_off = out.len() as u32;
        for t in &self.tensors {
            put16(&mut out, t.h as u16);
            put16(&mut out, t.w as u16);
            put16(&mut out, t.c as u16);
            put16(&mut out, t.full_c as u16);
            put32(&mut out, t.arena_off as u32);
            put32(&mut out, t.kept_off as u32);
            out.extend_from_slice(&t.scale.to_le_bytes());
            out.extend_from_slice(&t.zp.to_le_bytes());
            put32(&mut out, 0);
            put32(&mut out, 0);
        }
        let ops_off = out.len() as u32;
        for (op, &params_off) in self.ops.iter().zip(&params_offs) {
            put16(&mut out, op.code.code());
            put16(&mut out, op.inputs.len() as u16);
            for slot in 0..4 {
                put16(&mut out, op.inputs.get(slot).copied().unwrap_or(0xFFFF));
            }
            put16(&mut out, op.output);
            put16(&mut out, 0);
            put32(&mut out, params_off);
            put32(&mut out, 4 * op.params.len() as u32);
            put32(&mut out, op.scratch_len as u32);
            put32(&mut out, 0);
        }
        let meta_off = if self.meta.is_empty() {
            0
        } else {
            out.len() as u32
        };
        out.extend_from_slice(self.meta.as_bytes());
        let h = &mut out[..64];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&VERSION.to_le_bytes());
        h[6..8].copy_from_slice(&HEADER_LEN.to_le_bytes());
        let total = out.len() as u32;
        let fields: [(usize, u32); 10] = [
            (8, total),
            (16, (self.arena_top + scratch_size) as u32),
            (20, self.arena_top as u32),
            (24, scratch_size as u32),
            (32, tensors_off),
            (36, ops_off),
            (44, self.flags),
            (48, meta_off),
            (52, self.meta.len() as u32),
            (56, self.macs),
        ];
        for (off, v) in fields {
            out[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        out[28..30].copy_from_slice(&(self.tensors.len() as u16).to_le_bytes());
        out[30..32].copy_from_slice(&(self.ops.len() as u16).to_le_bytes());
        out[40..42].copy_from_slice(&self.input.to_le_bytes());
        out[42..44].copy_from_slice(&self.output.to_le_bytes());
        refresh_crc(&mut out);
        out
    }

    /// Blob offset of op `i`'s parameter word `word` in a blob built from this builder.
    pub fn param_word_offset(blob: &[u8], op: usize, word: usize) -> usize {
        let ops_off = u32::from_le_bytes(blob[36..40].try_into().unwrap()) as usize;
        let rec = ops_off + op * 32;
        let params_off = u32::from_le_bytes(blob[rec + 16..rec + 20].try_into().unwrap()) as usize;
        params_off + 4 * word
    }

    /// Blob offset of tensor record `t`.
    pub fn tensor_record_offset(blob: &[u8], t: usize) -> usize {
        u32::from_le_bytes(blob[32..36].try_into().unwrap()) as usize + t * 32
    }

    /// Blob offset of op record `i`.
    pub fn op_record_offset(blob: &[u8], i: usize) -> usize {
        u32::from_le_bytes(blob[36..40].try_into().unwrap()) as usize + i * 32
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Rewrites the header CRC after a test patched the body.
pub fn refresh_crc(blob: &mut [u8]) {
    let total = (u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize).min(blob.len());
    if total < 16 {
        return;
    }
    let crc = crate::crc32(&blob[16..total]);
    blob[12..16].copy_from_slice(&crc.to_le_bytes());
}

pub fn patch_u32(blob: &mut [u8], off: usize, v: u32) {
    blob[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn patch_u16(blob: &mut [u8], off: usize, v: u16) {
    blob[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Random per-channel `(bias, mult, shift)` offsets with multipliers that keep outputs spread.
pub fn channel_quant(b: &mut BlobBuilder, rng: &mut Rng, n: usize, shift: (i32, i32)) -> [i32; 3] {
    let bias: Vec<i32> = (0..n).map(|_| rng.int(-2000, 2000)).collect();
    let mult: Vec<i32> = (0..n).map(|_| rng.int(1 << 30, i32::MAX)).collect();
    let shifts: Vec<i32> = (0..n).map(|_| rng.int(shift.0, shift.1)).collect();
    [b.i32s(&bias), b.i32s(&mult), b.i32s(&shifts)]
}

/// CONV2D params with random weights.
pub fn conv_params(
    b: &mut BlobBuilder,
    rng: &mut Rng,
    g: ConvGeometry,
    in_c: usize,
    out_c: usize,
    act: (i32, i32),
) -> Vec<i32> {
    let w = b.i8s(&rng.i8s(out_c * g.kh * g.kw * in_c));
    let [bias, mult, shift] = channel_quant(b, rng, out_c, (-11, -7));
    let geo = [
        g.kh,
        g.kw,
        g.stride_h,
        g.stride_w,
        g.dil_h,
        g.dil_w,
        g.pad_top,
        g.pad_left,
        g.pad_bottom,
        g.pad_right,
    ];
    let mut p: Vec<i32> = geo.iter().map(|&v| v as i32).collect();
    p.extend([act.0, act.1, w, bias, mult, shift]);
    p
}

/// FULLY_CONNECTED params with random weights.
pub fn fc_params(b: &mut BlobBuilder, rng: &mut Rng, n_in: usize, n_out: usize) -> Vec<i32> {
    let w = b.i8s(&rng.i8s(n_in * n_out));
    let [bias, mult, shift] = channel_quant(b, rng, n_out, (-11, -7));
    vec![w, bias, mult, shift, -128, 127]
}

/// A monotone table shaped like the host's sigmoid.
pub fn sigmoid_lut() -> [i8; 256] {
    core::array::from_fn(|i| {
        let x = (i as f64 - 128.0) / 16.0;
        ((256.0 / (1.0 + (-x).exp())).round() - 128.0).clamp(-128.0, 127.0) as i8
    })
}

/// CBAM params (26 words) with random MLP and spatial weights.
pub fn cbam_params(
    b: &mut BlobBuilder,
    rng: &mut Rng,
    c: usize,
    cr: usize,
    k: usize,
    order: i32,
) -> Vec<i32> {
    let lut = sigmoid_lut();
    let w1 = b.i8s(&rng.i8s(cr * c));
    let [b1, m1, s1] = channel_quant(b, rng, cr, (-11, -8));
    let w2 = b.i8s(&rng.i8s(c * cr));
    let [b2, m2, s2] = channel_quant(b, rng, c, (-11, -8));
    let lut_c = b.i8s(&lut);
    let ws = b.i8s(&rng.i8s(k * k * 2));
    let lut_s = b.i8s(&lut);
    vec![
        c as i32,
        cr as i32,
        k as i32,
        order,
        w1,
        b1,
        m1,
        s1,
        rng.int(-128, -100),
        w2,
        b2,
        m2,
        s2,
        0,
        lut_c,
        rng.int(1 << 30, i32::MAX),
        -8,
        rng.int(-20, 20),
        ws,
        rng.int(-500, 500),
        rng.int(1 << 30, i32::MAX),
        -10,
        0,
        lut_s,
        rng.int(1 << 30, i32::MAX),
        -8,
    ]
}

/// The sample model: 28x28x1 raw pixels -> conv 3x3 stride 2 (8, ReLU) -> CBAM (Cr 2, k 7,
/// in place) -> global average pool -> FC(10). Deterministic weights.
pub fn tiny_cbam_blob() -> Vec<u8> {
    let mut rng = Rng::new(0x7153);
    let mut b = BlobBuilder::new();
    let input = b.tensor((28, 28, 1), 1.0 / 255.0, -128);
    let feat = b.tensor((14, 14, 8), 0.05, -128);
    let attended = b.alias_tensor(feat, 0.05, -100);
    let pooled = b.tensor((1, 1, 8), 0.03, -20);
    let logits = b.tensor((1, 1, 10), 0.1, 0);
    b.input = input;
    b.output = logits;
    b.flags = 1;
    b.meta = "name=tiny_cbam\nlabels=T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot\nsource=cbam-core test assembler\ncalibration=none (random weights)\n".into();
    let g = ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..ConvGeometry::square(3, 1)
    };
    let p = conv_params(&mut b, &mut rng, g, 1, 8, (-128, 127));
    b.op(OpCode::Conv2d, &[input], feat, p);
    let p = cbam_params(&mut b, &mut rng, 8, 2, 7, 0);
    b.op(OpCode::Cbam, &[feat], attended, p);
    b.op(
        OpCode::GlobalAvgPool,
        &[attended],
        pooled,
        vec![rng.int(1 << 30, i32::MAX), -7],
    );
    let p = fc_params(&mut b, &mut rng, 8, 10);
    b.op(OpCode::FullyConnected, &[pooled], logits, p);
    b.macs = (14 * 14 * 8 * 9 + 3 * 8 * 2 + 14 * 14 * 98 + 2 * 14 * 14 * 8 + 80) as u32;
    b.build()
}

/// A model using every op code once or more (the fuzzers' richest seed): conv, depthwise,
/// max/avg pool, concat, sigmoid, mul, CBAM in place, a pruned 1x1 conv scattered back by a
/// residual add, global max and average pool, concat, FC.
pub fn all_ops_blob() -> Vec<u8> {
    let mut rng = Rng::new(0xA11);
    let mut b = BlobBuilder::new();
    let t_in = b.tensor((8, 8, 4), 1.0 / 255.0, -128);
    let conv = b.tensor((8, 8, 8), 0.05, -10);
    let dw = b.tensor((4, 4, 8), 0.05, 3);
    let maxp = b.tensor((4, 4, 8), 0.05, 3);
    let avgp = b.tensor((4, 4, 8), 0.05, 3);
    let cat = b.tensor((4, 4, 16), 0.05, 3);
    let sig = b.tensor((4, 4, 16), 1.0 / 256.0, -128);
    let prod = b.tensor((4, 4, 16), 0.03, -7);
    let att = b.alias_tensor(prod, 0.03, -20);
    let kept = [0u16, 3, 7, 8, 15];
    let pruned = b.pruned_tensor((4, 4), &kept, 16, 0.04, 5);
    let sum = b.tensor((4, 4, 16), 0.06, 0);
    let gmax = b.tensor((1, 1, 16), 0.06, 0);
    let gavg = b.tensor((1, 1, 16), 0.02, -30);
    let both = b.tensor((1, 1, 32), 0.06, 0);
    let logits = b.tensor((1, 1, 6), 0.1, 4);
    b.input = t_in;
    b.output = logits;
    b.flags = 1;
    b.meta = "name=all_ops\nlabels=a,b,c,d,e,f\n".into();

    let p = conv_params(
        &mut b,
        &mut rng,
        ConvGeometry::square(3, 1),
        4,
        8,
        (-10, 127),
    );
    b.op(OpCode::Conv2d, &[t_in], conv, p);
    let g = ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..ConvGeometry::square(3, 1)
    };
    let w = b.i8s(&rng.i8s(9 * 8));
    let [bias, mult, shift] = channel_quant(&mut b, &mut rng, 8, (-10, -7));
    let mut p: Vec<i32> = [3, 3, 2, 2, 1, 1, 1, 1, 1, 1].to_vec();
    p.extend([-128, 127, w, bias, mult, shift, 1]);
    debug_assert_eq!(g.output_size(8, 8), Some((4, 4)));
    b.op(OpCode::DepthwiseConv2d, &[conv], dw, p);
    b.op(
        OpCode::MaxPool2d,
        &[dw],
        maxp,
        vec![2, 2, 1, 1, 0, 0, 1, 1, -128, 127],
    );
    b.op(
        OpCode::AvgPool2d,
        &[maxp],
        avgp,
        vec![3, 3, 1, 1, 1, 1, 1, 1, -128, 127],
    );
    b.op(
        OpCode::Concat,
        &[maxp, avgp],
        cat,
        vec![0, 0, rng.int(1 << 30, i32::MAX), 0],
    );
    let lut = b.i8s(&sigmoid_lut());
    b.op(OpCode::Sigmoid, &[cat], sig, vec![lut]);
    b.op(
        OpCode::Mul,
        &[cat, sig],
        prod,
        vec![rng.int(1 << 30, i32::MAX), -8, -128, 127],
    );
    let p = cbam_params(&mut b, &mut rng, 16, 4, 3, 1);
    b.op(OpCode::Cbam, &[prod], att, p);
    let p = conv_params(
        &mut b,
        &mut rng,
        ConvGeometry::square(1, 0),
        16,
        kept.len(),
        (-128, 127),
    );
    b.op(OpCode::Conv2d, &[att], pruned, p);
    let rq = |rng: &mut Rng| rng.int(1 << 30, i32::MAX);
    let p = vec![
        20,
        rq(&mut rng),
        -1,
        rq(&mut rng),
        -1,
        rq(&mut rng),
        -19,
        -128,
        127,
    ];
    b.op(OpCode::Add, &[att, pruned], sum, p);
    b.op(OpCode::GlobalMaxPool, &[sum], gmax, vec![]);
    b.op(OpCode::GlobalAvgPool, &[sum], gavg, vec![rq(&mut rng), -5]);
    b.op(
        OpCode::Concat,
        &[gmax, gavg],
        both,
        vec![0, 0, rq(&mut rng), 1],
    );
    let p = fc_params(&mut b, &mut rng, 32, 6);
    b.op(OpCode::FullyConnected, &[both], logits, p);
    b.build()
}
