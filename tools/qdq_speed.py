"""Speed and agreement of the QDQ models `cbam quantize --qdq` writes, in onnxruntime and
tract, against the float model and onnxruntime's own `quantize_static` QDQ model.

For each model: a copy of the float model with a symbolic batch axis `N` (the example
models are exported with batch 1; `cbam quantize --qdq` keeps whichever the source has),
then `cbam quantize` of that copy with each `--qdq-form`, and `quantize_static` (QDQ,
per-channel int8 weights, int8 or uint8 activations, MinMax) on the same 256 calibration
images. Every model runs single-threaded in onnxruntime on a batch of 500 and
one image at a time; top-1 agreement with the float model on those test images. tract's
frames/s come from `cbam-bench` (one image at a time). onnxruntime's optimised graph of each
QDQ model (SessionOptions.optimized_model_filepath) shows which ops became int8 kernels.

    cargo build --release -p cbam-cli --bins
    /work/venv/bin/python tools/qdq_speed.py [--models fmnist_cbam ...] [--out DIR] [--json R.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402
import ort_baseline  # noqa: E402
import rgb_fmnist  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["fmnist_cbam", "fmnist_cbam_res", "rgb_resnet_cbam64"]
FORMS = ["standard", "standard-s8", "exact"]
IMAGENET = ("0.485,0.456,0.406", "0.229,0.224,0.225")


def symbolic_batch(src: Path, dst: Path) -> None:
    """`src` with its input and output batch axis renamed `N`, and Reshape targets that
    spell the batch as a literal 1 turned into -1 (what a dynamic-batch export writes)."""
    m = onnx.load(str(src))
    for v in list(m.graph.input[:1]) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    consts = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant"}
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type != "Reshape":
            continue
        shape_name = n.input[1]
        if shape_name in consts:
            t = consts[shape_name].attribute[0].t
        elif shape_name in inits:
            t = inits[shape_name]
        else:
            continue
        shape = onnx.numpy_helper.to_array(t).copy()
        if len(shape) > 1 and shape[0] == 1:
            shape[0] = -1
            t.CopyFrom(onnx.numpy_helper.from_array(shape, t.name))
    onnx.save(m, str(dst))


def ort_quantize(model: Path, out: Path, calib: np.ndarray, activations: QuantType) -> None:
    """onnxruntime's own post-training quantization: QDQ, per-channel int8 weights, MinMax."""
    name = onnx.load(str(model)).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        ort_baseline.pre_process(model, prepared)
        quantize_static(
            str(prepared), str(out), ort_baseline.Images(name, calib),
            quant_format=QuantFormat.QDQ, per_channel=True, calibrate_method=CalibrationMethod.MinMax,
            activation_type=activations, weight_type=QuantType.QInt8,
        )


def data(model: str, count: int):
    """(cbam calibration args, float calibration images, float test images)."""
    if model.startswith("rgb"):
        calib_args = ["--calib", str(ROOT / "models/data/rgb/calib256_64"), "--mean", IMAGENET[0], "--std", IMAGENET[1]]
        test, _ = rgb_fmnist.test_inputs(64, count)
        return calib_args, rgb_fmnist.calibration_inputs(64), test
    calib_u8 = ROOT / "models/data/calib256_images.u8"
    calib = np.fromfile(calib_u8, dtype=np.uint8).reshape(-1, 28, 28)
    images, _ = fmnist.load("t10k")
    return ["--calib", str(calib_u8)], fmnist.to_input(calib), fmnist.to_input(images[:count])


def session(path: Path, optimized: Path | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_timings(sess: ort.InferenceSession, x: np.ndarray, rounds: int, singles: int):
    """(ms per batch of len(x), median of `rounds`; ms per image one at a time; logits)."""
    name = sess.get_inputs()[0].name
    logits = sess.run(None, {name: x})[0]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    for i in range(min(10, singles)):
        sess.run(None, {name: x[i : i + 1]})
    t = time.perf_counter()
    for i in range(singles):
        sess.run(None, {name: x[i : i + 1]})
    single = (time.perf_counter() - t) / singles
    return 1e3 * float(np.median(times)), 1e3 * single, logits


def op_census(optimized: Path) -> dict[str, int]:
    m = onnx.load(str(optimized))
    c = collections.Counter((f"{n.domain}." if n.domain else "") + n.op_type for n in m.graph.node)
    return dict(sorted(c.items()))


def tract_fps(bench: Path, float_model: Path, qdq: Path, blob: Path, data_path: Path, rounds: int) -> dict:
    """cbam-bench's frames/s of tract float, tract on `qdq` and the core."""
    out = subprocess.run(
        [str(bench), "--float", str(float_model), "--qdq", str(qdq), "--blob", str(blob),
         "--data", str(data_path), "--rounds", str(rounds)],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    fps = {}
    for line in out.stdout.splitlines():
        for engine in ("tract float", "tract QDQ int8", "int8 core"):
            if line.startswith(engine):
                fps[engine] = float(line[len(engine):].split()[0])
    return fps


def bench_model(name: str, args, work: Path) -> dict:
    src = ROOT / "models" / f"{name}.onnx"
    float_model = work / f"{name}.N.onnx"
    symbolic_batch(src, float_model)
    calib_args, calib, test = data(name, args.images)
    blob = work / f"{name}.cbam"
    qdq = {form: work / f"{name}.{form}.onnx" for form in FORMS}
    for form, path in qdq.items():
        subprocess.run(
            [str(args.cbam), "quantize", str(float_model), *calib_args, "--out", str(blob),
             "--qdq", str(path), "--qdq-form", form],
            check=True, capture_output=True,
        )
    models = {"float": float_model, **{f"cbam {form}": path for form, path in qdq.items()}}
    for act in ("s8", "u8"):
        path = work / f"{name}.ort_{act}.onnx"
        ort_quantize(float_model, path, calib, QuantType.QInt8 if act == "s8" else QuantType.QUInt8)
        models[f"ort static {act}"] = path
    rows = {}
    float_top1 = None
    for label, path in models.items():
        optimized = work / f"{path.stem}.ort_optimized.onnx"
        sess = session(path, optimized)
        batch_ms, single_ms, logits = ort_timings(sess, test, args.rounds, args.singles)
        top1 = logits.argmax(1)
        if float_top1 is None:
            float_top1 = top1
        rows[label] = {
            "ort_batch_ms": round(batch_ms, 2),
            "ort_batch_images_per_s": round(len(test) / batch_ms * 1e3, 1),
            "ort_single_ms": round(single_ms, 4),
            "top1_agreement_with_float": round(float(np.mean(top1 == float_top1)), 4),
            "ort_ops": op_census(optimized),
        }
    bench_data = work / f"{name}.bench.npy"
    np.save(bench_data, test[: args.tract_images])
    for label in [k for k in models if k != "float"]:
        fps = tract_fps(args.bench, float_model, models[label], blob, bench_data, args.tract_rounds)
        rows[label]["tract_fps"] = fps.get("tract QDQ int8", fps.get("error"))
        rows["float"]["tract_fps"] = fps.get("tract float", rows["float"].get("tract_fps"))
    return {"model": name, "test_images": int(len(test)), "rows": rows}


def table(results: list[dict]) -> str:
    lines = [
        f"{'model':<18} {'form':<20} {'ort b500 ms':>11} {'vs float':>8} {'ort b1 ms':>9} "
        f"{'tract fps':>9} {'top-1=float':>11}",
    ]
    for r in results:
        base = r["rows"]["float"]["ort_batch_ms"]
        for label, row in r["rows"].items():
            tract = row.get("tract_fps")
            tract = f"{tract:.0f}" if isinstance(tract, float) else "n/a"
            lines.append(
                f"{r['model']:<18} {label:<20} {row['ort_batch_ms']:>11.1f} {base / row['ort_batch_ms']:>7.2f}x "
                f"{row['ort_single_ms']:>9.3f} {tract:>9} {row['top1_agreement_with_float'] * 100:>10.2f}%"
            )
    return "\n".join(lines)


def fused_summary(results: list[dict]) -> str:
    """Which float ops onnxruntime left in each QDQ model's optimised graph."""
    lines = []
    for r in results:
        for label, row in r["rows"].items():
            if label == "float":
                continue
            ops = row["ort_ops"]
            int8 = {k: v for k, v in ops.items() if "QLinear" in k or k.endswith("QGemm") or "Integer" in k}
            left = {k: v for k, v in ops.items() if k not in int8}
            lines.append(f"{r['model']} / {label}: int8 kernels {int8}; other ops {left}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--cbam", type=Path, default=ROOT / "target/release/cbam")
    p.add_argument("--bench", type=Path, default=ROOT / "target/release/cbam-bench")
    p.add_argument("--images", type=int, default=500, help="test images = the onnxruntime batch")
    p.add_argument("--rounds", type=int, default=5, help="timed batches per model")
    p.add_argument("--singles", type=int, default=200, help="images timed one at a time")
    p.add_argument("--tract-images", type=int, default=64)
    p.add_argument("--tract-rounds", type=int, default=3)
    p.add_argument("--out", type=Path, help="keep the models here (default: a temporary directory)")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    args = p.parse_args()
    for tool in (args.cbam, args.bench):
        if not tool.exists():
            print(f"{tool} not found: cargo build --release -p cbam-cli --bins", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = [bench_model(m, args, work) for m in args.models]
    print(f"onnxruntime {ort.__version__}, one thread; batch of {args.images} (median of {args.rounds}) "
          f"and one image at a time ({args.singles} images); tract: cbam-bench, one image at a time")
    print(table(results))
    print()
    print(fused_summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
