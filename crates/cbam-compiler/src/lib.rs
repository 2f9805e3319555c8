//! cbam-compiler: host-side ONNX import, CBAM recognition, calibration, int8 quantization,
//! memory planning and the writers of the `.cbam` blob and the QDQ ONNX.
//!
//! Data flow: [`import`] (ONNX -> [`ir::Graph`]) -> [`passes`] (BN folding, activation
//! fusion, CBAM matching) -> [`float_run`] + [`calib`] (ranges from tract runs) ->
//! [`quant`] (core op list with int8 parameters) -> [`plan`] (arena offsets) -> [`blob`] / [`qdq`].
//! [`tune`] improves ranges and weights by running what [`quant`], [`plan`] and [`blob`]
//! produce on the core; [`pipeline`] drives it all and fills the [`report`].
//!
//! Lower modules never import higher ones: `ir` <- `import`, `passes`, `float_run`, `calib`
//! <- `quant` <- `plan` <- `blob` <- `tune` <- `report` <- `pipeline` (`calib` needs only
//! `quant::math`, the int8 quantizer its MSE search measures).

pub mod ir;

// Import and graph passes.
pub mod float_run;
pub mod import;
pub mod inspect;
pub mod passes;

// Lowering and writers.
pub mod blob;
pub mod calib;
pub mod plan;
pub mod qdq;
pub mod quant;

// Tuning by running the lowered model, and the whole `quantize` pipeline.
pub mod pipeline;
pub mod report;
pub mod schedule;
pub mod tune;

// Input data (npy, ImageFolder, IDX).
pub mod data;

// Channel pruning driven by CBAM attention.
pub mod prune;

// Files in and out, and the caps on sizes read from them.
pub mod fsio;
pub mod limits;

// Independent per-item work over every core.
pub mod cores;

pub use fsio::write_atomic;
