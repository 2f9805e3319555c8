//! Shared helpers for the end-to-end tests: small ONNX models built in code (so the tests
//! need no Python), and where the example models and the Fashion-MNIST test set live.

pub mod fidelity;
pub mod files;
pub mod onnx;
pub mod paths;
pub mod scratch;
