"""The int8 core against the runtimes a Raspberry Pi user runs, in one run on one machine:
onnxruntime float, onnxruntime int8 (its own `quantize_static` QDQ, per-channel), LiteRT
int8 through XNNPACK (converted by onnx2tf, calibrated on the same images) and tract float.
Batch 1 latency (median and p90 ms) and throughput (frames/s over a stream) on one thread
and on all threads, rounds alternating between the engines so that a noisy neighbour slows
all of them alike. A benchmark, not a test: it prints numbers and fails only when an engine
cannot run.

    scripts/bench-runtimes.sh [--quick]          (builds the Rust side, then runs this)
    python tools/bench_runtimes.py --bin-dir target/release [--quick] [--models a,b] [--json out.json]

Every engine sees the same images, normalised as the model expects (models/README.md): the
core and tract get them as a float32 NCHW .npy through `cbam-bench-engine`, onnxruntime as
the same array, LiteRT transposed to NHWC and quantized with its input's scale. Only
inference is timed. On all threads the core's latency splits each layer's rows over the
threads (`cbam run --split-layers`) and its throughput runs frames in parallel, each worker
with its own arena; tract runs one frame on one thread, so only its throughput uses them; for
onnxruntime and LiteRT, latency on all threads uses their intra-op threads and throughput one
single-threaded session/interpreter per thread, frames in parallel, whichever is their best
stream.
Dependencies: tools/requirements-bench.txt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ort_baseline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Seconds between timed passes: longer than XNNPACK's pthreadpool spins before it sleeps
# (a million pause iterations, tens of milliseconds).
QUIET_S = 0.1
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass
class ModelCase:
    name: str
    calib: Path
    test: Path
    mean: list[float] | None = None  # None: the model's own cbam.mean / cbam.std
    std: list[float] | None = None


CASES = [
    ModelCase("fmnist_cbam", ROOT / "models/data/calib256_images.u8", ROOT / "models/data/test64_images.u8"),
    ModelCase("fmnist_cbam_res", ROOT / "models/data/calib256_images.u8", ROOT / "models/data/test64_images.u8"),
    ModelCase("rgb_resnet_cbam64", ROOT / "models/data/rgb/calib256_64", ROOT / "models/data/rgb/test256_64",
              IMAGENET_MEAN, IMAGENET_STD),
    ModelCase("rgb_mbv2_cbam96", ROOT / "models/data/rgb/calib256_96", ROOT / "models/data/rgb/test128_96",
              IMAGENET_MEAN, IMAGENET_STD),
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni"]
                return ",".join(f for f in wanted if f in have) or "no AVX2"
    except OSError:
        pass
    return "?"


def pixels(path: Path, chw: tuple[int, int, int], limit: int) -> np.ndarray:
    """uint8 [N,C,H,W] from a .u8 file of images at the model size or an ImageFolder."""
    c, h, w = chw
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]
        mode = "RGB" if c == 3 else "L"
        arrays = [np.asarray(Image.open(f).convert(mode), dtype=np.uint8).reshape(h, w, c) for f in files]
        return np.stack(arrays).transpose(0, 3, 1, 2)
    raw = np.fromfile(path, dtype=np.uint8)
    return raw.reshape(-1, c, h, w)[:limit]


def model_norm(model: onnx.ModelProto, case: ModelCase) -> tuple[list[float], list[float]]:
    if case.mean is not None:
        return case.mean, case.std or [1.0]
    meta = {p.key: p.value for p in model.metadata_props}
    mean = [float(v) for v in meta.get("cbam.mean", "0").split(",")]
    std = [float(v) for v in meta.get("cbam.std", "1").split(",")]
    return mean, std


def normalise(px: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return ((px.astype(np.float32) / 255.0 - m) / s).astype(np.float32)


def input_chw(model: onnx.ModelProto) -> tuple[str, tuple[int, int, int]]:
    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    return inp.name, (dims[1], dims[2], dims[3])


# ---------------------------------------------------------------- engines


class Engine:
    name: str
    note: str = ""

    def latency(self, threads: int) -> tuple[list[float], list[int]]:
        raise NotImplementedError

    def stream(self, threads: int, frames: int) -> float:
        """Seconds for `frames` frames (the inputs cycled) over `threads` threads."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class RustEngine(Engine):
    """The core or tract, timed inside `cbam-bench-engine`."""

    def __init__(self, name: str, binary: Path, model: Path, inputs: Path, count: int,
                 split_layers: bool = False) -> None:
        self.name, self.count, self.split_layers = name, count, split_layers
        self.proc = subprocess.Popen([str(binary), str(model), "--inputs", str(inputs)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"{binary} did not start: {ready}")

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: cbam-bench-engine exited with {self.proc.wait()}")
        return json.loads(line)

    def _ask(self, request: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return self._read()

    def latency(self, threads: int) -> tuple[list[float], list[int]]:
        answer = self._ask(f"latency {threads}" if self.split_layers else "latency")
        return answer["ms"], answer["top1"]

    def stream(self, threads: int, frames: int) -> float:
        total = 0.0
        for _ in range(max(1, frames // self.count)):
            total += self._ask(f"stream {threads}")["seconds"]
        return total

    def close(self) -> None:
        if self.proc.poll() is None:
            self._ask_quit()

    def _ask_quit(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=30)


def run_parallel(threads: int, frames: int, worker_factory) -> float:
    """Frames in parallel: `threads` Python threads, each with its own runner from
    `worker_factory()` (a function of the frame index); the runtimes release the GIL while
    they compute."""
    runners = [worker_factory() for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        barrier.wait()
        run = runners[k]
        for i in range(k, frames, threads):
            run(i)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - start


class OrtEngine(Engine):
    def __init__(self, name: str, model: Path, x: np.ndarray) -> None:
        self.name, self.model, self.x = name, model, x
        self.sessions: dict[int, ort.InferenceSession] = {}
        self.input = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    def session(self, threads: int) -> ort.InferenceSession:
        if threads not in self.sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sessions[threads] = ort.InferenceSession(str(self.model), so, providers=["CPUExecutionProvider"])
        return self.sessions[threads]

    def latency(self, threads: int) -> tuple[list[float], list[int]]:
        sess, ms, top1 = self.session(threads), [], []
        for i in range(len(self.x)):
            xi = self.x[i : i + 1]
            start = time.perf_counter()
            out = sess.run(None, {self.input: xi})[0]
            ms.append((time.perf_counter() - start) * 1e3)
            top1.append(int(out.argmax()))
        return ms, top1

    def stream(self, threads: int, frames: int) -> float:
        n, batches = len(self.x), [self.x[i : i + 1] for i in range(len(self.x))]
        one = self.session(1)
        if threads == 1:
            start = time.perf_counter()
            for i in range(frames):
                one.run(None, {self.input: batches[i % n]})
            return time.perf_counter() - start
        return run_parallel(threads, frames, lambda: (lambda i: one.run(None, {self.input: batches[i % n]})))


class LiteRtEngine(Engine):
    def __init__(self, name: str, tflite: Path, x_nchw: np.ndarray) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.name, self.tflite, self.Interpreter = name, tflite, Interpreter
        probe = Interpreter(model_path=str(tflite), num_threads=1)
        inp = probe.get_input_details()[0]
        scale, zp = inp["quantization"]
        nhwc = x_nchw.transpose(0, 2, 3, 1)
        if inp["dtype"] == np.int8:
            nhwc = np.clip(np.round(nhwc / scale) + zp, -128, 127).astype(np.int8)
        self.x = [nhwc[i : i + 1].reshape(inp["shape"]) for i in range(len(nhwc))]
        self.interpreters: dict[int, object] = {}

    def interpreter(self, threads: int, fresh: bool = False):
        if fresh or threads not in self.interpreters:
            it = self.Interpreter(model_path=str(self.tflite), num_threads=threads)
            it.allocate_tensors()
            if fresh:
                return it
            self.interpreters[threads] = it
        return self.interpreters[threads]

    @staticmethod
    def runner(it):
        inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def run(x):
            it.set_tensor(inp, x)
            it.invoke()
            return it.get_tensor(out)

        return run

    def latency(self, threads: int) -> tuple[list[float], list[int]]:
        run, ms, top1 = self.runner(self.interpreter(threads)), [], []
        for xi in self.x:
            start = time.perf_counter()
            out = run(xi)
            ms.append((time.perf_counter() - start) * 1e3)
            top1.append(int(out.argmax()))
        return ms, top1

    def stream(self, threads: int, frames: int) -> float:
        n = len(self.x)
        if threads == 1:
            run = self.runner(self.interpreter(1))
            start = time.perf_counter()
            for i in range(frames):
                run(self.x[i % n])
            return time.perf_counter() - start

        def factory():
            run = self.runner(self.interpreter(1, fresh=True))
            return lambda i: run(self.x[i % n])

        return run_parallel(threads, frames, factory)


# ---------------------------------------------------------------- preparing the models


def make_blob(cbam: Path, case: ModelCase, onnx_path: Path, calib_limit: int, out: Path) -> Path:
    blob = out / f"{case.name}.cbam"
    cmd = [str(cbam), "quantize", str(onnx_path), "--calib", str(case.calib), "--limit", str(calib_limit),
           "--out", str(blob)]
    if case.mean is not None:
        cmd += ["--mean", ",".join(map(str, case.mean)), "--std", ",".join(map(str, case.std or [1.0]))]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return blob


def make_ort_int8(onnx_path: Path, calib: np.ndarray, out: Path, name: str) -> Path:
    qdq = out / f"{name}.ort_int8.onnx"
    ort_baseline.quantize(onnx_path, qdq, calib)
    return qdq


def make_litert(onnx_path: Path, input_name: str, chw: tuple[int, int, int], calib_px: np.ndarray,
                mean: list[float], std: list[float], out: Path, name: str) -> tuple[Path | None, str]:
    """onnx2tf's full-integer (int8 in and out, per-channel weights) conversion, calibrated
    on the same images; (None, why) when it cannot be made here."""
    try:
        import onnx2tf  # noqa: F401
    except ImportError as err:
        return None, f"onnx2tf is not installed ({err}); pip install -r tools/requirements-bench.txt"
    out = out.resolve()
    folder = out / f"{name}_calib{len(calib_px)}_tflite"
    done = folder / f"{name}.onnx2tf_input_full_integer_quant.tflite"
    if done.exists():
        return done, ""
    c, h, w = chw
    # onnx2tf rewrites the ONNX file it is given (shape inference, simplification): never
    # hand it the repository's.
    onnx_copy = out / f"{name}.onnx2tf_input.onnx"
    shutil.copyfile(onnx_path, onnx_copy)
    calib_file = out / f"{name}_calib_nhwc.npy"
    np.save(calib_file, (calib_px.transpose(0, 2, 3, 1).astype(np.float32) / 255.0))
    if c == 3:
        # For 3-channel inputs onnx2tf checks the conversion on 20 sample images at 128x128
        # that it downloads unless this file is in its working directory: give it ours.
        idx = np.arange(128) * np.array([h, w])[:, None] // 128
        sample = calib_px[:20][:, :, idx[0]][:, :, :, idx[1]].transpose(0, 2, 3, 1)
        np.save(out / "calibration_image_sample_data_20x128x128x3_float32.npy", sample.astype(np.float32) / 255.0)
    shape = lambda v: np.asarray(v, np.float32).reshape(1, 1, 1, -1).tolist()  # noqa: E731
    script = (
        "import onnx2tf\n"
        f"onnx2tf.convert(input_onnx_file_path={str(onnx_copy)!r}, output_folder_path={str(folder)!r},"
        f" overwrite_input_shape=[{f'{input_name}:1,{c},{h},{w}'!r}],"
        " output_integer_quantized_tflite=True, quant_type='per-channel', non_verbose=True,"
        f" custom_input_op_name_np_data_path=[[{input_name!r}, {str(calib_file)!r}, {shape(mean)!r}, {shape(std)!r}]])\n"
    )
    log = out / f"{name}_onnx2tf.log"
    with open(log, "w") as f:
        try:
            proc = subprocess.run([sys.executable, "-c", script], stdout=f, stderr=subprocess.STDOUT, timeout=900,
                                  cwd=out)
        except subprocess.TimeoutExpired:
            return None, f"onnx2tf did not finish in 900 s (log: {log})"
    if proc.returncode != 0 or not done.exists():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-3:]
        return None, f"onnx2tf failed ({' | '.join(tail)[:300]}; log: {log})"
    return done, ""


# ---------------------------------------------------------------- measuring


@dataclass
class Result:
    name: str
    lat: dict[int, list[float]] = field(default_factory=dict)
    rounds: dict[int, list[float]] = field(default_factory=dict)
    agree: int = 0
    note: str = ""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def bench_case(case: ModelCase, args, bins: Path, work: Path, threads_all: int) -> dict:
    onnx_path = ROOT / "models" / f"{case.name}.onnx"
    model = onnx.load(str(onnx_path))
    input_name, chw = input_chw(model)
    mean, std = model_norm(model, case)
    calib_px = pixels(case.calib, chw, args.calib)
    test_px = pixels(case.test, chw, args.images)
    calib_x, x = normalise(calib_px, mean, std), normalise(test_px, mean, std)
    inputs = work / f"{case.name}_inputs.npy"
    np.save(inputs, x)

    print(f"[{case.name}] preparing: cbam quantize, onnxruntime quantize_static, onnx2tf ...", file=sys.stderr)
    blob = make_blob(bins / "cbam", case, onnx_path, args.calib, work)
    qdq = make_ort_int8(onnx_path, calib_x, work, case.name)
    engines: list[Engine] = [
        RustEngine("int8 core", bins / "cbam-bench-engine", blob, inputs, len(x), split_layers=True),
        OrtEngine("ORT float", onnx_path, x),
        OrtEngine("ORT int8 QDQ", qdq, x),
    ]
    litert_note = ""
    if args.no_litert:
        litert_note = "skipped (--no-litert)"
    else:
        tflite, litert_note = make_litert(onnx_path, input_name, chw, calib_px, mean, std, work, case.name)
        if tflite is not None:
            try:
                engines.append(LiteRtEngine("LiteRT int8 XNNPACK", tflite, x))
            except Exception as err:  # noqa: BLE001 - report why LiteRT cannot run, go on
                litert_note = f"LiteRT cannot load the converted model: {err}"
    engines.append(RustEngine("tract float", bins / "cbam-bench-engine", onnx_path, inputs, len(x)))
    if litert_note:
        print(f"[{case.name}] LiteRT: {litert_note}", file=sys.stderr)

    thread_counts = sorted({1, threads_all})
    stream_frames = max(args.stream_frames, len(x))
    stream_frames -= stream_frames % len(x)
    results = {e.name: Result(e.name) for e in engines}
    top1: dict[str, list[int]] = {}
    for e in engines:  # warm-up, untimed; also each engine's top-1 classes
        for t in thread_counts:
            _, top1[e.name] = e.latency(t)
        e.stream(threads_all, len(x))
    for name, classes in top1.items():
        results[name].agree = sum(a == b for a, b in zip(classes, top1["ORT float"]))
    for rnd in range(args.rounds):
        order = engines[rnd % len(engines):] + engines[: rnd % len(engines)]
        print(f"[{case.name}] round {rnd + 1}/{args.rounds}", file=sys.stderr)
        for e in order:
            r = results[e.name]
            for t in thread_counts:
                # Thread pools spin a while after their last job (onnxruntime's, XNNPACK's,
                # the core's): let the previous pass's threads park first, so that each
                # pass has the cores to itself.
                time.sleep(QUIET_S)
                ms, _ = e.latency(t)
                r.lat.setdefault(t, []).extend(ms)
                time.sleep(QUIET_S)
                r.rounds.setdefault(t, []).append(stream_frames / e.stream(t, stream_frames))
    for e in engines:
        e.close()
    return {
        "model": case.name, "input": list(chw), "images": len(x), "calibration_images": len(calib_x),
        "stream_frames": stream_frames, "rounds": args.rounds, "threads": thread_counts, "litert_note": litert_note,
        "engines": [
            {
                "engine": r.name, "top1_agreement_with_ort_float": r.agree,
                **{f"latency_ms_median_{t}t": percentile(r.lat[t], 50) for t in thread_counts},
                **{f"latency_ms_p90_{t}t": percentile(r.lat[t], 90) for t in thread_counts},
                **{f"fps_{t}t": float(np.median(r.rounds[t])) for t in thread_counts},
            }
            for r in results.values()
        ],
    }


def render(report: dict, all_t: int) -> str:
    ts = report["threads"]
    lines = [
        f"### {report['model']} ({'x'.join(map(str, report['input']))}, {report['images']} images, "
        f"stream {report['stream_frames']} frames, {report['rounds']} rounds)",
        "",
    ]
    head = ["engine", "top-1 = ORT float"]
    for t in ts:
        head += [f"{t}T ms median", f"{t}T ms p90", f"{t}T frames/s"]
    if all_t > 1:
        head += [f"scaling {all_t}T/1T"]
    head += ["core speed-up 1T latency"]
    if all_t > 1:
        head += [f"core speed-up {all_t}T latency"]
    head += [f"core speed-up {all_t}T frames/s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    core = next(e for e in report["engines"] if e["engine"] == "int8 core")
    for e in report["engines"]:
        row = [e["engine"], f"{e['top1_agreement_with_ort_float']}/{report['images']}"]
        for t in ts:
            row += [f"{e[f'latency_ms_median_{t}t']:.3f}", f"{e[f'latency_ms_p90_{t}t']:.3f}", f"{e[f'fps_{t}t']:.0f}"]
        if all_t > 1:
            row += [f"{e[f'fps_{all_t}t'] / e['fps_1t']:.2f}x"]
        row += [f"{e['latency_ms_median_1t'] / core['latency_ms_median_1t']:.2f}x"]
        if all_t > 1:
            row += [f"{e[f'latency_ms_median_{all_t}t'] / core[f'latency_ms_median_{all_t}t']:.2f}x"]
        row += [f"{core[f'fps_{all_t}t'] / e[f'fps_{all_t}t']:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    if report["litert_note"]:
        lines += ["", f"LiteRT: {report['litert_note']}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "target/release",
                        help="where `cbam` and `cbam-bench-engine` are (default target/release)")
    parser.add_argument("--quick", action="store_true", help="fewer images, rounds and calibration images")
    parser.add_argument("--models", default=",".join(c.name for c in CASES), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 7; --quick 3)")
    parser.add_argument("--images", type=int, help="test images per model (default all; --quick 32)")
    parser.add_argument("--calib", type=int, help="calibration images for all three quantizers (default 256; --quick 64)")
    parser.add_argument("--stream-frames", type=int, help="frames per throughput pass (default 1024; --quick 256)")
    parser.add_argument("--threads", type=int, default=0, help="the 'all threads' count (default: every core)")
    parser.add_argument("--no-litert", action="store_true", help="skip the onnx2tf conversion and LiteRT")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--work", type=Path, default=ROOT / "target/bench-runtimes",
                        help="converted models and inputs (default target/bench-runtimes)")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.images = args.images or (32 if args.quick else 100000)
    args.calib = args.calib or (64 if args.quick else 256)
    args.stream_frames = args.stream_frames or (256 if args.quick else 1024)
    for tool in ("cbam", "cbam-bench-engine"):
        if not (args.bin_dir / tool).exists():
            parser.error(f"{args.bin_dir / tool} is missing; build it: cargo build --release -p cbam-cli")
    wanted = args.models.split(",")
    unknown = [m for m in wanted if m not in {c.name for c in CASES}]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {[c.name for c in CASES]}")
    threads_all = args.threads or os.cpu_count() or 1
    args.work.mkdir(parents=True, exist_ok=True)
    header = (f"CPU: {cpu_model()} ({cpu_flags()}), {os.cpu_count()} logical cores, 'all threads' = {threads_all}; "
              f"onnxruntime {ort.__version__}")
    try:
        import ai_edge_litert
        header += f", ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError:
        pass
    print(header, flush=True)
    reports = []
    for case in (c for c in CASES if c.name in wanted):
        report = bench_case(case, args, args.bin_dir, args.work, threads_all)
        reports.append(report)
        print("\n" + render(report, threads_all) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"header": header, "models": reports}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
