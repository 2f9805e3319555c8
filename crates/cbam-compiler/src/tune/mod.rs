//! Tuning: the passes that make a lowered model agree better with float, most of them by
//! running it. They sit above the lowering ([`crate::quant`]), the planner and the blob
//! writer, and call them; none of those calls back into this module.
//!
//! - [`sigmoid_inputs`] and [`top1_range`] narrow calibrated ranges from what the core's
//!   sigmoid table and its argmax can tell apart;
//! - [`range_search`] picks each tensor's range by the model's output error on the core;
//! - [`bias_correction`] shifts conv, linear and CBAM logit biases (and optionally
//!   re-rounds weights) by the mean error the core shows on the calibration images;
//! - [`core_resume`] keeps each image's core state at an op boundary, so a pass that
//!   changes one layer at a time runs each later stretch of ops once, not the whole model;
//! - [`core_run`] runs a lowered model on the core as the device would, for all of them
//!   and for the report's fidelity measurement.

pub mod bias_correction;
pub mod core_resume;
pub mod core_run;
pub mod range_search;
pub mod sigmoid_inputs;
pub mod top1_range;
