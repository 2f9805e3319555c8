#!/usr/bin/env bash
# Frames/s of tract float, tract QDQ int8 and the int8 core, side by side in one run, for
# each example model, on the machine it runs on (a benchmark, not a test).
#
#   scripts/bench-pi.sh            quick: the workspace's dev profile (dependencies such as
#                                  tract at opt-level 2), cbam-core/-compiler at opt-level 3
#   scripts/bench-pi.sh --release  the release profile for everything (slow first build;
#                                  use this on the Pi)
#   ROUNDS=20 scripts/bench-pi.sh  more timed passes over the 64 test images (default 10)
#   QDQ_FORM=exact scripts/bench-pi.sh  the QDQ model in another --qdq-form (default standard)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
ROUNDS="${ROUNDS:-10}"
QDQ_FORM="${QDQ_FORM:-standard}"
case "${1:-}" in
  --release)
    BUILD=(--release); DIR=release ;;
  "")
    # Same dev profile the tests build, so tract is not rebuilt; only our crates are
    # optimised (with overflow checks off as in release), which the core needs to be fair.
    BUILD=()
    for pkg in cbam-core cbam-compiler; do
      BUILD+=(--config "profile.dev.package.$pkg.opt-level=3"
              --config "profile.dev.package.$pkg.debug-assertions=false"
              --config "profile.dev.package.$pkg.overflow-checks=false")
    done
    DIR=debug ;;
  *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac
cargo build -p cbam-cli --bin cbam --bin cbam-bench "${BUILD[@]}"
BIN="$ROOT/target/$DIR"
OUT="$ROOT/target/pi-bench"
mkdir -p "$OUT"
for m in fmnist_cbam fmnist_cbam_res; do
  "$BIN/cbam" quantize "models/$m.onnx" --calib models/data/calib256_images.u8 \
    --out "$OUT/$m.cbam" --qdq "$OUT/$m.int8.onnx" --qdq-form "$QDQ_FORM" >/dev/null
  echo
  "$BIN/cbam-bench" --float "models/$m.onnx" --qdq "$OUT/$m.int8.onnx" --blob "$OUT/$m.cbam" \
    --data models/data/test64_images.u8 --rounds "$ROUNDS"
done
