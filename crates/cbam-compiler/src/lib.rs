//! cbam-compiler: host-side ONNX import, CBAM recognition, calibration, int8 quantization,
//! memory planning and the writers of the `.cbam` blob and the QDQ ONNX.
//!
//! Data flow: [`import`] (ONNX -> [`ir::Graph`]) -> [`passes`] (BN folding, activation
//! fusion, CBAM matching) -> [`float_run`] + [`calib`] (ranges from tract runs) ->
//! [`quant`] (core op list with int8 parameters) -> [`plan`] (arena offsets) -> [`blob`] / [`qdq`].

pub mod ir;

// Import and graph passes.
pub mod float_run;
pub mod import;
pub mod inspect;
pub mod passes;

// Quantization and writers.
pub mod blob;
pub mod calib;
pub mod pipeline;
pub mod plan;
pub mod qdq;
pub mod quant;
pub mod report;

// Input data (npy, ImageFolder, IDX).
pub mod data;

// Channel pruning driven by CBAM attention.
pub mod prune;

// Files in and out, and the caps on sizes read from them.
pub mod fsio;
pub mod limits;

pub use fsio::write_atomic;
