//! What can go wrong turning an ONNX file into the IR.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} ends early ({why}); the file is truncated: copy or export it again")]
    Truncated { path: PathBuf, why: String },
    #[error("{path} is not an ONNX model ({why}); pass the .onnx written by torch.onnx.export")]
    NotOnnx { path: PathBuf, why: String },
    #[error("unsupported ONNX op {op_type} at node {node:?}: {why}")]
    Unsupported {
        op_type: String,
        node: String,
        why: String,
    },
    #[error("node {node:?} reads {input:?}, which no initializer, graph input or earlier node defines; the graph is malformed or not topologically sorted")]
    MissingInput { node: String, input: String },
    #[error("node {node:?}: {why}")]
    BadNode { node: String, why: String },
    #[error("model input {input:?}: {why}")]
    BadInput { input: String, why: String },
    #[error("tensor {name:?}: {why}")]
    BadTensor { name: String, why: String },
    #[error("metadata {key:?}: {why}; expected comma-separated values, e.g. \"0.2860\" or \"0.485,0.456,0.406\"")]
    BadMetadata { key: String, why: String },
    #[error("the graph {why}; export a model with one image input and one output")]
    BadGraph { why: String },
}
