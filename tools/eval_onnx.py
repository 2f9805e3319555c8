"""Float accuracy of an ONNX model on the Fashion-MNIST test set (onnxruntime), plus the
MACs and parameters counted from the ONNX graph itself.

    python tools/eval_onnx.py models/fmnist_cbam.onnx [--limit N] [--json]

Input convention: pixels/255, then (x - cbam.mean) / cbam.std when the model's
metadata_props carry them (as `cbam quantize` and `cbam eval` read them).

MACs: Conv = output elements * (in_channels / group) * kh * kw; Gemm/MatMul = M * N * K;
everything else (pooling, attention multiplies, BN, activations) is not counted, as is
usual for CNN MAC figures. Parameters: elements of every floating-point initializer
(BatchNorm statistics included, shape constants excluded). Batch dimension taken as 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


def read_normalization(model: onnx.ModelProto) -> tuple[float | None, float | None]:
    props = {p.key: p.value for p in model.metadata_props}
    if "cbam.mean" not in props or "cbam.std" not in props:
        return None, None
    mean = [float(v) for v in props["cbam.mean"].split(",")]
    std = [float(v) for v in props["cbam.std"].split(",")]
    if len(mean) != 1 or len(std) != 1:
        raise ValueError(f"expected one channel of mean/std, got {mean} / {std}")
    return mean[0], std[0]


def _dims(value_info: onnx.ValueInfoProto) -> list[int]:
    # A symbolic (batch) dimension counts as 1.
    return [d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim]


def count_params(model: onnx.ModelProto) -> int:
    total = 0
    for init in model.graph.initializer:
        if init.data_type in _FLOAT_TYPES:
            total += int(np.prod(init.dims, dtype=np.int64))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in _FLOAT_TYPES and len(attr.t.dims) > 0:
                    total += int(np.prod(attr.t.dims, dtype=np.int64))
    return total


def count_macs(model: onnx.ModelProto) -> int:
    inferred = shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {vi.name: _dims(vi) for vi in [*graph.value_info, *graph.input, *graph.output]}
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            weight = shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if weight is None or out is None:
                raise ValueError(f"Conv {node.name}: shape inference gave no shape; cannot count MACs")
            total += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if a is None or out is None:
                raise ValueError(f"{node.op_type} {node.name}: no inferred shape; cannot count MACs")
            k = a[-1]
            if node.op_type == "Gemm":
                trans_a = any(at.name == "transA" and at.i == 1 for at in node.attribute)
                k = a[0] if trans_a else a[-1]
            total += int(np.prod(out)) * k
    return total


def _fixed_batch(session: ort.InferenceSession) -> int | None:
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def session(path: Path) -> ort.InferenceSession:
    """A single-threaded CPU session (the machine is shared with compilers)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    model = onnx.load(str(path))
    mean, std = read_normalization(model)
    sess = session(path)
    name = sess.get_inputs()[0].name
    x = fmnist.to_input(images, mean, std)
    batch = _fixed_batch(sess) or 256
    correct = 0
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        logits = sess.run(None, {name: chunk})[0]
        correct += int(np.sum(np.argmax(logits, axis=1) == labels[start : start + batch]))
    return correct / len(x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    images, labels = fmnist.load("t10k")
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    model = onnx.load(str(args.model))
    result = {
        "model": str(args.model),
        "test_images": int(len(images)),
        "float_accuracy": round(accuracy(args.model, images, labels), 4),
        "macs": count_macs(model),
        "params": count_params(model),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
