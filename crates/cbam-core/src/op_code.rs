//! Op codes, their parameter word counts and scratch sizes: the facts the writer shares.

use crate::cbam::cbam_scratch_size;
use crate::error::Error;

/// The op codes of FORMAT.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u16)]
pub enum OpCode {
    Conv2d = 1,
    DepthwiseConv2d = 2,
    FullyConnected = 3,
    MaxPool2d = 4,
    AvgPool2d = 5,
    GlobalAvgPool = 6,
    GlobalMaxPool = 7,
    Add = 8,
    Mul = 9,
    Concat = 10,
    Sigmoid = 11,
    Cbam = 12,
}

impl OpCode {
    /// The code as stored in the blob.
    pub const fn code(self) -> u16 {
        self as u16
    }

    pub const fn from_u16(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Conv2d,
            2 => Self::DepthwiseConv2d,
            3 => Self::FullyConnected,
            4 => Self::MaxPool2d,
            5 => Self::AvgPool2d,
            6 => Self::GlobalAvgPool,
            7 => Self::GlobalMaxPool,
            8 => Self::Add,
            9 => Self::Mul,
            10 => Self::Concat,
            11 => Self::Sigmoid,
            12 => Self::Cbam,
            _ => return None,
        })
    }

    /// Whether an op of this code may have `n` inputs.
    pub const fn accepts_inputs(self, n: usize) -> bool {
        match self {
            Self::Add | Self::Mul => n == 2,
            Self::Concat => n >= 1 && n <= 4,
            _ => n == 1,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Conv2d => "CONV2D",
            Self::DepthwiseConv2d => "DEPTHWISE_CONV2D",
            Self::FullyConnected => "FULLY_CONNECTED",
            Self::MaxPool2d => "MAX_POOL2D",
            Self::AvgPool2d => "AVG_POOL2D",
            Self::GlobalAvgPool => "GLOBAL_AVG_POOL",
            Self::GlobalMaxPool => "GLOBAL_MAX_POOL",
            Self::Add => "ADD",
            Self::Mul => "MUL",
            Self::Concat => "CONCAT",
            Self::Sigmoid => "SIGMOID",
            Self::Cbam => "CBAM",
        }
    }
}

impl core::fmt::Display for OpCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The number of `i32` parameter words an op of `code` with `n_inputs` inputs carries.
pub const fn param_word_count(code: OpCode, n_inputs: usize) -> usize {
    match code {
        OpCode::Conv2d => 16,
        OpCode::DepthwiseConv2d => 17,
        OpCode::FullyConnected => 6,
        OpCode::MaxPool2d | OpCode::AvgPool2d => 10,
        OpCode::GlobalAvgPool => 2,
        OpCode::GlobalMaxPool => 0,
        OpCode::Add => 9,
        OpCode::Mul => 4,
        OpCode::Concat => 2 * n_inputs,
        OpCode::Sigmoid => 1,
        OpCode::Cbam => 26,
    }
}

/// The scratch bytes the core needs for an op, from its parameter words and shapes
/// (`(h, w, c)` as stored in the arena). The compiler's memory planner calls this and
/// writes the answer into the op record's `scratch_len`.
///
/// `output_shape` is part of the contract although no op needs it yet. Errors name op
/// `u16::MAX` because the op is not in a blob yet.
pub fn scratch_size(
    code: OpCode,
    params: &[i32],
    input_shapes: &[(usize, usize, usize)],
    output_shape: (usize, usize, usize),
) -> Result<usize, Error> {
    let _ = output_shape;
    match code {
        OpCode::Cbam => {
            let bad = |reason| Error::BadParams {
                op: u16::MAX,
                reason,
            };
            let &(h, w, _) = input_shapes
                .first()
                .ok_or(bad("CBAM needs its input shape"))?;
            let c = params
                .first()
                .and_then(|&v| usize::try_from(v).ok())
                .ok_or(bad("CBAM C word"))?;
            let cr = params
                .get(1)
                .and_then(|&v| usize::try_from(v).ok())
                .ok_or(bad("CBAM Cr word"))?;
            cbam_scratch_size(c, cr, h, w).ok_or(Error::ShapeOverflow {
                what: "CBAM scratch",
            })
        }
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..=20u16 {
            if let Some(op) = OpCode::from_u16(code) {
                assert_eq!(op.code(), code);
            } else {
                assert!(code == 0 || code > 12);
            }
        }
    }

    #[test]
    fn scratch_only_for_cbam() {
        let mut params = [0i32; 26];
        params[0] = 32;
        params[1] = 4;
        assert_eq!(
            scratch_size(OpCode::Cbam, &params, &[(14, 14, 32)], (14, 14, 32)),
            Ok(3 * 32 + 8 + 3 * 196)
        );
        assert_eq!(
            scratch_size(OpCode::Conv2d, &[0; 16], &[(14, 14, 32)], (14, 14, 32)),
            Ok(0)
        );
        assert!(scratch_size(OpCode::Cbam, &[-1, 4], &[(1, 1, 1)], (1, 1, 1)).is_err());
    }
}
