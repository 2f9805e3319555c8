//! The op table: each op's code, name, input count and words layout, in one row.

use super::params::{
    AddWords, CbamWords, ConcatWords, Conv2dWords, DepthwiseWords, FullyConnectedWords,
    GlobalAvgPoolWords, LutWords, MulWords, NoWords, PoolWords,
};
use super::words::{WordBuf, Words, MAX_WORDS};
use super::MAX_INPUTS;
use crate::le::I32Le;

/// An op's words layout as the op table uses it: most ops have a fixed count, CONCAT two
/// words per input.
pub trait OpWords: Sized {
    /// Words an op with `n_inputs` inputs carries.
    fn word_count(n_inputs: usize) -> usize;
    /// The layout from exactly `word_count(n_inputs)` stored words.
    fn from_words(words: I32Le<'_>, n_inputs: usize) -> Option<Self>;
    fn to_words(&self) -> WordBuf;
}

impl<T: Words> OpWords for T {
    fn word_count(_: usize) -> usize {
        T::COUNT
    }

    fn from_words(words: I32Le<'_>, _: usize) -> Option<Self> {
        T::decode(words)
    }

    fn to_words(&self) -> WordBuf {
        self.encode()
    }
}

impl OpWords for ConcatWords {
    fn word_count(n_inputs: usize) -> usize {
        ConcatWords::count(n_inputs)
    }

    fn from_words(words: I32Le<'_>, n_inputs: usize) -> Option<Self> {
        ConcatWords::decode(words, n_inputs)
    }

    fn to_words(&self) -> WordBuf {
        ConcatWords::encode(self)
    }
}

/// Declares [`OpCode`] and [`OpParams`] from the op table.
macro_rules! op_table {
    ($(
        $(#[$meta:meta])*
        $op:ident = $code:literal, $name:literal, inputs $min:literal..=$max:literal, $words:ty;
    )*) => {
        /// The op codes of FORMAT.md.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u16)]
        pub enum OpCode {
            $($(#[$meta])* $op = $code,)*
        }

        impl OpCode {
            /// Every op code, in code order.
            pub const ALL: &'static [OpCode] = &[$(Self::$op,)*];

            /// The code as stored in the blob.
            pub const fn code(self) -> u16 {
                self as u16
            }

            pub const fn from_u16(code: u16) -> Option<Self> {
                match code {
                    $($code => Some(Self::$op),)*
                    _ => None,
                }
            }

            /// The name FORMAT.md gives the op.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$op => $name,)*
                }
            }

            /// Whether an op of this code may have `n` inputs.
            pub const fn accepts_inputs(self, n: usize) -> bool {
                let (min, max) = match self {
                    $(Self::$op => ($min, $max),)*
                };
                min <= n && n <= max
            }

            /// The number of `i32` parameter words an op of this code with `n_inputs`
            /// inputs carries.
            pub fn param_words(self, n_inputs: usize) -> usize {
                match self {
                    $(Self::$op => <$words as OpWords>::word_count(n_inputs),)*
                }
            }
        }

        /// An op's parameter words decoded into named values, one variant per op code.
        /// The values are as stored; the reader checks their ranges against the tensors.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum OpParams {
            $($op($words),)*
        }

        impl OpParams {
            pub const fn code(&self) -> OpCode {
                match self {
                    $(Self::$op(_) => OpCode::$op,)*
                }
            }

            /// The words of an op of `code` with `n_inputs` inputs; `None` unless there
            /// are exactly [`OpCode::param_words`] of them.
            pub fn decode(code: OpCode, words: I32Le<'_>, n_inputs: usize) -> Option<Self> {
                Some(match code {
                    $(OpCode::$op => Self::$op(<$words as OpWords>::from_words(words, n_inputs)?),)*
                })
            }

            /// The words as stored, in FORMAT.md order.
            pub fn encode(&self) -> WordBuf {
                match self {
                    $(Self::$op(w) => w.to_words(),)*
                }
            }
        }

        const _: () = {
            $(assert!($min >= 1 && $max <= MAX_INPUTS, "an op takes 1..=MAX_INPUTS inputs");)*
        };
    };
}

op_table! {
    Conv2d = 1, "CONV2D", inputs 1..=1, Conv2dWords;
    DepthwiseConv2d = 2, "DEPTHWISE_CONV2D", inputs 1..=1, DepthwiseWords;
    FullyConnected = 3, "FULLY_CONNECTED", inputs 1..=1, FullyConnectedWords;
    MaxPool2d = 4, "MAX_POOL2D", inputs 1..=1, PoolWords;
    AvgPool2d = 5, "AVG_POOL2D", inputs 1..=1, PoolWords;
    GlobalAvgPool = 6, "GLOBAL_AVG_POOL", inputs 1..=1, GlobalAvgPoolWords;
    GlobalMaxPool = 7, "GLOBAL_MAX_POOL", inputs 1..=1, NoWords;
    Add = 8, "ADD", inputs 2..=2, AddWords;
    Mul = 9, "MUL", inputs 2..=2, MulWords;
    Concat = 10, "CONCAT", inputs 1..=4, ConcatWords;
    Sigmoid = 11, "SIGMOID", inputs 1..=1, LutWords;
    Cbam = 12, "CBAM", inputs 1..=1, CbamWords;
    /// Any element-wise function, tabulated on the host for the input and output
    /// quantization (HardSwish, LeakyRelu, Tanh, SiLU, ...).
    Lut = 13, "LUT", inputs 1..=1, LutWords;
}

// The largest layouts fit a `WordBuf`.
const _: () = assert!(CbamWords::COUNT == MAX_WORDS);
const _: () = assert!(DepthwiseWords::COUNT <= MAX_WORDS);
const _: () = assert!(2 * MAX_INPUTS <= MAX_WORDS);

impl core::fmt::Display for OpCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
