//! ONNX -> [`Graph`]: decodes the file with tract-onnx's protobuf types and walks the
//! graph node by node. Constants (initializers, `Constant` nodes, folded shape
//! arithmetic) become weights; every other value becomes an IR tensor with the ONNX name,
//! batch fixed to 1. Shapes are inferred here, op by op; anything outside the accepted
//! op set is an [`ImportError::Unsupported`] naming the node.

pub(crate) mod attrs;
mod builder;
pub(crate) mod constant;
mod error;
mod guard;
mod model;
mod ops_act;
mod ops_nn;
mod ops_pad;
mod ops_shape;
mod window;

use std::path::Path;

use prost::Message;
use tract_onnx::pb::ModelProto;

pub use error::ImportError;
pub use guard::{check_model, inline_external_data};

use crate::fsio;
use crate::ir::Graph;
use crate::limits;

/// Reads and imports the ONNX model at `path`.
pub fn load_onnx(path: &Path) -> Result<Graph, ImportError> {
    let bytes = read_model_file(path)?;
    let proto = decode_model(&bytes, path)?;
    let mut graph = import_model(&proto, path.parent())?;
    if let Some(name) = path.file_name() {
        graph.meta.source_name = name.to_string_lossy().into_owned();
    }
    Ok(graph)
}

/// The bytes of a model file (ONNX or `.cbam`): a regular file of at most
/// [`limits::MAX_MODEL_FILE_BYTES`].
pub fn read_model_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    fsio::read_regular(
        path,
        limits::MAX_MODEL_FILE_BYTES,
        "ONNX models cannot exceed 2 GiB (a protobuf limit); larger weights go in external data",
    )
    .map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes ONNX protobuf bytes; `path` is only used in the error.
pub fn decode_model(bytes: &[u8], path: &Path) -> Result<ModelProto, ImportError> {
    let path = path.to_path_buf();
    let proto = ModelProto::decode(bytes).map_err(|e| {
        let why = e.to_string();
        // A protobuf cut short runs out of bytes mid-field; anything else is not protobuf.
        if why.contains("buffer underflow") || bytes.is_empty() {
            ImportError::Truncated {
                path: path.clone(),
                why,
            }
        } else {
            ImportError::NotOnnx {
                path: path.clone(),
                why,
            }
        }
    })?;
    if proto.ir_version <= 0 || proto.graph.is_none() {
        return Err(ImportError::NotOnnx {
            path,
            why: "no ir_version or no graph".to_string(),
        });
    }
    Ok(proto)
}

/// Name and full NCHW shape (batch fixed to 1) of the model's image input.
pub fn input_of(proto: &ModelProto) -> Result<(String, Vec<usize>), ImportError> {
    model::input_of(proto)
}

/// Imports a decoded model after [`check_model`]. `model_dir` resolves external tensor
/// data, if any.
pub fn import_model(proto: &ModelProto, model_dir: Option<&Path>) -> Result<Graph, ImportError> {
    model::import(proto, model_dir)
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;
