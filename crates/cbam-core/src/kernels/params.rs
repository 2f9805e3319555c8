//! Every kernel's parameters, in one place (as CMSIS-NN keeps them in `arm_nn_types.h`):
//! the blob's decoder builds them, the kernels and the fused CBAM op read them, and no
//! kernel imports another kernel's module for its parameters.

use crate::le::{I32Le, U16Le};
use crate::math::{ActRange, Requant};

/// An activation tensor's shape, NHWC with batch 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c }
    }

    /// `h * w`, or `None` on overflow.
    pub fn pixels(&self) -> Option<usize> {
        self.h.checked_mul(self.w)
    }

    /// `h * w * c`, or `None` on overflow.
    pub fn len(&self) -> Option<usize> {
        self.pixels()?.checked_mul(self.c)
    }

    /// Whether the tensor has no elements (for users of the kernel API; the crate itself
    /// checks the dimensions it needs).
    #[cfg(feature = "kernels")]
    pub fn is_empty(&self) -> bool {
        self.h == 0 || self.w == 0 || self.c == 0
    }
}

/// Per-output-channel bias and requantizers with the tensors' zero points and the clamp:
/// the quantization of every accumulating kernel (conv, depthwise, fully connected).
#[derive(Clone, Copy, Debug)]
pub struct ChannelQuant<'a> {
    pub in_zp: i32,
    pub out_zp: i32,
    pub act: ActRange,
    pub bias: I32Le<'a>,
    pub mult: I32Le<'a>,
    pub shift: I32Le<'a>,
}

/// Kernel window, stride, dilation and explicit padding (CONV2D, DEPTHWISE_CONV2D and the
/// pools).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dil_h: usize,
    pub dil_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl ConvGeometry {
    /// A `k x k` window, stride 1, no dilation, `pad` on every side.
    pub const fn square(k: usize, pad: usize) -> Self {
        Self {
            kh: k,
            kw: k,
            stride_h: 1,
            stride_w: 1,
            dil_h: 1,
            dil_w: 1,
            pad_top: pad,
            pad_left: pad,
            pad_bottom: pad,
            pad_right: pad,
        }
    }

    /// The output `(h, w)` for an input `(in_h, in_w)`, or `None` when it would be empty,
    /// a stride/dilation/kernel is zero, or the arithmetic overflows.
    pub fn output_size(&self, in_h: usize, in_w: usize) -> Option<(usize, usize)> {
        let h = axis_out(
            in_h,
            self.kh,
            self.stride_h,
            self.dil_h,
            self.pad_top,
            self.pad_bottom,
        )?;
        let w = axis_out(
            in_w,
            self.kw,
            self.stride_w,
            self.dil_w,
            self.pad_left,
            self.pad_right,
        )?;
        Some((h, w))
    }

    /// Whether CONV2D takes its pointwise path for this geometry.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.pad_bottom == 0
            && self.pad_right == 0
    }
}

fn axis_out(
    size: usize,
    k: usize,
    stride: usize,
    dil: usize,
    pad_a: usize,
    pad_b: usize,
) -> Option<usize> {
    if k == 0 || stride == 0 || dil == 0 {
        return None;
    }
    let padded = size.checked_add(pad_a)?.checked_add(pad_b)?;
    let span = dil.checked_mul(k - 1)?.checked_add(1)?;
    let room = padded.checked_sub(span)?;
    Some(room / stride + 1)
}

/// Parameters of a CONV2D op.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dParams<'a> {
    pub geometry: ConvGeometry,
    /// `[out.c][kh][kw][in.c]`.
    pub weights: &'a [i8],
    pub quant: ChannelQuant<'a>,
    /// The weights as [`crate::kernels::conv2d::conv2d_packing`] laid them out for this CPU's
    /// kernel, or empty: a kernel that finds no layout of its own here packs the weights
    /// itself on every call.
    pub packed: &'a [i32],
}

/// Parameters of a DEPTHWISE_CONV2D op.
#[derive(Clone, Copy, Debug)]
pub struct DepthwiseParams<'a> {
    pub geometry: ConvGeometry,
    pub depth_multiplier: usize,
    /// `[kh][kw][out.c]` (TFLite's 1HWO).
    pub weights: &'a [i8],
    pub quant: ChannelQuant<'a>,
}

/// Parameters of a FULLY_CONNECTED op.
#[derive(Clone, Copy, Debug)]
pub struct FullyConnectedParams<'a> {
    /// `[n_out][n_in]`.
    pub weights: &'a [i8],
    pub quant: ChannelQuant<'a>,
}

/// Parameters of a pooling op; the geometry's dilation is always 1.
#[derive(Clone, Copy, Debug)]
pub struct PoolParams {
    pub geometry: ConvGeometry,
    pub act: ActRange,
}

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average,
}

/// Parameters of GLOBAL_AVG_POOL: the requantizer folds `1/(h*w)` and `s_in/s_out`.
#[derive(Clone, Copy, Debug)]
pub struct GlobalAvgPoolParams {
    pub requant: Requant,
    pub in_zp: i32,
    pub out_zp: i32,
}

/// Parameters of an ADD op (TFLite's `ArithmeticParams` for int8 add).
#[derive(Clone, Copy, Debug)]
pub struct AddParams {
    pub left_shift: u32,
    pub in1_zp: i32,
    pub in1: Requant,
    pub in2_zp: i32,
    pub in2: Requant,
    pub out: Requant,
    pub out_zp: i32,
    pub act: ActRange,
}

/// How the second input of an ADD maps its channels onto the output's.
#[derive(Clone, Copy, Debug)]
pub enum In2Channels<'a> {
    /// Same channel count as the output.
    Dense,
    /// A pruned tensor: its stored channel `k` is output channel `kept[k]`; the list is
    /// strictly increasing and below the output's channel count.
    Scatter(U16Le<'a>),
}

/// Parameters of a MUL op.
#[derive(Clone, Copy, Debug)]
pub struct MulParams {
    pub in1_zp: i32,
    pub in2_zp: i32,
    pub out: Requant,
    pub out_zp: i32,
    pub act: ActRange,
}

/// How the second input of a MUL is laid out relative to the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulBroadcast {
    /// Same shape as the first input.
    None,
    /// `(1, 1, c)`: one factor per channel.
    PerChannel,
    /// `(h, w, 1)`: one factor per pixel.
    PerPixel,
}

impl MulBroadcast {
    /// Classifies `in2` against `in1`, or `None` when MUL cannot combine them.
    pub fn classify(in1: Shape, in2: Shape) -> Option<Self> {
        if in2 == in1 {
            Some(Self::None)
        } else if in2 == Shape::new(1, 1, in1.c) {
            Some(Self::PerChannel)
        } else if in2 == Shape::new(in1.h, in1.w, 1) {
            Some(Self::PerPixel)
        } else {
            None
        }
    }
}

/// One input of a CONCAT with its own quantization.
#[derive(Clone, Copy, Debug)]
pub struct ConcatInput<'a> {
    pub data: &'a [i8],
    pub c: usize,
    pub zp: i32,
    /// `None` when the input already has the output's quantization and is copied.
    pub requant: Option<Requant>,
}

/// Parameters of a CHANNEL_POOL op: the output channel of each per-pixel statistic
/// (`None`: not computed) and the zero point input and output share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelPoolParams {
    pub mean: Option<usize>,
    pub max: Option<usize>,
    pub zp: i32,
}

impl ChannelPoolParams {
    /// The output's channels: one per statistic computed.
    pub fn out_channels(&self) -> usize {
        usize::from(self.mean.is_some()) + usize::from(self.max.is_some())
    }

    /// Whether every statistic has its own output channel and at least one is computed.
    pub fn is_consistent(&self) -> bool {
        let n = self.out_channels();
        let inside = |slot: Option<usize>| slot.is_none_or(|i| i < n);
        n > 0 && self.mean != self.max && inside(self.mean) && inside(self.max)
    }
}

/// A SIGMOID table: input `x` maps to entry `x + 128` (output scale 1/256, zero point
/// -128).
pub type SigmoidLut = [i8; 256];

/// Which pooled map is input channel 0 of the CBAM spatial convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolOrder {
    /// `[mean; max]` (the paper).
    MeanMax,
    /// `[max; mean]`.
    MaxMean,
}

/// The shared MLP of the CBAM channel attention.
#[derive(Clone, Copy, Debug)]
pub struct CbamMlp<'a> {
    /// `[Cr][C]`.
    pub w1: &'a [i8],
    pub b1: I32Le<'a>,
    pub m1: I32Le<'a>,
    pub s1: I32Le<'a>,
    pub zp_h: i32,
    /// `[C][Cr]`.
    pub w2: &'a [i8],
    /// Twice the second layer's bias (both branches share the layer).
    pub b2: I32Le<'a>,
    pub m2: I32Le<'a>,
    pub s2: I32Le<'a>,
    pub zp_z: i32,
}

/// Every parameter of the fused CBAM op (words of FORMAT.md op 12 plus the tensors' zero
/// points).
#[derive(Clone, Copy, Debug)]
pub struct CbamParams<'a> {
    pub c: usize,
    pub cr: usize,
    /// Odd spatial kernel size; padding `k/2`, stride 1.
    pub k: usize,
    pub order: PoolOrder,
    pub mlp: CbamMlp<'a>,
    pub lut_c: &'a SigmoidLut,
    pub f1: Requant,
    pub zp_f1: i32,
    /// `[k][k][2]`.
    pub ws: &'a [i8],
    pub bs: i32,
    pub rs: Requant,
    pub zp_s: i32,
    pub lut_s: &'a SigmoidLut,
    pub out: Requant,
    pub zp_in: i32,
    pub zp_out: i32,
}
