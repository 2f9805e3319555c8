//! One words layout per op (FORMAT.md "Op codes and parameters"). Fields named `*_off` are
//! blob offsets of constant arrays whose lengths follow from the op's shapes.

use super::words::{words, ActWords, PerChannelWords, RequantWords, WordBuf, Words};
use super::MAX_INPUTS;
use crate::le::I32Le;

words! {
    /// CONV2D (16 words). Weights `i8[out.c][kh][kw][in.c]`.
    pub struct Conv2dWords {
        pub kh: i32,
        pub kw: i32,
        pub stride_h: i32,
        pub stride_w: i32,
        pub dil_h: i32,
        pub dil_w: i32,
        pub pad_top: i32,
        pub pad_left: i32,
        pub pad_bottom: i32,
        pub pad_right: i32,
        pub act: ActWords,
        pub weights_off: i32,
        pub channels: PerChannelWords,
    }
}

words! {
    /// DEPTHWISE_CONV2D (17 words): CONV2D's, with weights `i8[kh][kw][out.c]`, then
    /// `depth_multiplier` (`out.c = in.c * depth_multiplier`).
    pub struct DepthwiseWords {
        pub conv: Conv2dWords,
        pub depth_multiplier: i32,
    }
}

words! {
    /// FULLY_CONNECTED (6 words). Weights `i8[n_out][n_in]`, the input read flat in NHWC.
    pub struct FullyConnectedWords {
        pub weights_off: i32,
        pub channels: PerChannelWords,
        pub act: ActWords,
    }
}

words! {
    /// MAX_POOL2D and AVG_POOL2D (10 words).
    pub struct PoolWords {
        pub kh: i32,
        pub kw: i32,
        pub stride_h: i32,
        pub stride_w: i32,
        pub pad_top: i32,
        pub pad_left: i32,
        pub pad_bottom: i32,
        pub pad_right: i32,
        pub act: ActWords,
    }
}

words! {
    /// GLOBAL_AVG_POOL (2 words): the requantizer with `1/(h*w)` folded in.
    pub struct GlobalAvgPoolWords {
        pub out: RequantWords,
    }
}

words! {
    /// An op without parameter words (GLOBAL_MAX_POOL).
    pub struct NoWords {}
}

words! {
    /// ADD (9 words): TFLite's int8 Add.
    pub struct AddWords {
        pub left_shift: i32,
        pub in1: RequantWords,
        pub in2: RequantWords,
        pub out: RequantWords,
        pub act: ActWords,
    }
}

words! {
    /// MUL (4 words).
    pub struct MulWords {
        pub out: RequantWords,
        pub act: ActWords,
    }
}

words! {
    /// SIGMOID and LUT (1 word): a 256-entry `i8` table, entry `x + 128` for input `x`.
    pub struct LutWords {
        pub lut_off: i32,
    }
}

words! {
    /// CBAM (26 words), the fused block.
    pub struct CbamWords {
        /// Channels, `== in.c`.
        pub c: i32,
        /// Hidden width of the MLP.
        pub cr: i32,
        /// Odd spatial kernel size.
        pub k: i32,
        /// 0: the spatial conv reads `[mean; max]`, 1: `[max; mean]`.
        pub order: i32,
        /// `i8[Cr][C]`.
        pub w1_off: i32,
        /// `i32[Cr]` each.
        pub mlp1: PerChannelWords,
        pub zp_h: i32,
        /// `i8[C][Cr]`.
        pub w2_off: i32,
        /// `i32[C]` each; the bias is twice the second layer's.
        pub mlp2: PerChannelWords,
        pub zp_z: i32,
        pub lut_c_off: i32,
        pub f1: RequantWords,
        pub zp_f1: i32,
        /// `i8[k][k][2]`.
        pub ws_off: i32,
        pub bs: i32,
        pub spatial: RequantWords,
        pub zp_s: i32,
        pub lut_s_off: i32,
        pub out: RequantWords,
    }
}

/// CONCAT (2 words per input): one requantizer per input, `mult == 0` for a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConcatWords {
    /// Inputs in use.
    pub n: usize,
    pub inputs: [RequantWords; MAX_INPUTS],
}

impl ConcatWords {
    /// The words of `requants`, one per input; `None` for more than [`MAX_INPUTS`].
    pub fn new(requants: &[RequantWords]) -> Option<Self> {
        let mut inputs = [RequantWords::default(); MAX_INPUTS];
        inputs.get_mut(..requants.len())?.copy_from_slice(requants);
        Some(Self {
            n: requants.len(),
            inputs,
        })
    }

    /// The requantizers of the inputs in use.
    pub fn requants(&self) -> &[RequantWords] {
        self.inputs.get(..self.n).unwrap_or_default()
    }

    pub(super) fn count(n_inputs: usize) -> usize {
        RequantWords::COUNT * n_inputs
    }

    pub(super) fn decode(words: I32Le<'_>, n_inputs: usize) -> Option<Self> {
        if n_inputs > MAX_INPUTS || words.len() != Self::count(n_inputs) {
            return None;
        }
        let mut it = words.iter();
        let mut inputs = [RequantWords::default(); MAX_INPUTS];
        for slot in inputs.iter_mut().take(n_inputs) {
            *slot = RequantWords::read(&mut it)?;
        }
        Some(Self {
            n: n_inputs,
            inputs,
        })
    }

    pub(super) fn encode(&self) -> WordBuf {
        let mut out = WordBuf::default();
        for r in self.requants() {
            r.write(&mut out);
        }
        out
    }
}
