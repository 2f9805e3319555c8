"""A ResNet-18 with CBAM in every basic block at 3x224x224 (random weights, ~1.8 GMACs), built
with onnx.helper alone so the scale test needs neither torch nor a download:

    python tools/resnet18_cbam.py --out /tmp/resnet18_cbam224.onnx [--size 224] [--classes 10]

The graph has the shape torch's legacy exporter gives a torchvision ResNet-18 with the
official CBAM code's blocks: Conv + BatchNormalization + Relu, MaxPool, basic blocks with a
1x1 projection shortcut at stride 2, channel attention with a Linear-style MLP (Gemm on the
flattened pooled vectors, shared between the mean and max branches), spatial attention over
[max; mean] with a 7x7 conv + BN, GlobalAveragePool, Flatten, Gemm. The weights are random
(He-scaled, BN statistics chosen so activations stay in a sane range): the model measures
how long `cbam quantize` takes on a model of this size, not accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
REDUCTION = 16


class Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, kind: str, value: np.ndarray) -> str:
        n = self.name(kind)
        self.inits.append(numpy_helper.from_array(value, n))
        return n

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, bias: bool = False) -> str:
        w = self.rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        inputs = [x, self.const("w", w)]
        if bias:
            inputs.append(self.const("b", self.rng.normal(0, 0.05, cout).astype(np.float32)))
        return self.node("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)

    def bn(self, x: str, c: int) -> str:
        scale = self.rng.uniform(0.5, 1.0, c).astype(np.float32)
        shift = self.rng.normal(0, 0.1, c).astype(np.float32)
        mean = self.rng.normal(0, 0.1, c).astype(np.float32)
        var = self.rng.uniform(0.8, 1.2, c).astype(np.float32)
        ins = [x] + [self.const(k, v) for k, v in (("g", scale), ("beta", shift), ("mu", mean), ("var", var))]
        return self.node("BatchNormalization", ins, epsilon=1e-5)

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        y = self.bn(self.conv(x, cin, cout, k, stride), cout)
        return self.node("Relu", [y]) if relu else y

    def linear(self, x: str, cin: int, cout: int) -> str:
        w = self.rng.normal(0, np.sqrt(1.0 / cin), (cout, cin)).astype(np.float32)
        b = self.rng.normal(0, 0.05, cout).astype(np.float32)
        return self.node("Gemm", [x, self.const("fc_w", w), self.const("fc_b", b)], transB=1)

    def cbam(self, x: str, c: int) -> str:
        shape = self.const("shape", np.array([0, -1], np.int64))
        back = self.const("shape", np.array([0, c, 1, 1], np.int64))
        hidden = max(c // REDUCTION, 1)
        w1 = self.rng.normal(0, np.sqrt(2.0 / c), (hidden, c)).astype(np.float32)
        b1 = self.rng.normal(0, 0.05, hidden).astype(np.float32)
        w2 = self.rng.normal(0, np.sqrt(1.0 / hidden), (c, hidden)).astype(np.float32)
        b2 = self.rng.normal(0, 0.05, c).astype(np.float32)
        fc1 = (self.const("mlp_w1", w1), self.const("mlp_b1", b1))
        fc2 = (self.const("mlp_w2", w2), self.const("mlp_b2", b2))
        logits = []
        for pool in ("ReduceMean", "ReduceMax"):
            p = self.node(pool, [x], axes=[2, 3], keepdims=1)
            flat = self.node("Reshape", [p, shape])
            h = self.node("Relu", [self.node("Gemm", [flat, *fc1], transB=1)])
            logits.append(self.node("Gemm", [h, *fc2], transB=1))
        gate = self.node("Reshape", [self.node("Sigmoid", [self.node("Add", logits)]), back])
        y = self.node("Mul", [x, gate])
        pooled = [self.node("ReduceMax", [y], axes=[1], keepdims=1),
                  self.node("ReduceMean", [y], axes=[1], keepdims=1)]
        s = self.bn(self.conv(self.node("Concat", pooled, axis=1), 2, 1, 7), 1)
        return self.node("Mul", [y, self.node("Sigmoid", [s])])

    def basic_block(self, x: str, cin: int, cout: int, stride: int) -> str:
        y = self.conv_bn(x, cin, cout, 3, stride)
        y = self.cbam(self.conv_bn(y, cout, cout, 3, 1, relu=False), cout)
        short = x if stride == 1 and cin == cout else self.conv_bn(x, cin, cout, 1, stride, relu=False)
        return self.node("Relu", [self.node("Add", [y, short])])


def build(size: int, classes: int, seed: int) -> onnx.ModelProto:
    b = Builder(seed)
    x = b.conv_bn("input", 3, 64, 7, 2)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for cout, stride in STAGES:
        x = b.basic_block(x, cin, cout, stride)
        x = b.basic_block(x, cout, cout, 1)
        cin = cout
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    b.linear(x, cin, classes)
    b.nodes[-1].output[0] = "logits"  # the graph output keeps a readable name
    graph = helper.make_graph(
        b.nodes, "resnet18_cbam",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="resnet18_cbam.py")
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    onnx.save(build(args.size, args.classes, args.seed), args.out)


if __name__ == "__main__":
    main()
