#!/usr/bin/env bash
# Quantizes the RGB example models for the target tests (firmware/test.sh, scripts/test-pi.sh)
# and prints one line per model: `NAME BLOB TEST_DIR`, tab-separated.
#
#   scripts/rgb-blobs.sh CBAM_BIN OUT_DIR [MODEL.onnx...] [-- QUANTIZE-ARGS...]
#
# Named models are quantized instead of all of them; arguments after `--` go to every
# `cbam quantize` (firmware/test.sh gives `--ram-budget` for the RAM-limited run).
#
# The RGB models are the top-level models/*.onnx with three input channels, each with the
# ImageFolders of its input size under models/data/rgb (`calib*_S`, `test*_S`), as the e2e
# suite finds them (tests/src/paths.rs). Their ONNX files carry no normalisation, so it is
# given as a user gives it (models/data/rgb/README.md). The targets test bit-exactness, not
# accuracy: a few calibration images and no bias correction keep the quantization to seconds.
set -euo pipefail
cbam=$(realpath "${1:?usage: rgb-blobs.sh CBAM_BIN OUT_DIR}")
out=$(realpath -m "${2:?usage: rgb-blobs.sh CBAM_BIN OUT_DIR}")
shift 2
models=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  models+=("$(realpath "$1")")
  shift
done
[ $# -gt 0 ] && shift
extra=("$@")
cd "$(dirname "$0")/.."
[ ${#models[@]} -gt 0 ] || models=(models/*.onnx)
mkdir -p "$out"

MEAN=0.485,0.456,0.406
STD=0.229,0.224,0.225
CALIB_IMAGES=32

found=0
for onnx in "${models[@]}"; do
  # `cbam inspect`'s first line: "model NAME (opset N): input [CxHxW] -> output [K]".
  shape=$("$cbam" inspect "$onnx" | sed -n '1s/.* input \[\([0-9]*x[0-9]*x[0-9]*\)\].*/\1/p')
  [ "${shape%%x*}" = 3 ] || continue
  size=${shape##*x}
  calib=$(find models/data/rgb -maxdepth 1 -type d -name "calib*_$size" | sort | head -n1)
  test=$(find models/data/rgb -maxdepth 1 -type d -name "test*_$size" | sort | head -n1)
  if [ -z "$calib" ] || [ -z "$test" ]; then
    echo "rgb-blobs.sh: $onnx takes $shape but models/data/rgb has no calib*_$size and test*_$size" >&2
    exit 1
  fi
  name=$(basename "$onnx" .onnx)
  "$cbam" quantize "$onnx" --calib "$calib" --limit "$CALIB_IMAGES" --no-bias-correction \
    --mean "$MEAN" --std "$STD" "${extra[@]}" --out "$out/$name.cbam" >&2
  printf '%s\t%s\t%s\n' "$name" "$out/$name.cbam" "$(realpath "$test")"
  found=$((found + 1))
done
if [ "$found" -eq 0 ]; then
  echo "rgb-blobs.sh: no RGB model (3 input channels) in models/" >&2
  exit 1
fi
