"""Run the current `cbam` CLI on every zoo model and both RGB example models and write
models/zoo/STATUS.md: what `inspect`, `quantize` and `eval` (blob vs the float ONNX) do,
with every error message verbatim.

    cargo build --release -p cbam-cli
    python tools/zoo_status.py [--cbam target/release/cbam] [--only NAME ...] [--work /tmp/cbam_status]

With --only, the rows of the other models are kept from models/zoo/STATUS.json (the
machine-readable form of the table, written on every run).

Calibration: the 256 RGB calibration images (tools/rgb_fmnist.py) at each input size, as a
normalised float32 NCHW .npy (the models' own input form); evaluation: the first 256
RGB test images, same form. numpy only: no torch.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rgb_fmnist  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "models" / "zoo"
TEST_COUNT = 256
TIMEOUT = 1800


def models() -> list[Path]:
    """The RGB example models, then the zoo, each in name order."""
    return sorted(REPO.glob("models/rgb_*.onnx")) + sorted(ZOO.glob("*.onnx"))


def input_size(path: Path) -> int:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return dims[2].dim_value


def data_files(work: Path, size: int, count: int = TEST_COUNT) -> tuple[Path, Path, Path]:
    """(calibration, test, test labels) .npy files in `work`: the 256 RGB calibration images
    and the first `count` RGB test images at `size`, made once."""
    suffix = "" if count == TEST_COUNT else f"_n{count}"
    calib, test = work / f"calib{size}.npy", work / f"test{size}{suffix}.npy"
    labels = work / f"test{size}{suffix}_labels.npy"
    if not calib.exists():
        np.save(calib, rgb_fmnist.calibration_inputs(size))
    if not test.exists() or not labels.exists():
        x, y = rgb_fmnist.test_inputs(size, count)
        np.save(test, x)
        np.save(labels, y)
    return calib, test, labels


def run(cmd: list[str]) -> tuple[int, str, float]:
    started = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        code, out = done.returncode, (done.stdout + done.stderr)
    except subprocess.TimeoutExpired:
        code, out = -1, f"timed out after {TIMEOUT} s"
    return code, out.strip(), time.time() - started


def error_text(out: str) -> str:
    """The error as the CLI printed it (its 'Error:' line and the cause lines after it)."""
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lower().startswith("error")), max(0, len(lines) - 6))
    return " / ".join(line.strip() for line in lines[start:] if line.strip()).replace(f"{REPO}/", "")


def cell(text: str) -> str:
    return text.replace(f"{REPO}/", "").replace("|", "\\|").replace("\n", " ")


def cause_key(text: str) -> str:
    """The failure's cause with node, tensor and shape names blanked, to group models by it."""
    cause = text.split("caused by: ", 1)[-1]
    cause = re.sub(r'"[^"]*"|`[^`]*`', "X", cause)
    return re.sub(r"\[[0-9, ]*\]", "[..]", cause)


def failures_by_cause(rows: list[dict]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for r in rows:
        step = "import" if r["inspect"] != "ok" else "quantize" if not r["quantize"].startswith("ok") else \
            "eval" if not r["eval"].startswith("agreement") else None
        if step is None:
            continue
        text = r["inspect"] if step == "import" else r[step]
        groups.setdefault(f"{step}: {cause_key(text)}", []).append(Path(r["model"]).stem)
    lines = ["", "## Failures grouped by cause", "", "| step: cause (names blanked) | models |", "|---|---|"]
    for key, models in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| {cell(key)} | {', '.join(models)} |")
    ok = [Path(r["model"]).stem for r in rows if r["eval"].startswith("agreement")]
    lines += ["", f"Through import, quantize and eval: {len(ok)} of {len(rows)} ({', '.join(ok)})."]
    return lines


def status(model: Path, cbam: str, work: Path) -> dict:
    size = input_size(model)
    calib, test, labels = data_files(work, size)
    blob = work / f"{model.stem}.cbam"
    blob.unlink(missing_ok=True)
    row: dict = {"model": str(model.relative_to(REPO)), "size": size}
    # Times depend on the machine's load (measured on a 2-core machine shared with builds).
    code, out, secs = run([cbam, "inspect", str(model), "--json"])
    row["inspect"] = "ok" if code == 0 else f"exit {code}: {error_text(out)}"
    if code == 0:
        report = json.loads(out[out.index("{"):])
        ops = sorted({n["op"] for n in report["nodes"]})
        row["inspect_summary"] = f"{report['cbam_blocks']} CBAM fused; core ops: {' '.join(ops)}"
    code, out, secs = run([cbam, "quantize", str(model), "--calib", str(calib), "--out", str(blob)])
    row["quantize"] = f"ok ({secs:.0f} s)" if code == 0 else f"exit {code}: {error_text(out)}"
    row["quantize_seconds"] = round(secs, 1)
    if code == 0:
        code, out, secs = run([cbam, "eval", str(blob), "--data", str(test), "--labels", str(labels),
                               "--reference", str(model), "--json"])
        if code == 0:
            result = json.loads(out[out.index("{"):])
            row["eval"] = f"agreement {result.get('agreement')}, int8 accuracy {result.get('accuracy')} (n={result.get('n')})"
        else:
            row["eval"] = f"exit {code}: {error_text(out)}"
    else:
        row["eval"] = "not run (no blob)"
    print(json.dumps(row), flush=True)
    return row


def write(rows: list[dict], path: Path, cbam_version: str) -> None:
    lines = [
        "# What the current `cbam` does with the zoo and the RGB example models",
        "",
        f"Written by `python tools/zoo_status.py` with `{cbam_version}`. Per model:",
        "`cbam inspect M`; `cbam quantize M --calib calibS.npy --out M.cbam` (the 256 RGB",
        "calibration images at the model's input size S, ImageNet-normalised float32 NCHW, the",
        "models' own input form); `cbam eval M.cbam --data testS.npy --labels",
        "testS_labels.npy --reference M --json` (first 256 RGB test images; agreement = int8 top-1",
        "equal to the float model's top-1 in tract). Errors are the CLI's own words. The zoo's",
        "weights are random, so accuracy there means nothing; agreement does.",
        "",
        "| model | input | inspect | quantize | eval (blob vs float ONNX) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        inspect = r["inspect"] if r["inspect"] != "ok" else f"ok: {r['inspect_summary']}"
        lines.append(f"| `{r['model']}` | 3x{r['size']}x{r['size']} | {cell(inspect)} | {cell(r['quantize'])} | "
                     f"{cell(r['eval'])} |")
    path.write_text("\n".join(lines + failures_by_cause(rows)) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cbam", default=str(REPO / "target" / "release" / "cbam"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/cbam_status"))
    parser.add_argument("--only", nargs="*", default=None, help="model file stems")
    parser.add_argument("--out", type=Path, default=ZOO / "STATUS.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    chosen = models()
    if args.only:
        chosen = [m for m in chosen if m.stem in args.only]
    version = subprocess.run([args.cbam, "--version"], capture_output=True, text=True).stdout.strip()
    # The last commit that changed the Rust sources the binary is built from.
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h", "--", "crates", "Cargo.lock"],
                            capture_output=True, text=True).stdout.strip()
    rows = [status(m, args.cbam, args.work) for m in chosen]
    saved = args.out.with_suffix(".json")
    if args.only and saved.exists():
        # Keep what an earlier run found for the models not run now.
        done = {r["model"] for r in rows}
        rows = [r for r in json.loads(saved.read_text()) if r["model"] not in done] + rows
        order = {str(m.relative_to(REPO)): i for i, m in enumerate(models())}
        rows.sort(key=lambda r: order.get(r["model"], len(order)))
    write(rows, args.out, f"{version}, Rust sources of commit {commit}")
    saved.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
