"""int8 fidelity of `cbam` against onnxruntime's own post-training quantization, per model:
top-1 agreement with the float model and accuracy, for the `cbam quantize` blob (run by the
int8 core) and for onnxruntime's `quantize_static` QDQ model (tools/ort_baseline.py:
per-channel int8 weights, MinMax, int8 activations), both calibrated on the same 256 RGB
calibration images and measured on the same RGB test images.

    cargo build --release -p cbam-cli
    python tools/fidelity_table.py [--count 10000] [--zoo-count 1000] [--only STEM ...] [--json out.json]

Models: the RGB example models (models/rgb_*.onnx, trained) and the zoo (models/zoo/*.onnx,
random weights). Data: the RGB Fashion-MNIST calibration images and the first --count
(trained models) or --zoo-count (zoo) test images at each model's input size
(tools/rgb_fmnist.py), as normalised float32 NCHW .npy; `cbam` is told the ImageNet
normalisation (--mean/--std), as a user of these models would, so the blob takes 8-bit
pixels where the model allows. The zoo's accuracies mean nothing, its agreements do: the
accuracy-loss target is judged on the trained models only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ort_baseline  # noqa: E402
import rgb_fmnist  # noqa: E402
import zoo_status  # noqa: E402

TARGET_AGREEMENT = 0.995
TARGET_LOSS_PP = 0.3


def ours(model: Path, cbam: str, work: Path, calib: Path, test: Path, labels: Path) -> dict:
    """`cbam quantize` with its defaults, then `cbam eval` of the blob against the float model."""
    norm = ["--mean", ",".join(map(str, rgb_fmnist.MEAN)), "--std", ",".join(map(str, rgb_fmnist.STD))]
    blob = work / f"{model.stem}.fidelity.cbam"
    code, out, secs = zoo_status.run([cbam, "quantize", str(model), "--calib", str(calib), "--out", str(blob), *norm])
    if code != 0:
        return {"error": f"quantize: {zoo_status.error_text(out).split('caused by: ')[-1]}"}
    code, out, _ = zoo_status.run([cbam, "eval", str(blob), "--data", str(test), "--labels", str(labels),
                                   "--reference", str(model), "--json", *norm])
    if code != 0:
        return {"error": f"eval: {zoo_status.error_text(out).split('caused by: ')[-1]}"}
    r = json.loads(out[out.index("{"):])
    return {"agreement": r["agreement"], "accuracy": r["accuracy"], "float_accuracy": r["reference"]["accuracy"],
            "ties": r["ties"], "quantize_seconds": round(secs, 1)}


def ort(model: Path, calib: Path, test: Path, labels: Path) -> dict:
    try:
        r = ort_baseline.baseline(model, np.load(calib), np.load(test), np.load(labels))
    except Exception as err:  # noqa: BLE001 - onnxruntime's quantizer raises many kinds
        return {"error": f"{type(err).__name__}: {err}"}
    return {"agreement": r["ort_int8_float_agreement"], "accuracy": r["ort_int8_accuracy"],
            "float_accuracy": r["float_accuracy"]}


def measure(model: Path, cbam: str, work: Path, count: int) -> dict:
    size = zoo_status.input_size(model)
    calib, test, labels = zoo_status.data_files(work, size, count)
    row = {"model": str(model.relative_to(zoo_status.REPO)), "size": size, "n": count, "trained": is_trained(model),
           "cbam": ours(model, cbam, work, calib, test, labels), "ort": ort(model, calib, test, labels)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def is_trained(model: Path) -> bool:
    return model.parent != zoo_status.ZOO


def loss_pp(result: dict) -> float:
    """Accuracy lost, in percentage points, to 0.01 pp (the table's resolution)."""
    return round(100 * (result["float_accuracy"] - result["accuracy"]), 2)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def verdict(row: dict) -> str:
    c, o = row["cbam"], row["ort"]
    if "error" in c:
        return "cbam failed"
    misses = []
    if c["agreement"] < TARGET_AGREEMENT:
        misses.append(f"agreement < {100 * TARGET_AGREEMENT:g}%")
    if "error" not in o and c["agreement"] < o["agreement"]:
        misses.append("below onnxruntime")
    if row["trained"] and loss_pp(c) > TARGET_LOSS_PP:
        misses.append(f"loss > {TARGET_LOSS_PP:g} pp")
    return "met" if not misses else "; ".join(misses)


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | input | test images | float acc % | cbam agree % | cbam acc % | cbam loss pp "
        "| ORT agree % | ORT acc % | ORT loss pp | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, o = r["cbam"], r["ort"]
        floats = c.get("float_accuracy", o.get("float_accuracy"))
        cbam = [c["error"], "", ""] if "error" in c else [pct(c["agreement"]), pct(c["accuracy"]), f"{loss_pp(c):.2f}"]
        onnxrt = [o["error"], "", ""] if "error" in o else [pct(o["agreement"]), pct(o["accuracy"]), f"{loss_pp(o):.2f}"]
        lines.append(f"| `{Path(r['model']).stem}` | 3x{r['size']}x{r['size']} | {r['n']} | {pct(floats)} | "
                     + " | ".join(zoo_status.cell(x) for x in cbam + onnxrt) + f" | {verdict(r)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cbam", default=str(zoo_status.REPO / "target" / "release" / "cbam"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/cbam_fidelity"))
    parser.add_argument("--count", type=int, default=10000,
                        help="first N RGB test images for the trained models (default: all 10,000)")
    parser.add_argument("--zoo-count", type=int, default=1000, help="first N RGB test images for the zoo (default 1000)")
    parser.add_argument("--only", nargs="*", default=None, help="model file stems")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    models = zoo_status.models()
    if args.only:
        models = [m for m in models if m.stem in args.only]
    rows = [measure(m, args.cbam, args.work, args.count if is_trained(m) else args.zoo_count) for m in models]
    print("\n".join(table(rows)))
    print(f"\ntarget: agreement >= {100 * TARGET_AGREEMENT:g}% and >= onnxruntime's; accuracy loss <= "
          f"{TARGET_LOSS_PP:g} pp on the trained models (the zoo's random weights make its accuracies meaningless)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
