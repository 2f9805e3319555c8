"""Where int8 loses signal, layer by layer: the SQNR of every tensor the `cbam quantize` report
lists (its `sqnr_db`, measured on the first 16 calibration images by default) beside the SQNR
of the same ONNX value in onnxruntime's QDQ model (tools/ort_baseline.py, same calibration
images), both against the float model on the same images.

    cbam quantize M.onnx --calib calib.npy --report r.json [--mean ... --std ...]
    python tools/ort_layers.py M.onnx --report r.json --calib calib.npy [--images 16] [--qdq ort.onnx]

A row marked `<<<` is a tensor where cbam is more than --flag dB below onnxruntime: where to
look for a quantization choice that costs signal. The report's SQNR covers its
`sqnr_images` first calibration images: give --images the same number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ort_baseline  # noqa: E402


def session(model: onnx.ModelProto, extra_outputs: list[str]) -> ort.InferenceSession:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.ValueInfoProto(name=n) for n in extra_outputs if n not in have)
    options = ort.SessionOptions()
    # Keep every value as the graph computes it (no fusion removing a Q/DQ pair).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def dequantized_activations(qdq: onnx.ModelProto) -> dict[str, str]:
    """Float value name -> the DequantizeLinear output that stands for it in the QDQ model
    (activations only: a DequantizeLinear fed by a QuantizeLinear)."""
    producer = {o: n for n in qdq.graph.node for o in n.output}
    found = {}
    for n in qdq.graph.node:
        q = producer.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            found[q.input[0]] = n.output[0]
    return found


def ort_sqnr(float_path: Path, qdq_path: Path, names: list[str], x: np.ndarray) -> dict[str, float]:
    """SQNR in dB of each float value `names` that the QDQ model quantizes."""
    qdq = onnx.load(str(qdq_path))
    pairs = {n: d for n, d in dequantized_activations(qdq).items() if n in names}
    fs = session(onnx.load(str(float_path)), list(pairs))
    qs = session(qdq, list(pairs.values()))
    signal = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    for i in range(len(x)):
        f = dict(zip(pairs, fs.run(list(pairs), {fs.get_inputs()[0].name: x[i : i + 1]})))
        q = dict(zip(pairs, qs.run(list(pairs.values()), {qs.get_inputs()[0].name: x[i : i + 1]})))
        for n in pairs:
            a = f[n].astype(np.float64)
            signal[n] += float((a**2).sum())
            noise[n] += float(((a - q[n]) ** 2).sum())
    return {n: 10 * np.log10(signal[n] / noise[n]) if noise[n] > 0 else float("inf")
            for n in pairs if signal[n] > 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--report", type=Path, required=True, help="the `cbam quantize --report` JSON")
    parser.add_argument("--calib", type=Path, required=True, help="calibration inputs, float32 NCHW .npy")
    parser.add_argument("--images", type=int, default=16, help="first N calibration images measured (default 16)")
    parser.add_argument("--qdq", type=Path, default=None, help="keep onnxruntime's QDQ model here")
    parser.add_argument("--flag", type=float, default=0.7, help="mark rows where cbam is this many dB below")
    args = parser.parse_args()
    layers = json.loads(args.report.read_text())["layers"]
    calib = np.load(args.calib)
    with tempfile.TemporaryDirectory() as tmp:
        qdq = args.qdq or Path(tmp) / "qdq.onnx"
        ort_baseline.quantize(args.model, qdq, calib)
        theirs = ort_sqnr(args.model, qdq, [layer["tensor"] for layer in layers], calib[: args.images])
    print(f"{'cbam dB':>8} {'ORT dB':>7} {'diff':>6}  op / tensor")
    for layer in layers:
        ours, other = layer.get("sqnr_db"), theirs.get(layer["tensor"])
        if ours is None or other is None:
            continue
        diff = ours - other
        mark = "  <<<" if diff < -args.flag else ""
        print(f"{ours:8.1f} {other:7.1f} {diff:+6.1f}  {layer['op']} {layer['tensor']}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
