//! The quantized model: the core's op list in FORMAT.md terms, before arena planning.
//! Everything the blob writer needs is here; the float-side facts (weight scales, source
//! node names) are kept too so the QDQ writer and the report can use the same numbers.

use cbam_core::format::{
    self, ActWords, ConstArrays, OpCode, OpParams, PerChannelWords, RequantWords,
};

use super::math::QParams;
use crate::ir::TensorId;

/// Index into [`QModel::tensors`].
pub type QTensorId = usize;

#[derive(Debug, Clone, PartialEq)]
pub struct QModel {
    pub tensors: Vec<QTensor>,
    /// Execution order.
    pub ops: Vec<QOp>,
    pub input: QTensorId,
    pub output: QTensorId,
    /// The device feeds `q = pixel - 128` (FORMAT.md header flag bit 0).
    pub input_is_pixels: bool,
    /// For every IR tensor, the quantized tensor that holds its value on the device
    /// (Flatten/Identity/dropped Softmax share their input's tensor).
    pub tensor_map: Vec<Option<QTensorId>>,
    /// Multiply-accumulates per inference.
    pub macs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QTensor {
    /// The ONNX value name this tensor holds.
    pub name: String,
    /// NHWC without batch: `[h, w, c]`.
    pub shape: [usize; 3],
    /// Logical channel count (`> shape[2]` only for a pruned tensor with a kept list).
    pub full_c: usize,
    pub kept: Option<Vec<u16>>,
    pub q: QParams,
    /// The IR tensor it came from.
    pub source: TensorId,
}

impl QTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QOp {
    /// The IR node it was lowered from (errors, reports, QDQ).
    pub node: String,
    pub inputs: Vec<QTensorId>,
    pub output: QTensorId,
    pub kind: QOpKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QOpKind {
    Conv(ConvParams),
    Depthwise {
        conv: ConvParams,
        depth_multiplier: usize,
    },
    FullyConnected(FcParams),
    MaxPool(PoolParams),
    AvgPool(PoolParams),
    GlobalAvgPool(Requant),
    GlobalMaxPool,
    Add(AddParams),
    Mul(MulParams),
    /// One requantizer per input; `Requant::COPY` means "same quantization, copy".
    Concat(Vec<Requant>),
    Sigmoid(Box<[i8; 256]>),
    Cbam(Box<CbamParams>),
    /// An element-wise function's table, any output quantization.
    Lut(Box<[i8; 256]>),
}

impl QOpKind {
    /// The FORMAT.md op code.
    pub fn code(&self) -> OpCode {
        match self {
            QOpKind::Conv(_) => OpCode::Conv2d,
            QOpKind::Depthwise { .. } => OpCode::DepthwiseConv2d,
            QOpKind::FullyConnected(_) => OpCode::FullyConnected,
            QOpKind::MaxPool(_) => OpCode::MaxPool2d,
            QOpKind::AvgPool(_) => OpCode::AvgPool2d,
            QOpKind::GlobalAvgPool(_) => OpCode::GlobalAvgPool,
            QOpKind::GlobalMaxPool => OpCode::GlobalMaxPool,
            QOpKind::Add(_) => OpCode::Add,
            QOpKind::Mul(_) => OpCode::Mul,
            QOpKind::Concat(_) => OpCode::Concat,
            QOpKind::Sigmoid(_) => OpCode::Sigmoid,
            QOpKind::Cbam(_) => OpCode::Cbam,
            QOpKind::Lut(_) => OpCode::Lut,
        }
    }

    /// The op's parameter words; `arrays` stores each constant array (in the order the
    /// writer lays them out) and answers its offset. With [`format::Unplaced`] the words
    /// carry every value but no array offset, enough to ask the op's scratch size.
    pub fn params(&self, arrays: &mut impl ConstArrays) -> OpParams {
        match self {
            QOpKind::Conv(c) => OpParams::Conv2d(c.words(arrays)),
            QOpKind::Depthwise {
                conv,
                depth_multiplier,
            } => OpParams::DepthwiseConv2d(format::DepthwiseWords {
                conv: conv.words(arrays),
                depth_multiplier: word(*depth_multiplier),
            }),
            QOpKind::FullyConnected(f) => OpParams::FullyConnected(format::FullyConnectedWords {
                weights_off: arrays.i8s(&f.weights),
                channels: per_channel(arrays, &f.bias, &f.mult, &f.shift),
                act: f.clamp.words(),
            }),
            QOpKind::MaxPool(p) => OpParams::MaxPool2d(p.words()),
            QOpKind::AvgPool(p) => OpParams::AvgPool2d(p.words()),
            QOpKind::GlobalAvgPool(r) => {
                OpParams::GlobalAvgPool(format::GlobalAvgPoolWords { out: r.words() })
            }
            QOpKind::GlobalMaxPool => OpParams::GlobalMaxPool(format::NoWords {}),
            QOpKind::Add(a) => OpParams::Add(format::AddWords {
                left_shift: a.left_shift,
                in1: a.in1.words(),
                in2: a.in2.words(),
                out: a.out.words(),
                act: a.clamp.words(),
            }),
            QOpKind::Mul(m) => OpParams::Mul(format::MulWords {
                out: m.out.words(),
                act: m.clamp.words(),
            }),
            QOpKind::Concat(rs) => {
                // More inputs than the format holds: the writer refuses the op before this.
                let words: Vec<RequantWords> = rs
                    .iter()
                    .take(format::MAX_INPUTS)
                    .map(|r| r.words())
                    .collect();
                OpParams::Concat(format::ConcatWords::new(&words).unwrap_or_default())
            }
            QOpKind::Sigmoid(lut) => OpParams::Sigmoid(format::LutWords {
                lut_off: arrays.i8s(&lut[..]),
            }),
            QOpKind::Cbam(p) => OpParams::Cbam(p.words(arrays)),
            QOpKind::Lut(lut) => OpParams::Lut(format::LutWords {
                lut_off: arrays.i8s(&lut[..]),
            }),
        }
    }

    /// Bytes of int8 weights this op stores.
    pub fn weight_bytes(&self) -> usize {
        match self {
            QOpKind::Conv(c) | QOpKind::Depthwise { conv: c, .. } => c.weights.len(),
            QOpKind::FullyConnected(f) => f.weights.len(),
            QOpKind::Cbam(c) => c.w1.len() + c.w2.len() + c.ws.len(),
            _ => 0,
        }
    }
}

/// A real multiplier as FORMAT.md's `(mult, shift)` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requant {
    pub mult: i32,
    pub shift: i32,
}

impl Requant {
    pub const COPY: Requant = Requant { mult: 0, shift: 0 };

    pub fn from_real(real: f64) -> Requant {
        let (mult, shift) = super::math::quantize_multiplier(real);
        Requant { mult, shift }
    }
}

/// Fused activation clamp in the output's int8 domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamp {
    pub min: i32,
    pub max: i32,
}

impl Clamp {
    pub const NONE: Clamp = Clamp {
        min: -128,
        max: 127,
    };
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub clamp: Clamp,
    /// OHWI for CONV2D, 1HWO for DEPTHWISE_CONV2D.
    pub weights: Vec<i8>,
    pub weight_scales: Vec<f32>,
    pub bias: Vec<i32>,
    pub mult: Vec<i32>,
    pub shift: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FcParams {
    /// `[n_out][n_in]`, inputs in NHWC flattening order.
    pub weights: Vec<i8>,
    pub weight_scales: Vec<f32>,
    pub bias: Vec<i32>,
    pub mult: Vec<i32>,
    pub shift: Vec<i32>,
    pub clamp: Clamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub clamp: Clamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddParams {
    pub left_shift: i32,
    pub in1: Requant,
    pub in2: Requant,
    pub out: Requant,
    pub clamp: Clamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MulParams {
    pub out: Requant,
    pub clamp: Clamp,
}

/// FORMAT.md op 12, with the intermediate quantizations kept for reports and QDQ.
#[derive(Debug, Clone, PartialEq)]
pub struct CbamParams {
    pub channels: usize,
    pub hidden: usize,
    pub kernel: usize,
    /// 0: `[mean; max]`, 1: `[max; mean]`.
    pub order: u8,
    pub w1: Vec<i8>,
    pub w1_scales: Vec<f32>,
    pub b1: Vec<i32>,
    pub m1: Vec<i32>,
    pub s1: Vec<i32>,
    pub hidden_q: QParams,
    pub w2: Vec<i8>,
    pub w2_scales: Vec<f32>,
    /// Twice the second layer's bias: both pooled branches share one second layer.
    pub b2: Vec<i32>,
    pub m2: Vec<i32>,
    pub s2: Vec<i32>,
    pub logit_q: QParams,
    pub lut_c: Box<[i8; 256]>,
    pub f1: Requant,
    pub f1_q: QParams,
    /// `[k][k][2]`, input channel order as `order`.
    pub ws: Vec<i8>,
    pub ws_scale: f32,
    pub bs: i32,
    pub ms: Requant,
    pub spatial_q: QParams,
    pub lut_s: Box<[i8; 256]>,
    pub out: Requant,
}

/// A count or size as a parameter word (saturating: the reader rejects what does not fit).
fn word(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Stores per-channel bias, multiplier and shift arrays, in that order.
fn per_channel(
    arrays: &mut impl ConstArrays,
    bias: &[i32],
    mult: &[i32],
    shift: &[i32],
) -> PerChannelWords {
    PerChannelWords {
        bias_off: arrays.i32s(bias),
        mult_off: arrays.i32s(mult),
        shift_off: arrays.i32s(shift),
    }
}

impl Requant {
    fn words(self) -> RequantWords {
        RequantWords {
            mult: self.mult,
            shift: self.shift,
        }
    }
}

impl Clamp {
    fn words(self) -> ActWords {
        ActWords {
            min: self.min,
            max: self.max,
        }
    }
}

impl ConvParams {
    /// CONV2D's words; stores weights, then bias, multiplier and shift.
    fn words(&self, arrays: &mut impl ConstArrays) -> format::Conv2dWords {
        let weights_off = arrays.i8s(&self.weights);
        let channels = per_channel(arrays, &self.bias, &self.mult, &self.shift);
        let [pad_top, pad_left, pad_bottom, pad_right] = self.pads.map(word);
        format::Conv2dWords {
            kh: word(self.kernel[0]),
            kw: word(self.kernel[1]),
            stride_h: word(self.stride[0]),
            stride_w: word(self.stride[1]),
            dil_h: word(self.dilation[0]),
            dil_w: word(self.dilation[1]),
            pad_top,
            pad_left,
            pad_bottom,
            pad_right,
            act: self.clamp.words(),
            weights_off,
            channels,
        }
    }
}

impl PoolParams {
    fn words(&self) -> format::PoolWords {
        let [pad_top, pad_left, pad_bottom, pad_right] = self.pads.map(word);
        format::PoolWords {
            kh: word(self.kernel[0]),
            kw: word(self.kernel[1]),
            stride_h: word(self.stride[0]),
            stride_w: word(self.stride[1]),
            pad_top,
            pad_left,
            pad_bottom,
            pad_right,
            act: self.clamp.words(),
        }
    }
}

impl CbamParams {
    /// CBAM's words; stores w1, b1, m1, s1, w2, b2, m2, s2, the channel table, the spatial
    /// weights and the spatial table, in that order.
    fn words(&self, arrays: &mut impl ConstArrays) -> format::CbamWords {
        let w1_off = arrays.i8s(&self.w1);
        let mlp1 = per_channel(arrays, &self.b1, &self.m1, &self.s1);
        let w2_off = arrays.i8s(&self.w2);
        let mlp2 = per_channel(arrays, &self.b2, &self.m2, &self.s2);
        let lut_c_off = arrays.i8s(&self.lut_c[..]);
        let ws_off = arrays.i8s(&self.ws);
        let lut_s_off = arrays.i8s(&self.lut_s[..]);
        format::CbamWords {
            c: word(self.channels),
            cr: word(self.hidden),
            k: word(self.kernel),
            order: i32::from(self.order),
            w1_off,
            mlp1,
            zp_h: self.hidden_q.zero_point,
            w2_off,
            mlp2,
            zp_z: self.logit_q.zero_point,
            lut_c_off,
            f1: self.f1.words(),
            zp_f1: self.f1_q.zero_point,
            ws_off,
            bs: self.bs,
            spatial: self.ms.words(),
            zp_s: self.spatial_q.zero_point,
            lut_s_off,
            out: self.out.words(),
        }
    }
}
