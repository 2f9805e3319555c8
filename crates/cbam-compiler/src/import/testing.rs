//! Builds small ONNX models in memory, in the shapes the PyTorch exporters write: for the
//! tests of the importer, the passes and the float runner, and (with the `testing`
//! feature) for the end-to-end tests of the CLI and the `tests/` crate.

use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    tensor_proto::DataType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: AttributeType::Ints as i32,
        ..Default::default()
    }
}

pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: AttributeType::Int as i32,
        ..Default::default()
    }
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: v,
        r#type: AttributeType::Float as i32,
        ..Default::default()
    }
}

pub fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: AttributeType::String as i32,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Option<&[i64]>) -> ValueInfoProto {
    let shape = dims.map(|dims| {
        let dim = dims
            .iter()
            .map(|&d| Dimension {
                // -1 stands for a symbolic (dynamic) axis, as dynamo writes the batch.
                value: Some(if d < 0 {
                    dimension::Value::DimParam("s0".into())
                } else {
                    dimension::Value::DimValue(d)
                }),
                ..Default::default()
            })
            .collect();
        TensorShapeProto { dim }
    });
    let tensor = type_proto::Tensor {
        elem_type: 1,
        shape,
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Deterministic weights in about [-0.5, 0.5): the tests need variety, not randomness.
pub fn weights(seed: u32, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((s >> 8) & 0xffff) as f32 / 65_536.0 - 0.5
        })
        .collect()
}

/// One ONNX graph, node by node; initializers get deterministic values from a seed.
pub struct OnnxBuilder {
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
    pub opset: i64,
    pub meta: Vec<(String, String)>,
    pub input_dims: Vec<i64>,
    /// Declared output shape (-1 = symbolic); `None` declares none.
    pub output_dims: Option<Vec<i64>>,
    seed: u32,
}

impl OnnxBuilder {
    /// A model whose input `x` has `dims` (-1 = symbolic).
    pub fn new(input_dims: &[i64], opset: i64) -> Self {
        OnnxBuilder {
            nodes: vec![],
            inits: vec![],
            opset,
            meta: vec![],
            input_dims: input_dims.to_vec(),
            output_dims: None,
            seed: 1,
        }
    }

    /// Starts the deterministic initializer values from `seed` (two seeds, two models).
    pub fn seeded(mut self, seed: u32) -> Self {
        self.seed = seed;
        self
    }

    pub fn init(&mut self, dims: &[i64], data: Vec<f32>) -> String {
        let name = format!("w{}", self.inits.len());
        self.inits.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// An initializer of `dims` filled with deterministic values.
    pub fn rand(&mut self, dims: &[i64]) -> String {
        self.seed += 1;
        let n = dims.iter().product::<i64>() as usize;
        self.init(dims, weights(self.seed, n))
    }

    pub fn init_i64(&mut self, values: &[i64]) -> String {
        self.init_i64_dims(&[values.len() as i64], values)
    }

    pub fn init_i64_dims(&mut self, dims: &[i64], values: &[i64]) -> String {
        let name = format!("i{}", self.inits.len());
        self.inits.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output (named after the node) and returns that output.
    pub fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let name = format!("{}_{}", op.to_lowercase(), self.nodes.len());
        self.node_outputs(op, inputs, attribute, &[&name]);
        name
    }

    pub fn node_outputs(
        &mut self,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        outputs: &[&str],
    ) {
        self.nodes.push(NodeProto {
            name: format!("/{}_{}", op, self.nodes.len()),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
    }

    pub fn build(&self, output: &str) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "cbam-compiler tests".into(),
            metadata_props: self
                .meta
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            graph: Some(GraphProto {
                name: "test".into(),
                node: self.nodes.clone(),
                initializer: self.inits.clone(),
                input: vec![value_info("x", Some(&self.input_dims))],
                output: vec![value_info(output, self.output_dims.as_deref())],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn bytes(&self, output: &str) -> Vec<u8> {
        self.build(output).encode_to_vec()
    }

    // Layer helpers, named after the PyTorch modules that export them.

    pub fn conv(&mut self, x: &str, cin: i64, cout: i64, k: i64, bias: bool) -> String {
        self.conv_strided(x, cin, cout, k, 1, bias)
    }

    /// A `k x k` conv with "same" padding and `stride`.
    pub fn conv_strided(
        &mut self,
        x: &str,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        bias: bool,
    ) -> String {
        let w = self.rand(&[cout, cin, k, k]);
        let b = if bias {
            self.rand(&[cout])
        } else {
            String::new()
        };
        let p = k / 2;
        let mut inputs = vec![x, w.as_str()];
        if bias {
            inputs.push(b.as_str());
        }
        let mut attrs = vec![ints("kernel_shape", &[k, k]), ints("pads", &[p, p, p, p])];
        if stride != 1 {
            attrs.push(ints("strides", &[stride, stride]));
        }
        self.node("Conv", &inputs, attrs)
    }

    pub fn batch_norm(&mut self, x: &str, c: i64) -> String {
        let scale = self.rand(&[c]);
        let bias = self.rand(&[c]);
        let mean = self.rand(&[c]);
        let var = self.init(
            &[c],
            weights(self.seed + 7, c as usize)
                .iter()
                .map(|v| v + 1.0)
                .collect(),
        );
        self.node(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![float("epsilon", 1e-5)],
        )
    }

    pub fn gemm(&mut self, x: &str, cin: i64, cout: i64, bias: bool) -> String {
        let w = self.rand(&[cout, cin]);
        if bias {
            let b = self.rand(&[cout]);
            self.node("Gemm", &[x, &w, &b], vec![int("transB", 1)])
        } else {
            self.node("Gemm", &[x, &w], vec![int("transB", 1)])
        }
    }

    /// Reduce op with axes as an attribute (opset < 18) or an input (opset 18).
    pub fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: i64) -> String {
        if self.opset >= 18 {
            let a = self.init_i64(axes);
            self.node(op, &[x, &a], vec![int("keepdims", keepdims)])
        } else {
            self.node(
                op,
                &[x],
                vec![ints("axes", axes), int("keepdims", keepdims)],
            )
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolStyle {
    /// GlobalAveragePool / GlobalMaxPool (nn.AdaptiveAvgPool2d(1)).
    Global,
    /// ReduceMean / ReduceMax over [2, 3] (x.mean((2, 3), keepdim=True)).
    Reduce,
    /// AveragePool / MaxPool with a full-size kernel (F.avg_pool2d(x, x.size()[2:])).
    FullKernel,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CbamStyle {
    pub pool: PoolStyle,
    /// MLP as 1x1 Convs (true) or Flatten + Linear (false).
    pub conv_mlp: bool,
    pub mlp_bias: bool,
    /// Both MLP applications read the same initializers (false: identical copies).
    pub shared: bool,
    /// `[max; mean]` instead of the paper's `[mean; max]`.
    pub max_first: bool,
    pub spatial_bn: bool,
    pub k: i64,
    /// Channel pooling with keepdim=False followed by Unsqueeze (the official ChannelPool).
    pub squeeze_channel_pool: bool,
    /// `scale.expand_as(x)` before the channel multiply (the official ChannelGate).
    pub expand: bool,
}

impl Default for CbamStyle {
    fn default() -> Self {
        CbamStyle {
            pool: PoolStyle::Global,
            conv_mlp: true,
            mlp_bias: true,
            shared: true,
            max_first: false,
            spatial_bn: false,
            k: 7,
            squeeze_channel_pool: false,
            expand: false,
        }
    }
}

impl OnnxBuilder {
    fn global_pool(&mut self, x: &str, max: bool, hw: [i64; 2], style: &CbamStyle) -> String {
        match (style.pool, max) {
            (PoolStyle::Global, false) => self.node("GlobalAveragePool", &[x], vec![]),
            (PoolStyle::Global, true) => self.node("GlobalMaxPool", &[x], vec![]),
            (PoolStyle::Reduce, false) => self.reduce("ReduceMean", x, &[2, 3], 1),
            (PoolStyle::Reduce, true) => self.reduce("ReduceMax", x, &[2, 3], 1),
            (PoolStyle::FullKernel, max) => {
                let attrs = vec![ints("kernel_shape", &hw), ints("strides", &hw)];
                self.node(if max { "MaxPool" } else { "AveragePool" }, &[x], attrs)
            }
        }
    }

    /// A CBAM block on `x` of shape `[1, c, h, w]`; returns the output value.
    pub fn cbam(
        &mut self,
        x: &str,
        c: i64,
        hidden: i64,
        hw: [i64; 2],
        style: &CbamStyle,
    ) -> String {
        let (w1_dims, w2_dims) = if style.conv_mlp {
            (vec![hidden, c, 1, 1], vec![c, hidden, 1, 1])
        } else {
            (vec![hidden, c], vec![c, hidden])
        };
        self.seed += 1;
        let (w1, b1) = (
            weights(self.seed, (hidden * c) as usize),
            weights(self.seed + 100, hidden as usize),
        );
        let (w2, b2) = (
            weights(self.seed + 200, (hidden * c) as usize),
            weights(self.seed + 300, c as usize),
        );
        let params = |b: &mut Self| {
            let mut p = vec![b.init(&w1_dims, w1.clone()), b.init(&w2_dims, w2.clone())];
            if style.mlp_bias {
                p.push(b.init(&[hidden], b1.clone()));
                p.push(b.init(&[c], b2.clone()));
            }
            p
        };
        let first = params(self);
        let second = if style.shared {
            first.clone()
        } else {
            params(self)
        };
        let branch = |b: &mut Self, max: bool, p: &[String]| {
            let pooled = b.global_pool(x, max, hw, style);
            let (op, input, extra) = if style.conv_mlp {
                ("Conv", pooled, vec![ints("kernel_shape", &[1, 1])])
            } else {
                (
                    ("Gemm"),
                    b.node("Flatten", &[&pooled], vec![int("axis", 1)]),
                    vec![int("transB", 1)],
                )
            };
            let with_bias = |w: &str, bias: Option<&String>| {
                let mut v = vec![w.to_string()];
                v.extend(bias.cloned());
                v
            };
            let i1 = with_bias(&p[0], p.get(2));
            let mut in1: Vec<&str> = vec![&input];
            in1.extend(i1.iter().map(String::as_str));
            let h = b.node(op, &in1, extra.clone());
            let h = b.node("Relu", &[&h], vec![]);
            let i2 = with_bias(&p[1], p.get(3));
            let mut in2: Vec<&str> = vec![&h];
            in2.extend(i2.iter().map(String::as_str));
            b.node(op, &in2, extra)
        };
        let avg = branch(self, false, &first);
        let max = branch(self, true, &second);
        let logit = self.node("Add", &[&avg, &max], vec![]);
        let mut scale = self.node("Sigmoid", &[&logit], vec![]);
        if !style.conv_mlp {
            scale = if self.opset >= 13 {
                let axes = self.init_i64(&[2, 3]);
                self.node("Unsqueeze", &[&scale, &axes], vec![])
            } else {
                self.node("Unsqueeze", &[&scale], vec![ints("axes", &[2, 3])])
            };
        }
        if style.expand {
            let shape = self.node("Shape", &[x], vec![]);
            scale = self.node("Expand", &[&scale, &shape], vec![]);
        }
        let scaled = self.node("Mul", &[x, &scale], vec![]);

        let keep = if style.squeeze_channel_pool { 0 } else { 1 };
        let mut mean = self.reduce("ReduceMean", &scaled, &[1], keep);
        let mut maxc = self.reduce("ReduceMax", &scaled, &[1], keep);
        if style.squeeze_channel_pool {
            let axes = self.init_i64(&[1]);
            mean = self.node("Unsqueeze", &[&mean, &axes], vec![]);
            maxc = self.node("Unsqueeze", &[&maxc, &axes], vec![]);
        }
        let parts = if style.max_first {
            [&maxc, &mean]
        } else {
            [&mean, &maxc]
        };
        let cat = self.node("Concat", &[parts[0], parts[1]], vec![int("axis", 1)]);
        let mut s = self.conv(&cat, 2, 1, style.k, !style.spatial_bn);
        if style.spatial_bn {
            s = self.batch_norm(&s, 1);
        }
        let s = self.node("Sigmoid", &[&s], vec![]);
        self.node("Mul", &[&scaled, &s], vec![])
    }

    /// conv(1->c) relu, CBAM, global pool, flatten, gemm(c->classes): the smallest
    /// complete classifier around one block.
    pub fn cbam_classifier(style: &CbamStyle, opset: i64) -> (Self, String) {
        let mut b = OnnxBuilder::new(&[1, 1, 8, 8], opset);
        let c = b.conv("x", 1, 8, 3, true);
        let c = b.node("Relu", &[&c], vec![]);
        let a = b.cbam(&c, 8, 2, [8, 8], style);
        let p = b.node("GlobalAveragePool", &[&a], vec![]);
        let f = b.node("Flatten", &[&p], vec![int("axis", 1)]);
        let out = b.gemm(&f, 8, 4, true);
        (b, out)
    }
}
