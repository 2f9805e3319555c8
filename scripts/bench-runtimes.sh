#!/usr/bin/env bash
# The int8 core against onnxruntime (float and its own int8 QDQ), LiteRT int8 (XNNPACK)
# and tract float, side by side in one run on this machine: batch-1 latency and frames/s,
# one thread and all threads, for the four example models (a benchmark, not a test).
#
#   scripts/bench-runtimes.sh            full: all test images, 7 rounds, 256 calibration images
#   scripts/bench-runtimes.sh --quick    a few minutes: 32 images, 3 rounds, 64 calibration images
#   PYTHON=/path/to/python scripts/bench-runtimes.sh ...   a Python with tools/requirements-bench.txt
#
# Other arguments go to tools/bench_runtimes.py (--models, --json FILE, --no-litert, --threads N).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import onnxruntime, onnx, numpy, PIL' 2>/dev/null; then
  echo "bench-runtimes.sh: $PYTHON lacks the benchmark's packages; make a venv and" >&2
  echo "  pip install -r tools/requirements-bench.txt, then PYTHON=venv/bin/python $0" >&2
  exit 2
fi
cargo build --release -p cbam-cli --bin cbam --bin cbam-bench-engine
exec "$PYTHON" tools/bench_runtimes.py --bin-dir target/release "$@"
