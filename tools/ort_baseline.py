"""onnxruntime's own int8 post-training quantization of an RGB model, as the baseline the
cbam quantizer is measured against: `quantize_static` with QDQ nodes, per-channel symmetric
int8 weights, asymmetric int8 activations, MinMax calibration on the same 256 calibration
images the suite uses (models/data/rgb*/calib); then top-1 agreement of the QDQ model with
the float model, and both accuracies, on RGB Fashion-MNIST test images (tools/rgb_fmnist.py).

    python tools/ort_baseline.py models/rgb_mbv2_cbam96.onnx [--count 10000] [--qdq out.onnx] [--json] [--record]
    python tools/ort_baseline.py models/zoo/M.onnx --calib calib64.npy --test test64.npy --labels test64_labels.npy

With --calib/--test/--labels the images come from those float32 NCHW .npy files (already
normalised as the model expects; labels int64 [N]) instead of RGB Fashion-MNIST, so any
model, e.g. the zoo's, is measured on exactly what `cbam quantize`/`cbam eval` read.
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
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_onnx  # noqa: E402
import rgb_fmnist  # noqa: E402


def input_size(model: onnx.ModelProto) -> int:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    h, w = dims[2].dim_value, dims[3].dim_value
    if h != w or h == 0:
        raise ValueError(f"expected a square input of known size, got {h}x{w}")
    return h


class Images(CalibrationDataReader):
    def __init__(self, name: str, x: np.ndarray) -> None:
        self.name, self.x, self.i = name, x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1 : self.i]}


def top1(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0].argmax(1) for i in range(len(x))])


def pre_process(model_path: Path, prepared: Path) -> str:
    """onnxruntime's recommended pre-processing; its symbolic shape inference fails on some
    dynamo exports, then it runs without it. Returns what was done."""
    try:
        quant_pre_process(str(model_path), str(prepared))
        return "quant_pre_process"
    except Exception as err:  # noqa: BLE001 - onnxruntime raises TypeError/Exception here
        print(f"quant_pre_process failed ({type(err).__name__}: {err}); retrying with skip_symbolic_shape=True",
              file=sys.stderr)
    quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
    return "quant_pre_process(skip_symbolic_shape=True)"


def quantize(model_path: Path, qdq_path: Path, calib: np.ndarray) -> str:
    name = onnx.load(str(model_path)).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        done = pre_process(model_path, prepared)
        quantize_static(
            str(prepared), str(qdq_path), Images(name, calib),
            quant_format=QuantFormat.QDQ, per_channel=True, calibrate_method=CalibrationMethod.MinMax,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        )
    return done


def baseline(model: Path, calib: np.ndarray, x: np.ndarray, labels: np.ndarray, qdq: Path | None = None) -> dict:
    """Quantizes `model` with onnxruntime on `calib`, runs the float and the QDQ model on `x`:
    agreement and both accuracies against `labels`."""
    with tempfile.TemporaryDirectory() as tmp:
        qdq_path = qdq or Path(tmp) / "qdq.onnx"
        pre = quantize(model, qdq_path, calib)
        float_top1 = top1(eval_onnx.session(model), x)
        int8_top1 = top1(eval_onnx.session(qdq_path), x)
    return {
        "model": str(model),
        "test_images": int(len(x)),
        "calibration_images": int(len(calib)),
        "pre_processing": pre,
        "float_accuracy": round(float(np.mean(float_top1 == labels)), 4),
        "ort_int8_accuracy": round(float(np.mean(int8_top1 == labels)), 4),
        "ort_int8_float_agreement": round(float(np.mean(int8_top1 == float_top1)), 4),
        "ort_int8_float_agreement_first256": round(float(np.mean(int8_top1[:256] == float_top1[:256])), 4),
    }


def record(model: Path, result: dict) -> None:
    manifest = Path(__file__).resolve().parent.parent / "models" / "manifest.json"
    entries = json.loads(manifest.read_text())
    entry = next((e for e in entries if e["file"] == model.name), None)
    if entry is None:
        raise SystemExit(f"{model.name} has no entry in {manifest}: make it with tools/train_rgb.py first")
    entry["ort_int8_baseline"] = {k: v for k, v in result.items() if k != "model"}
    manifest.write_text(json.dumps(entries, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--count", type=int, default=10000, help="first N test images (default: all 10,000, or all of --test)")
    parser.add_argument("--qdq", type=Path, default=None, help="keep the QDQ model here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--calib", type=Path, help="calibration inputs, float32 NCHW .npy (with --test, --labels)")
    parser.add_argument("--test", type=Path, help="test inputs, float32 NCHW .npy")
    parser.add_argument("--labels", type=Path, help="test labels, integer .npy")
    parser.add_argument("--record", action="store_true",
                        help="also store the result in the model's models/manifest.json entry (key ort_int8_baseline)")
    args = parser.parse_args()
    npy = [args.calib, args.test, args.labels]
    if any(npy) and not all(npy):
        parser.error("--calib, --test and --labels go together")
    if all(npy):
        calib, x, test_labels = np.load(args.calib), np.load(args.test)[: args.count], np.load(args.labels)[: args.count]
        if len(x) != len(test_labels):
            parser.error(f"{args.test} has {len(x)} images but {args.labels} {len(test_labels)} labels")
    else:
        size = input_size(onnx.load(str(args.model)))
        calib = rgb_fmnist.calibration_inputs(size)
        x, test_labels = rgb_fmnist.test_inputs(size, args.count)
    result = baseline(args.model, calib, x, test_labels, args.qdq)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    if args.record:
        record(args.model, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
