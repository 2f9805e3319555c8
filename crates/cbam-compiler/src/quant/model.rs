//! The quantized model: the core's op list in FORMAT.md terms, before arena planning.
//! Everything the blob writer needs is here; the float-side facts (weight scales, source
//! node names) are kept too so the QDQ writer and the report can use the same numbers.

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
}

impl QOpKind {
    /// The FORMAT.md op code.
    pub fn code(&self) -> u16 {
        match self {
            QOpKind::Conv(_) => 1,
            QOpKind::Depthwise { .. } => 2,
            QOpKind::FullyConnected(_) => 3,
            QOpKind::MaxPool(_) => 4,
            QOpKind::AvgPool(_) => 5,
            QOpKind::GlobalAvgPool(_) => 6,
            QOpKind::GlobalMaxPool => 7,
            QOpKind::Add(_) => 8,
            QOpKind::Mul(_) => 9,
            QOpKind::Concat(_) => 10,
            QOpKind::Sigmoid(_) => 11,
            QOpKind::Cbam(_) => 12,
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
