//! Lowering: from the float IR and calibrated ranges to the core's int8 op list, in one
//! pass that never runs the model (improving ranges and weights by running it is
//! [`crate::tune`]'s job, which sits above this module and calls it).
//!
//! [`math`] holds the TFLite fixed-point helpers, [`model`] the quantized op list in
//! FORMAT.md terms, [`lower`] the per-op lowering (with the fused attention block in
//! `lower::cbam`), [`input`] the input's quantization and normalisation folding and
//! [`scatter`] the pruned-residual scatter that folds into ADD.

pub mod input;
pub mod lower;
pub mod math;
pub mod model;
pub mod scatter;

pub use lower::lower;
pub use math::QParams;
pub use model::*;

/// What the lowering may decide beyond the graph and its ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct LowerOptions {
    /// With the model's `mean`/`std` known, quantize the input so the device feeds
    /// `q = pixel - 128` (FORMAT.md flag bit 0). Without mean/std this has no effect.
    pub pixel_input: bool,
    /// Give each CBAM scaling's output (`F'` and the block's output) a scale of its
    /// input's scale times `2^-j`, the finest that still covers the calibrated range,
    /// so both scalings requantize by a power of two: the same TFLite arithmetic, which
    /// the Cortex-M4 kernels then compute in two or three instructions per element.
    /// Off: the calibrated scales, with a general multiplier.
    pub cbam_pow2_scales: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            pixel_input: true,
            cbam_pow2_scales: true,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuantError {
    #[error("node `{node}` ({op}) cannot be quantized for the int8 core: {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error(
        "no calibration range for tensor `{tensor}` (output of node `{node}`); \
         calibration must observe every value the lowering quantizes"
    )]
    MissingRange { node: String, tensor: String },
    #[error("node `{node}`: {detail}")]
    Shape { node: String, detail: String },
    #[error("node `{node}` reads tensor `{tensor}` before any op produces it")]
    NotProduced { node: String, tensor: String },
    #[error(
        "the model's per-channel mean/std can only be folded into a first Conv that alone \
         reads the input; {detail}. Re-export with uniform normalisation or a leading Conv"
    )]
    InputNormalisation { detail: String },
    #[error("the graph output `{tensor}` is not produced by any lowered op")]
    NoOutput { tensor: String },
    #[error("the model needs {count} tensors or ops; the blob format holds at most 65535")]
    TooLarge { count: usize },
}

#[cfg(test)]
pub mod testing;
