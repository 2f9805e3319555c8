//! ONNX models for the end-to-end tests, built with the compiler's in-code ONNX builder
//! (`cbam_compiler::import::testing`): a CBAM classifier shaped like the example models
//! (deterministic weights), and the cases the CLI must handle or reject.

use cbam_compiler::import::testing::{int, ints, CbamStyle, OnnxBuilder};
use prost::Message;
use tract_onnx::pb::ModelProto;

/// Fashion-MNIST pixel statistics, as the example models record them.
pub const FASHION_MEAN: &str = "0.2860";
pub const FASHION_STD: &str = "0.3530";

/// A 28x28 grayscale input, opset 13.
fn image_model(seed: u32) -> OnnxBuilder {
    OnnxBuilder::new(&[1, 1, 28, 28], 13).seeded(seed)
}

/// A conv with bias and "same" padding, then ReLU.
fn conv_relu(b: &mut OnnxBuilder, x: &str, cin: i64, cout: i64, k: i64, stride: i64) -> String {
    let conv = b.conv_strided(x, cin, cout, k, stride, true);
    b.node("Relu", &[&conv], vec![])
}

/// Global average pool, flatten and a linear layer to `classes` logits.
fn head(b: &mut OnnxBuilder, x: &str, c: i64, classes: i64) -> String {
    let gap = b.node("GlobalAveragePool", &[x], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![int("axis", 1)]);
    b.gemm(&flat, c, classes, true)
}

/// A 28x28 grayscale, 10-class CNN with two CBAM blocks (the paper's `[mean; max]` order,
/// a 7x7 and a 3x3 spatial conv), shaped like the example models. Its weights are not
/// trained: its accuracy means nothing, its int8 agreement with float does.
pub fn cbam_classifier(seed: u32) -> ModelProto {
    let mut b = image_model(seed);
    b.meta = vec![
        ("cbam.mean".into(), FASHION_MEAN.into()),
        ("cbam.std".into(), FASHION_STD.into()),
    ];
    let x = conv_relu(&mut b, "x", 1, 8, 3, 1);
    let x = b.node(
        "MaxPool",
        &[&x],
        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
    );
    let x = b.cbam(&x, 8, 2, [14, 14], &CbamStyle::default());
    let x = conv_relu(&mut b, &x, 8, 16, 3, 2);
    let spatial_3x3 = CbamStyle {
        k: 3,
        ..CbamStyle::default()
    };
    let x = b.cbam(&x, 16, 4, [7, 7], &spatial_3x3);
    let logits = head(&mut b, &x, 16, 10);
    b.output_dims = Some(vec![1, 10]);
    b.build(&logits)
}

/// A CNN without CBAM (still quantizable; `inspect` says 0 blocks).
pub fn plain_classifier(seed: u32) -> ModelProto {
    let mut b = image_model(seed);
    let x = conv_relu(&mut b, "x", 1, 8, 3, 2);
    let logits = head(&mut b, &x, 8, 10);
    b.output_dims = Some(vec![1, 10]);
    b.build(&logits)
}

/// A model with an op the compiler does not support (`Erf`).
pub fn unsupported_op_model() -> ModelProto {
    let mut b = image_model(1);
    let x = conv_relu(&mut b, "x", 1, 4, 3, 2);
    let x = b.node("Erf", &[&x], vec![]);
    let logits = head(&mut b, &x, 4, 10);
    b.output_dims = Some(vec![1, 10]);
    b.build(&logits)
}

pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
