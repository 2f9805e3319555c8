//! A test-only blob assembler over the format's encoder ([`crate::format::BlobWriter`]):
//! tensors placed one after another in the arena, ops with typed parameter words, and the
//! helpers the reader's tests use to patch one field of a record.
//!
//! Layout chosen here: header | constants | parameter words | tensor table | op table |
//! metadata. The format locates every table by offset, so the order is free.

use crate::format::{
    ActWords, AddWords, BlobWriter, CbamWords, ChannelPoolWords, ConcatWords, ConstArrays,
    Conv2dWords, DepthwiseWords, FullyConnectedWords, GlobalAvgPoolWords, HeaderFields, LutWords,
    MulWords, NoWords, OpFields, OpParams, PerChannelWords, PoolWords, RequantWords, TensorFields,
    MAX_INPUTS, NO_INPUT, OP_RECORD_LEN, TENSOR_RECORD_LEN,
};
use crate::kernels::test_support::Rng;
use crate::kernels::ConvGeometry;
use crate::math::Requant;
use std::string::String;
use std::vec::Vec;

#[derive(Clone, Debug)]
pub struct OpDef {
    pub inputs: Vec<u16>,
    pub output: u16,
    pub params: OpParams,
    pub scratch_len: usize,
}

#[derive(Clone, Debug, Default)]
pub struct BlobBuilder {
    /// The header and the constant arrays so far.
    consts: BlobWriter,
    pub tensors: Vec<TensorFields>,
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

    /// Appends a 16-byte aligned constant array; returns its offset as a parameter word.
    pub fn bytes(&mut self, data: &[u8]) -> i32 {
        self.consts.array(data) as i32
    }

    pub fn i8s(&mut self, v: &[i8]) -> i32 {
        self.consts.i8s(v)
    }

    pub fn i32s(&mut self, v: &[i32]) -> i32 {
        self.consts.i32s(v)
    }

    /// A fresh tensor in its own arena region.
    pub fn tensor(&mut self, (h, w, c): (usize, usize, usize), scale: f32, zp: i32) -> u16 {
        self.place(h, w, c, c, 0, scale, zp)
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
        let kept_off = self.consts.u16s(kept);
        self.place(h, w, kept.len(), full_c, kept_off, scale, zp)
    }

    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        h: usize,
        w: usize,
        c: usize,
        full_c: usize,
        kept_off: u32,
        scale: f32,
        zp: i32,
    ) -> u16 {
        let arena_off = self.arena_top as u32;
        self.arena_top += h * w * c;
        self.push_tensor(TensorFields {
            h: h as u16,
            w: w as u16,
            c: c as u16,
            full_c: full_c as u16,
            arena_off,
            kept_off,
            scale,
            zero_point: zp,
            ..TensorFields::default()
        })
    }

    /// A tensor sharing `of`'s arena bytes and shape (an in-place op's output).
    pub fn alias_tensor(&mut self, of: u16, scale: f32, zp: i32) -> u16 {
        let t = TensorFields {
            scale,
            zero_point: zp,
            ..self.tensors[usize::from(of)]
        };
        self.push_tensor(t)
    }

    fn push_tensor(&mut self, t: TensorFields) -> u16 {
        self.tensors.push(t);
        (self.tensors.len() - 1) as u16
    }

    pub fn shape(&self, t: u16) -> (usize, usize, usize) {
        let t = &self.tensors[usize::from(t)];
        (usize::from(t.h), usize::from(t.w), usize::from(t.c))
    }

    /// Adds an op; its scratch_len is what the format says it needs.
    pub fn op(&mut self, inputs: &[u16], output: u16, params: OpParams) -> usize {
        let scratch_len = params.scratch_size(self.shape(inputs[0])).unwrap();
        self.ops.push(OpDef {
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
        let mut w = self.consts.clone();
        let params: Vec<(u32, usize)> = self
            .ops
            .iter()
            .map(|op| {
                let words = op.params.encode();
                (w.words(&words), words.len())
            })
            .collect();
        let tensors_off = w.reserve(self.tensors.len() * TENSOR_RECORD_LEN);
        for (i, t) in self.tensors.iter().enumerate() {
            w.put(tensors_off + (i * TENSOR_RECORD_LEN) as u32, &t.write());
        }
        let ops_off = w.reserve(self.ops.len() * OP_RECORD_LEN);
        for (i, (op, &(params_off, n_words))) in self.ops.iter().zip(&params).enumerate() {
            let mut inputs = [NO_INPUT; MAX_INPUTS];
            inputs[..op.inputs.len()].copy_from_slice(&op.inputs);
            let record = OpFields {
                code: op.params.code().code(),
                n_inputs: op.inputs.len() as u16,
                inputs,
                output: op.output,
                params_off,
                params_len: 4 * n_words as u32,
                scratch_len: op.scratch_len as u32,
                ..OpFields::default()
            };
            w.put(ops_off + (i * OP_RECORD_LEN) as u32, &record.write());
        }
        let meta_off = if self.meta.is_empty() {
            0
        } else {
            w.text(&self.meta)
        };
        w.finish(HeaderFields {
            arena_size: (self.arena_top + scratch_size) as u32,
            scratch_off: self.arena_top as u32,
            scratch_size: scratch_size as u32,
            n_tensors: self.tensors.len() as u16,
            n_ops: self.ops.len() as u16,
            tensors_off,
            ops_off,
            input_tensor: self.input,
            output_tensor: self.output,
            flags: self.flags,
            meta_off,
            meta_len: self.meta.len() as u32,
            macs: self.macs,
            ..HeaderFields::default()
        })
        .unwrap()
    }
}

/// The word index of a field of a words layout (`word!(Conv2dWords, act.min)`): the layouts
/// are `#[repr(C)]` structs of `i32`s in word order.
macro_rules! word {
    ($layout:ty, $($field:tt)+) => {
        core::mem::offset_of!($layout, $($field)+) / 4
    };
}
pub(crate) use word;

/// Changes header fields (the CRC is not refreshed).
pub fn patch_header(blob: &mut [u8], f: impl FnOnce(&mut HeaderFields)) {
    let mut h = HeaderFields::read(blob).unwrap();
    f(&mut h);
    blob[..HeaderFields::LEN].copy_from_slice(&h.write());
}

/// Blob offset of tensor record `t`.
pub fn tensor_record_offset(blob: &[u8], t: usize) -> usize {
    HeaderFields::read(blob).unwrap().tensors_off as usize + t * TENSOR_RECORD_LEN
}

/// Blob offset of op record `i`.
pub fn op_record_offset(blob: &[u8], i: usize) -> usize {
    HeaderFields::read(blob).unwrap().ops_off as usize + i * OP_RECORD_LEN
}

pub fn read_tensor(blob: &[u8], t: usize) -> TensorFields {
    TensorFields::read(&blob[tensor_record_offset(blob, t)..]).unwrap()
}

pub fn read_op(blob: &[u8], i: usize) -> OpFields {
    OpFields::read(&blob[op_record_offset(blob, i)..]).unwrap()
}

/// Changes fields of tensor record `t` (the CRC is not refreshed).
pub fn patch_tensor(blob: &mut [u8], t: usize, f: impl FnOnce(&mut TensorFields)) {
    let mut rec = read_tensor(blob, t);
    f(&mut rec);
    let at = tensor_record_offset(blob, t);
    blob[at..at + TensorFields::LEN].copy_from_slice(&rec.write());
}

/// Changes fields of op record `i` (the CRC is not refreshed).
pub fn patch_op(blob: &mut [u8], i: usize, f: impl FnOnce(&mut OpFields)) {
    let mut rec = read_op(blob, i);
    f(&mut rec);
    let at = op_record_offset(blob, i);
    blob[at..at + OpFields::LEN].copy_from_slice(&rec.write());
}

/// Overwrites parameter word `word` of op `op` (the CRC is not refreshed).
pub fn patch_word(blob: &mut [u8], op: usize, word: usize, v: i32) {
    let at = read_op(blob, op).params_off as usize + 4 * word;
    blob[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn patch_u32(blob: &mut [u8], off: usize, v: u32) {
    blob[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn patch_u16(blob: &mut [u8], off: usize, v: u16) {
    blob[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn requant_words(r: Requant) -> RequantWords {
    RequantWords {
        mult: r.mult,
        shift: r.shift,
    }
}

pub fn act_words((min, max): (i32, i32)) -> ActWords {
    ActWords { min, max }
}

/// CONV2D words for geometry `g` and arrays already in the blob.
pub fn conv_words(
    g: &ConvGeometry,
    act: (i32, i32),
    weights_off: i32,
    channels: PerChannelWords,
) -> Conv2dWords {
    let v = |x: usize| x as i32;
    Conv2dWords {
        kh: v(g.kh),
        kw: v(g.kw),
        stride_h: v(g.stride_h),
        stride_w: v(g.stride_w),
        dil_h: v(g.dil_h),
        dil_w: v(g.dil_w),
        pad_top: v(g.pad_top),
        pad_left: v(g.pad_left),
        pad_bottom: v(g.pad_bottom),
        pad_right: v(g.pad_right),
        act: act_words(act),
        weights_off,
        channels,
    }
}

/// MAX/AVG_POOL2D words for geometry `g` (its dilation is ignored).
pub fn pool_words(g: &ConvGeometry, act: (i32, i32)) -> PoolWords {
    let v = |x: usize| x as i32;
    PoolWords {
        kh: v(g.kh),
        kw: v(g.kw),
        stride_h: v(g.stride_h),
        stride_w: v(g.stride_w),
        pad_top: v(g.pad_top),
        pad_left: v(g.pad_left),
        pad_bottom: v(g.pad_bottom),
        pad_right: v(g.pad_right),
        act: act_words(act),
    }
}

/// Random per-channel `(bias, mult, shift)` arrays with multipliers that keep outputs spread.
pub fn channel_quant(
    b: &mut BlobBuilder,
    rng: &mut Rng,
    n: usize,
    shift: (i32, i32),
) -> PerChannelWords {
    let bias: Vec<i32> = (0..n).map(|_| rng.int(-2000, 2000)).collect();
    let mult: Vec<i32> = (0..n).map(|_| rng.int(1 << 30, i32::MAX)).collect();
    let shifts: Vec<i32> = (0..n).map(|_| rng.int(shift.0, shift.1)).collect();
    PerChannelWords {
        bias_off: b.i32s(&bias),
        mult_off: b.i32s(&mult),
        shift_off: b.i32s(&shifts),
    }
}

/// CONV2D words with random weights.
pub fn conv_params(
    b: &mut BlobBuilder,
    rng: &mut Rng,
    g: ConvGeometry,
    in_c: usize,
    out_c: usize,
    act: (i32, i32),
) -> Conv2dWords {
    let w = b.i8s(&rng.i8s(out_c * g.kh * g.kw * in_c));
    let channels = channel_quant(b, rng, out_c, (-11, -7));
    conv_words(&g, act, w, channels)
}

/// FULLY_CONNECTED words with random weights.
pub fn fc_params(
    b: &mut BlobBuilder,
    rng: &mut Rng,
    n_in: usize,
    n_out: usize,
) -> FullyConnectedWords {
    let weights_off = b.i8s(&rng.i8s(n_in * n_out));
    let channels = channel_quant(b, rng, n_out, (-11, -7));
    FullyConnectedWords {
        weights_off,
        channels,
        act: act_words((-128, 127)),
    }
}

/// A monotone table shaped like the host's sigmoid.
pub fn sigmoid_lut() -> [i8; 256] {
    core::array::from_fn(|i| {
        let x = (i as f64 - 128.0) / 16.0;
        ((256.0 / (1.0 + (-x).exp())).round() - 128.0).clamp(-128.0, 127.0) as i8
    })
}

/// A random requantizer with the given shift.
pub fn rq(rng: &mut Rng, shift: i32) -> RequantWords {
    RequantWords {
        mult: rng.int(1 << 30, i32::MAX),
        shift,
    }
}

/// CBAM words with random MLP and spatial weights.
pub fn cbam_params(
    b: &mut BlobBuilder,
    rng: &mut Rng,
    c: usize,
    cr: usize,
    k: usize,
    order: i32,
) -> CbamWords {
    let lut = sigmoid_lut();
    let w1_off = b.i8s(&rng.i8s(cr * c));
    let mlp1 = channel_quant(b, rng, cr, (-11, -8));
    let w2_off = b.i8s(&rng.i8s(c * cr));
    let mlp2 = channel_quant(b, rng, c, (-11, -8));
    let lut_c_off = b.i8s(&lut);
    let ws_off = b.i8s(&rng.i8s(k * k * 2));
    let lut_s_off = b.i8s(&lut);
    let zp_h = rng.int(-128, -100);
    let f1 = rq(rng, -8);
    let zp_f1 = rng.int(-20, 20);
    let bs = rng.int(-500, 500);
    let spatial = rq(rng, -10);
    let out = rq(rng, -8);
    CbamWords {
        c: c as i32,
        cr: cr as i32,
        k: k as i32,
        order,
        w1_off,
        mlp1,
        zp_h,
        w2_off,
        mlp2,
        zp_z: 0,
        lut_c_off,
        f1,
        zp_f1,
        ws_off,
        bs,
        spatial,
        zp_s: 0,
        lut_s_off,
        out,
    }
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
    b.flags = crate::format::FLAG_RAW_PIXELS;
    b.meta = "name=tiny_cbam\nlabels=T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot\nsource=cbam-core test assembler\ncalibration=none (random weights)\n".into();
    let g = ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..ConvGeometry::square(3, 1)
    };
    let p = conv_params(&mut b, &mut rng, g, 1, 8, (-128, 127));
    b.op(&[input], feat, OpParams::Conv2d(p));
    let p = cbam_params(&mut b, &mut rng, 8, 2, 7, 0);
    b.op(&[feat], attended, OpParams::Cbam(p));
    let gap = GlobalAvgPoolWords {
        out: rq(&mut rng, -7),
    };
    b.op(&[attended], pooled, OpParams::GlobalAvgPool(gap));
    let p = fc_params(&mut b, &mut rng, 8, 10);
    b.op(&[pooled], logits, OpParams::FullyConnected(p));
    b.macs = (14 * 14 * 8 * 9 + 3 * 8 * 2 + 14 * 14 * 98 + 2 * 14 * 14 * 8 + 80) as u32;
    b.build()
}

/// A model using every op code once or more (the fuzzers' richest seed): conv, depthwise,
/// max/avg pool, concat, sigmoid, mul, a spatial attention from its pieces (channel pool,
/// conv, sigmoid, per-pixel mul), CBAM in place, a pruned 1x1 conv scattered back by a
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
    let pools = b.tensor((4, 4, 2), 0.03, -7);
    let logit = b.tensor((4, 4, 1), 0.1, 2);
    let gate = b.tensor((4, 4, 1), 1.0 / 256.0, -128);
    let gated = b.tensor((4, 4, 16), 0.02, -9);
    let att = b.alias_tensor(gated, 0.03, -20);
    let kept = [0u16, 3, 7, 8, 15];
    let pruned = b.pruned_tensor((4, 4), &kept, 16, 0.04, 5);
    let sum = b.tensor((4, 4, 16), 0.06, 0);
    let gmax = b.tensor((1, 1, 16), 0.06, 0);
    let gavg = b.tensor((1, 1, 16), 0.02, -30);
    let both = b.tensor((1, 1, 32), 0.06, 0);
    let logits = b.tensor((1, 1, 6), 0.1, 4);
    b.input = t_in;
    b.output = logits;
    b.flags = crate::format::FLAG_RAW_PIXELS;
    b.meta = "name=all_ops\nlabels=a,b,c,d,e,f\n".into();

    let p = conv_params(
        &mut b,
        &mut rng,
        ConvGeometry::square(3, 1),
        4,
        8,
        (-10, 127),
    );
    b.op(&[t_in], conv, OpParams::Conv2d(p));
    let g = ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..ConvGeometry::square(3, 1)
    };
    let w = b.i8s(&rng.i8s(9 * 8));
    let channels = channel_quant(&mut b, &mut rng, 8, (-10, -7));
    debug_assert_eq!(g.output_size(8, 8), Some((4, 4)));
    let p = DepthwiseWords {
        conv: conv_words(&g, (-128, 127), w, channels),
        depth_multiplier: 1,
    };
    b.op(&[conv], dw, OpParams::DepthwiseConv2d(p));
    let p = pool_words(&ConvGeometry::square(2, 0), (-128, 127));
    let p = PoolWords {
        pad_bottom: 1,
        pad_right: 1,
        ..p
    };
    b.op(&[dw], maxp, OpParams::MaxPool2d(p));
    let p = pool_words(&ConvGeometry::square(3, 1), (-128, 127));
    b.op(&[maxp], avgp, OpParams::AvgPool2d(p));
    let p = ConcatWords::new(&[RequantWords::default(), rq(&mut rng, 0)]).unwrap();
    b.op(&[maxp, avgp], cat, OpParams::Concat(p));
    let lut_off = b.i8s(&sigmoid_lut());
    b.op(&[cat], sig, OpParams::Sigmoid(LutWords { lut_off }));
    let p = MulWords {
        out: rq(&mut rng, -8),
        act: act_words((-128, 127)),
    };
    b.op(&[cat, sig], prod, OpParams::Mul(p));
    let p = ChannelPoolWords {
        mean_channel: 1,
        max_channel: 0,
    };
    b.op(&[prod], pools, OpParams::ChannelPool(p));
    let p = conv_params(
        &mut b,
        &mut rng,
        ConvGeometry::square(3, 1),
        2,
        1,
        (-128, 127),
    );
    b.op(&[pools], logit, OpParams::Conv2d(p));
    b.op(&[logit], gate, OpParams::Sigmoid(LutWords { lut_off }));
    let p = MulWords {
        out: rq(&mut rng, -8),
        act: act_words((-128, 127)),
    };
    b.op(&[prod, gate], gated, OpParams::Mul(p));
    let p = cbam_params(&mut b, &mut rng, 16, 4, 3, 1);
    b.op(&[gated], att, OpParams::Cbam(p));
    let p = conv_params(
        &mut b,
        &mut rng,
        ConvGeometry::square(1, 0),
        16,
        kept.len(),
        (-128, 127),
    );
    b.op(&[att], pruned, OpParams::Conv2d(p));
    let p = AddWords {
        left_shift: 20,
        in1: rq(&mut rng, -1),
        in2: rq(&mut rng, -1),
        out: rq(&mut rng, -19),
        act: act_words((-128, 127)),
    };
    b.op(&[att, pruned], sum, OpParams::Add(p));
    b.op(&[sum], gmax, OpParams::GlobalMaxPool(NoWords {}));
    let p = GlobalAvgPoolWords {
        out: rq(&mut rng, -5),
    };
    b.op(&[sum], gavg, OpParams::GlobalAvgPool(p));
    let p = ConcatWords::new(&[RequantWords::default(), rq(&mut rng, 1)]).unwrap();
    b.op(&[gmax, gavg], both, OpParams::Concat(p));
    let p = fc_params(&mut b, &mut rng, 32, 6);
    b.op(&[both], logits, OpParams::FullyConnected(p));
    b.build()
}
