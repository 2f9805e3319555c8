"""onnxruntime's own int8 post-training quantization of an RGB model, as the baseline the
cbam quantizer is measured against: `quantize_static` with QDQ nodes, per-channel symmetric
int8 weights, asymmetric int8 activations, MinMax calibration on the same 256 calibration
images the suite uses (models/data/rgb*/calib); then top-1 agreement of the QDQ model with
the float model, and both accuracies, on RGB Fashion-MNIST test images (tools/rgb_fmnist.py).

    python tools/ort_baseline.py models/rgb_mbv2_cbam96.onnx [--count 10000] [--qdq out.onnx] [--json] [--record]
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
    parser.add_argument("--count", type=int, default=10000, help="first N test images (default: all 10,000)")
    parser.add_argument("--qdq", type=Path, default=None, help="keep the QDQ model here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", action="store_true",
                        help="also store the result in the model's models/manifest.json entry (key ort_int8_baseline)")
    args = parser.parse_args()
    size = input_size(onnx.load(str(args.model)))
    gray, labels = rgb_fmnist.fmnist.load("train")
    calib_idx = rgb_fmnist.calibration_indices(len(gray))
    calib = rgb_fmnist.to_input(rgb_fmnist.rgb_images(gray[calib_idx], calib_idx, "train", size))
    test_images, test_labels, _ = rgb_fmnist.load("t10k", size, np.arange(args.count))
    x = rgb_fmnist.to_input(test_images)
    with tempfile.TemporaryDirectory() as tmp:
        qdq_path = args.qdq or Path(tmp) / "qdq.onnx"
        pre = quantize(args.model, qdq_path, calib)
        float_top1 = top1(eval_onnx.session(args.model), x)
        int8_top1 = top1(eval_onnx.session(qdq_path), x)
    result = {
        "model": str(args.model),
        "test_images": int(len(x)),
        "calibration_images": int(len(calib)),
        "pre_processing": pre,
        "float_accuracy": round(float(np.mean(float_top1 == test_labels)), 4),
        "ort_int8_accuracy": round(float(np.mean(int8_top1 == test_labels)), 4),
        "ort_int8_float_agreement": round(float(np.mean(int8_top1 == float_top1)), 4),
        "ort_int8_float_agreement_first256": round(float(np.mean(int8_top1[:256] == float_top1[:256])), 4),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    if args.record:
        record(args.model, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
