//! ONNX models written with tract-onnx's protobuf types: a CBAM classifier shaped like
//! the example models (random weights), and the malformed cases the CLI must reject.

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Fashion-MNIST pixel statistics, as the example models record them.
pub const FASHION_MEAN: &str = "0.2860";
pub const FASHION_STD: &str = "0.3530";

/// A deterministic generator for weights (xorshift), so a failing test fails the same way.
#[derive(Debug, Clone)]
pub struct Weights(u64);

impl Weights {
    pub fn new(seed: u64) -> Self {
        Weights(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `[-bound, bound]`.
    pub fn uniform(&mut self, bound: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * bound
    }
}

/// Builds one graph node by node; every value gets a fresh name.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    input_dims: Vec<i64>,
    opset: i64,
    meta: Vec<(String, String)>,
    counter: usize,
    pub weights: Weights,
}

pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    pub fn new(input_dims: &[i64], opset: i64, seed: u64) -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            input_dims: input_dims.to_vec(),
            opset,
            meta: Vec::new(),
            counter: 0,
            weights: Weights::new(seed),
        }
    }

    /// The graph input's name.
    pub fn input(&self) -> &'static str {
        "input"
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    pub fn constant(&mut self, dims: &[i64], values: Vec<f32>) -> String {
        let name = self.fresh("w");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: values,
            ..Default::default()
        });
        name
    }

    pub fn constant_i64(&mut self, dims: &[i64], values: Vec<i64>) -> String {
        let name = self.fresh("c");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::Int64 as i32,
            int64_data: values,
            ..Default::default()
        });
        name
    }

    /// Random weights, uniform with He's bound for `fan_in` inputs.
    pub fn random(&mut self, dims: &[i64], fan_in: usize) -> String {
        let bound = (6.0 / fan_in.max(1) as f32).sqrt();
        let n: i64 = dims.iter().product();
        let values = (0..n).map(|_| self.weights.uniform(bound)).collect();
        self.constant(dims, values)
    }

    /// Appends a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: format!("{op}_{}", self.counter),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        output
    }

    pub fn meta(&mut self, key: &str, value: &str) {
        self.meta.push((key.into(), value.into()));
    }

    pub fn build(self, output: &str, output_dims: &[i64]) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "cbam-e2e".into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: "e2e".into(),
                initializer: self.initializers,
                input: vec![value_info("input", &self.input_dims)],
                output: vec![value_info(output, output_dims)],
                ..Default::default()
            }),
            metadata_props: self
                .meta
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        }
    }

    /// `k x k` convolution with bias, "same" padding and the given stride, then ReLU.
    pub fn conv_relu(&mut self, x: &str, in_c: i64, out_c: i64, k: i64, stride: i64) -> String {
        let w = self.random(&[out_c, in_c, k, k], (in_c * k * k) as usize);
        let b = self.random(&[out_c], 16);
        let p = k / 2;
        let attrs = vec![
            ints("kernel_shape", &[k, k]),
            ints("pads", &[p, p, p, p]),
            ints("strides", &[stride, stride]),
        ];
        let conv = self.node("Conv", &[x, &w, &b], attrs);
        self.node("Relu", &[&conv], vec![])
    }

    /// A CBAM block as `torch.onnx.export` writes the paper's module: global pools, a
    /// shared 1x1-conv MLP, sigmoid and scaling; then the `[mean; max]` channel maps, a
    /// `k x k` conv, sigmoid and scaling.
    pub fn cbam(&mut self, x: &str, c: i64, hidden: i64, k: i64) -> String {
        let w1 = self.random(&[hidden, c, 1, 1], c as usize);
        let w2 = self.random(&[c, hidden, 1, 1], hidden as usize);
        let avg = self.node("GlobalAveragePool", &[x], vec![]);
        let max = self.node("GlobalMaxPool", &[x], vec![]);
        let mlp = |b: &mut Self, pooled: &str| {
            let h = b.node("Conv", &[pooled, &w1], vec![ints("kernel_shape", &[1, 1])]);
            let h = b.node("Relu", &[&h], vec![]);
            b.node("Conv", &[&h, &w2], vec![ints("kernel_shape", &[1, 1])])
        };
        let za = mlp(self, &avg);
        let zm = mlp(self, &max);
        let z = self.node("Add", &[&za, &zm], vec![]);
        let mc = self.node("Sigmoid", &[&z], vec![]);
        let f1 = self.node("Mul", &[x, &mc], vec![]);
        let reduce = vec![ints("axes", &[1]), int("keepdims", 1)];
        let mean = self.node("ReduceMean", &[&f1], reduce.clone());
        let maxc = self.node("ReduceMax", &[&f1], reduce);
        let pooled = self.node("Concat", &[&mean, &maxc], vec![int("axis", 1)]);
        let ws = self.random(&[1, 2, k, k], (2 * k * k) as usize);
        let p = k / 2;
        let s = self.node(
            "Conv",
            &[&pooled, &ws],
            vec![ints("kernel_shape", &[k, k]), ints("pads", &[p, p, p, p])],
        );
        let ms = self.node("Sigmoid", &[&s], vec![]);
        self.node("Mul", &[&f1, &ms], vec![])
    }

    /// Global average pool, flatten and a linear layer to `classes` logits.
    pub fn head(&mut self, x: &str, c: i64, classes: i64) -> String {
        let gap = self.node("GlobalAveragePool", &[x], vec![]);
        let flat = self.node("Flatten", &[&gap], vec![int("axis", 1)]);
        let w = self.random(&[classes, c], c as usize);
        let b = self.random(&[classes], 64);
        self.node("Gemm", &[&flat, &w, &b], vec![int("transB", 1)])
    }
}

/// A 28x28 grayscale, 10-class CNN with two CBAM blocks, shaped like the example models
/// (random weights: its accuracy means nothing, its int8 agreement with float does).
pub fn cbam_classifier(seed: u64) -> ModelProto {
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, seed);
    b.meta("cbam.mean", FASHION_MEAN);
    b.meta("cbam.std", FASHION_STD);
    let x = b.conv_relu(b.input(), 1, 8, 3, 1);
    let x = b.node(
        "MaxPool",
        &[&x],
        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
    );
    let x = b.cbam(&x, 8, 2, 7);
    let x = b.conv_relu(&x, 8, 16, 3, 2);
    let x = b.cbam(&x, 16, 4, 3);
    let logits = b.head(&x, 16, 10);
    b.build(&logits, &[1, 10])
}

/// A CNN without CBAM (still quantizable; `inspect` says 0 blocks).
pub fn plain_classifier(seed: u64) -> ModelProto {
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, seed);
    let x = b.conv_relu(b.input(), 1, 8, 3, 2);
    let logits = b.head(&x, 8, 10);
    b.build(&logits, &[1, 10])
}

/// A model with an op the compiler does not support (`Erf`, node `Erf_*`).
pub fn unsupported_op_model() -> ModelProto {
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, 1);
    let x = b.conv_relu(b.input(), 1, 4, 3, 2);
    let x = b.node("Erf", &[&x], vec![]);
    let logits = b.head(&x, 4, 10);
    b.build(&logits, &[1, 10])
}

pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
