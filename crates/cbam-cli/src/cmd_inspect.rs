//! `cbam inspect`: what is in an ONNX model and which CBAM blocks the compiler recognised.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cbam_compiler::{import, inspect, passes};
use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(
    about = "Show a model's ops, shapes, parameters, MACs and the CBAM blocks found",
    after_help = "\
Examples:
  cbam inspect models/example.onnx
  cbam inspect models/example.onnx --json | jq .cbam_blocks

The model is imported and optimised as `cbam quantize` does (BatchNorm folded, CBAM blocks
fused), so what is listed is what gets quantized. A model without CBAM shows 0 blocks."
)]
pub struct InspectArgs {
    /// The float ONNX model
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Print JSON ({"cbam_blocks", "macs", "params", "nodes", ...}) instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let path = &args.model;
    let graph =
        import::load_onnx(path).with_context(|| format!("cannot import {}", path.display()))?;
    let graph =
        passes::optimize(graph).with_context(|| format!("cannot optimise {}", path.display()))?;
    let report = inspect::inspect(&graph);
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out!("{report}")?;
    }
    Ok(())
}
