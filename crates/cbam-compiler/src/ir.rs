//! The compiler's float graph IR: what ONNX import produces and every pass consumes.
//!
//! Logical shapes follow ONNX (NCHW, batch 1 dropped: `[c, h, w]`, or `[n]` for vectors);
//! the NHWC transposition happens only when lowering to the core's ops. Every tensor keeps
//! the ONNX value name it came from, so calibration can ask tract for exactly that value.

/// Index into [`Graph::tensors`].
pub type TensorId = usize;

#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub tensors: Vec<TensorDef>,
    /// Topologically ordered.
    pub nodes: Vec<Node>,
    pub input: TensorId,
    pub output: TensorId,
    pub meta: ModelMeta,
}

/// Pixel convention stored in the ONNX `metadata_props` (`cbam.mean`, `cbam.std`, `cbam.labels`):
/// model input = (pixel / 255 - mean[c]) / std[c].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelMeta {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub labels: Vec<String>,
    pub source_name: String,
    pub opset: i64,
    /// The source model's batch axis: the IR runs one image, the QDQ model keeps the axis.
    pub batch: Batch,
}

/// The batch axis of the source model's input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Batch {
    /// A fixed batch of one (or an axis the exporter left without a size or name).
    #[default]
    One,
    /// A symbolic (dynamic) axis of this name, such as `N` or `batch`.
    Symbolic(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorDef {
    /// The ONNX value name (for calibration through tract).
    pub name: String,
    /// `[c, h, w]` for feature maps, `[n]` for vectors (batch dimension dropped).
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The ONNX node name (or a generated one), used in every error message.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
}

/// Activation fused into the op that produces a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// Clip(lo, hi); ReLU6 is `Clip(0, 6)`.
    Clip(f32, f32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// `[out_c][in_c / groups][kh][kw]` flattened, as in ONNX.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out_c: usize,
    pub in_c: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub groups: usize,
    pub act: Activation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[out][in]` flattened; `in` indexes the flattened NCHW input as ONNX does.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out_features: usize,
    pub in_features: usize,
    pub act: Activation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: [usize; 4],
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub scale: Vec<f32>,
    pub bias: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub epsilon: f32,
}

/// Order of the two channel-pooled maps fed to the spatial-attention conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpatialOrder {
    /// `[mean; max]` as in the CBAM paper.
    MeanMax,
    /// `[max; mean]`.
    MaxMean,
}

/// A recognised CBAM block. The ONNX names of its internal values are kept so the
/// calibrator can observe each of them (see [`CbamValues`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Cbam {
    pub channels: usize,
    pub hidden: usize,
    /// First MLP layer `[hidden][channels]`, followed by ReLU.
    pub mlp1: Linear,
    /// Second MLP layer `[channels][hidden]`.
    pub mlp2: Linear,
    /// Spatial conv, 2 -> 1 channel, `k x k`, BN folded in.
    pub spatial: Conv,
    pub order: SpatialOrder,
    pub values: CbamValues,
}

/// ONNX value names inside a CBAM block, for calibration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CbamValues {
    pub avg_pooled: String,
    pub max_pooled: String,
    pub hidden_avg: String,
    pub hidden_max: String,
    /// `MLP(avg) + MLP(max)`, before the sigmoid.
    pub channel_logit: String,
    /// `Mc`, the channel attention: the sigmoid's output, one value per channel (what
    /// pruning ranks channels by).
    pub channel_attention: String,
    /// `F' = Mc * F`.
    pub channel_scaled: String,
    /// The concatenated `[mean; max]` (or `[max; mean]`) map.
    pub pooled_map: String,
    /// The spatial conv (+BN) output, before the sigmoid.
    pub spatial_logit: String,
}

impl CbamValues {
    /// Every name the block keeps, for checks that each is an ONNX value.
    pub fn all(&self) -> [&String; 9] {
        [
            &self.avg_pooled,
            &self.max_pooled,
            &self.hidden_avg,
            &self.hidden_max,
            &self.channel_logit,
            &self.channel_attention,
            &self.channel_scaled,
            &self.pooled_map,
            &self.spatial_logit,
        ]
    }

    /// The values whose ranges the lowering reads (the pooled vectors and map keep their
    /// input's quantization), skipping names the import could not give.
    pub fn quantized(&self) -> impl Iterator<Item = &String> {
        [
            &self.hidden_avg,
            &self.hidden_max,
            &self.channel_logit,
            &self.channel_scaled,
            &self.spatial_logit,
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv(Conv),
    Linear(Linear),
    BatchNorm(BatchNorm),
    MaxPool(Pool),
    AvgPool(Pool),
    GlobalAvgPool,
    GlobalMaxPool,
    /// Mean over the channel axis, keepdims (`[1, h, w]`).
    ChannelMean,
    /// Max over the channel axis, keepdims.
    ChannelMax,
    /// `act(scales[0] * a + scales[1] * b)`. The scales are positive constant factors of
    /// the inputs folded in (timm's light CBAM averages two maps as `0.5 * a + 0.5 * b`);
    /// the core's ADD applies them in its input requantizers, at no cost.
    Add {
        act: Activation,
        scales: [f32; 2],
    },
    Mul,
    Concat,
    Sigmoid,
    Relu,
    Clip(f32, f32),
    /// Flatten/Reshape to a vector; a no-op after global pooling.
    Flatten,
    Identity,
    Softmax,
    Cbam(Box<Cbam>),
    /// An element-wise function with no int8 arithmetic of its own: run as a lookup table.
    Pointwise(Pointwise),
    /// `x * scale[c] + bias[c]`: a Mul or Add by a constant that did not fold into the op
    /// producing `x`. One value in `scale`/`bias` applies to every channel.
    Affine {
        scale: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Zero padding of the spatial axes, `[top, left, bottom, right]`; folds into the Conv or
    /// average pool it feeds.
    Pad([usize; 4]),
}

impl Op {
    /// A plain `act(a + b)`.
    pub const fn add(act: Activation) -> Op {
        Op::Add {
            act,
            scales: [1.0; 2],
        }
    }
}

/// Element-wise functions ONNX exporters emit for activations and gates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pointwise {
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
    /// `x` for `x >= 0`, `alpha * x` below.
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    /// `x * sigmoid(x)` (SiLU, Swish).
    Silu,
    /// `x` for `x > 0`, `alpha * (e^x - 1)` below.
    Elu {
        alpha: f32,
    },
}

impl Pointwise {
    /// The float function: the meaning the int8 table is built from.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Pointwise::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Pointwise::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Pointwise::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Pointwise::Tanh => x.tanh(),
            Pointwise::Silu => x / (1.0 + (-x).exp()),
            Pointwise::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
        }
    }

    /// The ONNX-style name, for reports and errors.
    pub fn name(self) -> &'static str {
        match self {
            Pointwise::HardSigmoid { .. } => "HardSigmoid",
            Pointwise::HardSwish => "HardSwish",
            Pointwise::LeakyRelu { .. } => "LeakyRelu",
            Pointwise::Tanh => "Tanh",
            Pointwise::Silu => "Silu",
            Pointwise::Elu { .. } => "Elu",
        }
    }
}
