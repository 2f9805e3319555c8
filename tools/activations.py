"""Per-layer activation sizes of an ONNX model (int8: one byte per element), from ONNX shape
inference, batch taken as 1. For each Conv/Gemm/pooling/attention node: its output shape and
bytes, and the bytes of its feature-map inputs plus output, which a layer-by-layer plan must
hold at once (a lower bound of that plan's peak: residual tensors kept alive for a later Add
come on top). Shape-only nodes (Constant, Shape, Reshape targets) are skipped.

    python tools/activations.py models/rgb_mbv2_cbam96.onnx [--top 12] [--all]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

_SKIP = {"Constant", "Shape", "Gather", "Unsqueeze", "Concat_shape", "Identity", "Dropout"}


def _dims(vi: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]


def profile(model: onnx.ModelProto) -> list[dict]:
    graph = shape_inference.infer_shapes(model).graph
    shapes = {vi.name: _dims(vi) for vi in [*graph.value_info, *graph.input, *graph.output]}
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    rows = []
    for node in graph.node:
        if node.op_type in _SKIP or not node.output or node.output[0] not in shapes:
            continue
        out = shapes[node.output[0]]
        ins = [shapes[i] for i in node.input if i and i not in consts and i in shapes]
        out_bytes = int(np.prod(out))
        rows.append({
            "node": node.name or node.output[0],
            "op": node.op_type,
            "output": "x".join(str(d) for d in out[1:]),
            "output_bytes": out_bytes,
            "in_plus_out_bytes": out_bytes + sum(int(np.prod(s)) for s in ins),
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--top", type=int, default=12, help="list the N nodes with the largest in+out bytes")
    parser.add_argument("--all", action="store_true", help="list every node in graph order")
    args = parser.parse_args()
    rows = profile(onnx.load(str(args.model)))
    shown = rows if args.all else sorted(rows, key=lambda r: -r["in_plus_out_bytes"])[: args.top]
    print(f"{'node':48} {'op':18} {'output CxHxW':>14} {'out B':>8} {'in+out B':>9}")
    for r in shown:
        print(f"{r['node'][:48]:48} {r['op']:18} {r['output']:>14} {r['output_bytes']:>8} {r['in_plus_out_bytes']:>9}")
    peak = max(rows, key=lambda r: r["in_plus_out_bytes"])
    print(f"largest in+out: {peak['in_plus_out_bytes']} B at {peak['node']} ({peak['op']} -> {peak['output']}); "
          f"largest single activation: {max(r['output_bytes'] for r in rows)} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
