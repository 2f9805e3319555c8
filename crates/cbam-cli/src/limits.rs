//! The size caps every command that reads models or data takes, as one group of flags.

use cbam_compiler::limits::{
    Limits, DEFAULT_MAX_ARENA_BYTES, DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_INPUT_VALUES,
};
use clap::Args;

#[derive(Debug, Clone, Copy, Args)]
pub struct LimitArgs {
    /// Largest model input accepted, in values (C x H x W of an ONNX or .cbam input)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_INPUT_VALUES)]
    pub max_input_pixels: u64,
    /// Largest .cbam arena accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_ARENA_BYTES)]
    pub max_arena: u64,
    /// Most data held in memory, in bytes: a data or labels file, IDX data decompressed,
    /// samples decoded
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DATA_BYTES)]
    pub max_data_bytes: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_input_values: self.max_input_pixels,
            max_arena_bytes: self.max_arena,
            max_data_bytes: self.max_data_bytes,
        }
    }
}
