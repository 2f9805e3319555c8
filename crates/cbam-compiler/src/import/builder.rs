//! The importer's state while it walks the ONNX nodes: which value names are constants,
//! which are IR tensors, and the IR being built.

use std::collections::HashMap;
use std::path::Path;

use tract_onnx::pb::NodeProto;

use super::constant::Const;
use super::ImportError;
use crate::ir::{Node, Op, TensorDef, TensorId};
use crate::limits;

/// What an ONNX value name stands for.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Const(Const),
    Tensor(TensorId),
    /// Feature map `TensorId` flattened to one axis, batch included (`x.reshape(-1)`).
    /// Only a reshape or an identity gather can use it: the IR has no batch-free vectors
    /// of a whole map.
    Flat(TensorId),
}

/// One ONNX node being translated, with the name used in every error about it.
pub(crate) struct NodeCtx<'a> {
    pub proto: &'a NodeProto,
    pub name: String,
}

impl NodeCtx<'_> {
    pub fn op_type(&self) -> &str {
        &self.proto.op_type
    }

    pub fn unsupported(&self, why: impl Into<String>) -> ImportError {
        ImportError::Unsupported {
            op_type: self.proto.op_type.clone(),
            node: self.name.clone(),
            why: why.into(),
        }
    }

    pub fn bad(&self, why: impl Into<String>) -> ImportError {
        ImportError::BadNode {
            node: self.name.clone(),
            why: why.into(),
        }
    }

    /// Name of output `i`, `None` when absent or left empty (an unused optional output).
    pub fn output(&self, i: usize) -> Option<&str> {
        self.proto
            .output
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn first_output(&self) -> Result<&str, ImportError> {
        self.output(0).ok_or_else(|| self.bad("has no output"))
    }
}

pub(crate) struct Importer<'a> {
    pub model_dir: Option<&'a Path>,
    pub opset: i64,
    values: HashMap<String, Value>,
    /// Full ONNX shape (batch included, fixed to 1) of each IR tensor.
    onnx_shapes: Vec<Vec<usize>>,
    /// Live consumers of each value name, for folds that must know a value has no other use.
    consumers: HashMap<String, Vec<&'a NodeProto>>,
    pub tensors: Vec<TensorDef>,
    pub nodes: Vec<Node>,
}

impl<'a> Importer<'a> {
    pub fn new(model_dir: Option<&'a Path>, opset: i64, live_nodes: &[&'a NodeProto]) -> Self {
        let mut consumers: HashMap<String, Vec<&'a NodeProto>> = HashMap::new();
        for node in live_nodes {
            for input in node.input.iter().filter(|i| !i.is_empty()) {
                consumers.entry(input.clone()).or_default().push(node);
            }
        }
        Importer {
            model_dir,
            opset,
            values: HashMap::new(),
            onnx_shapes: Vec::new(),
            consumers,
            tensors: Vec::new(),
            nodes: Vec::new(),
        }
    }

    pub fn consumers(&self, value: &str) -> &[&'a NodeProto] {
        self.consumers.get(value).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn define(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    pub fn lookup(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Input `i` of `n`; `None` when the optional input is absent or named "".
    pub fn input(&self, n: &NodeCtx, i: usize) -> Result<Option<&Value>, ImportError> {
        match n.proto.input.get(i).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => {
                self.values
                    .get(name)
                    .map(Some)
                    .ok_or_else(|| ImportError::MissingInput {
                        node: n.name.clone(),
                        input: name.clone(),
                    })
            }
        }
    }

    pub fn required(&self, n: &NodeCtx, i: usize) -> Result<&Value, ImportError> {
        self.input(n, i)?
            .ok_or_else(|| n.bad(format!("input {i} is required but absent")))
    }

    pub fn tensor_input(&self, n: &NodeCtx, i: usize) -> Result<TensorId, ImportError> {
        match self.required(n, i)? {
            Value::Tensor(id) => Ok(*id),
            Value::Flat(_) => Err(n.unsupported(format!(
                "input {i} is a feature map flattened together with its batch dimension; only a reshape back or an in-order Gather can use it"
            ))),
            Value::Const(_) => Err(n.unsupported(format!(
                "input {i} is a constant where a feature map is expected (constant folding of this op is not supported)"
            ))),
        }
    }

    pub fn const_input(&self, n: &NodeCtx, i: usize) -> Result<&Const, ImportError> {
        match self.required(n, i)? {
            Value::Const(c) => Ok(c),
            Value::Tensor(_) | Value::Flat(_) => Err(n.unsupported(format!(
                "input {i} is computed at run time; only constant (initializer) values are supported there"
            ))),
        }
    }

    pub fn optional_const(&self, n: &NodeCtx, i: usize) -> Result<Option<&Const>, ImportError> {
        match self.input(n, i)? {
            None => Ok(None),
            Some(_) => self.const_input(n, i).map(Some),
        }
    }

    pub fn shape(&self, id: TensorId) -> &[usize] {
        self.onnx_shapes.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Registers an IR tensor for ONNX value `name` with full shape `onnx_shape`.
    pub fn new_tensor(
        &mut self,
        name: &str,
        onnx_shape: Vec<usize>,
    ) -> Result<TensorId, ImportError> {
        let bad = |why: String| ImportError::BadTensor {
            name: name.to_string(),
            why,
        };
        if onnx_shape.first() != Some(&1) {
            return Err(bad(format!(
                "shape {onnx_shape:?} does not start with a batch dimension of 1"
            )));
        }
        if onnx_shape.contains(&0) {
            return Err(bad(format!("shape {onnx_shape:?} holds no values")));
        }
        limits::tensor_values(|| format!("shape {onnx_shape:?}"), &onnx_shape)
            .map_err(|e| bad(e.to_string()))?;
        let id = self.tensors.len();
        self.tensors.push(TensorDef {
            name: name.to_string(),
            shape: onnx_shape[1..].to_vec(),
        });
        self.onnx_shapes.push(onnx_shape);
        self.define(name, Value::Tensor(id));
        Ok(id)
    }

    /// Appends an IR node computing `op` from `inputs` into a new tensor named after the
    /// node's first output.
    pub fn emit(
        &mut self,
        n: &NodeCtx,
        op: Op,
        inputs: Vec<TensorId>,
        onnx_shape: Vec<usize>,
    ) -> Result<TensorId, ImportError> {
        let out = self.new_tensor(n.first_output()?, onnx_shape)?;
        self.nodes.push(Node {
            name: n.name.clone(),
            op,
            inputs,
            output: out,
        });
        Ok(out)
    }

    /// The last emitted node if it produced `id`, for folds into the producer.
    pub fn producer_if_last(&mut self, id: TensorId) -> Option<&mut Node> {
        self.nodes.last_mut().filter(|node| node.output == id)
    }

    /// Gives tensor `id` a new ONNX name (after folding a following op into its producer).
    pub fn rename(&mut self, id: TensorId, name: &str) {
        if let Some(t) = self.tensors.get_mut(id) {
            t.name = name.to_string();
        }
        self.define(name, Value::Tensor(id));
    }
}
