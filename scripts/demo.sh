#!/usr/bin/env bash
# The main job, end to end on the embedded default: set up, quantize the example model to
# int8, run it on the int8 core and compare with the float model on the Fashion-MNIST test set.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-models/fmnist_cbam.onnx}"
LIMIT="${LIMIT:-10000}"
DATA=/usr/share/datasets/fashion-mnist

bash scripts/setup.sh
cargo build --release -p cbam-cli
CBAM=target/release/cbam
OUT=target/demo
mkdir -p "$OUT"
name="$(basename "$MODEL" .onnx)"

echo "== inspect $MODEL"
"$CBAM" inspect "$MODEL"

echo "== quantize (512 calibration images from the training set)"
"$CBAM" quantize "$MODEL" --calib "$DATA/train-images-idx3-ubyte.gz" \
  --calib-labels "$DATA/train-labels-idx1-ubyte.gz" --limit 512 \
  --out "$OUT/$name.cbam" --qdq "$OUT/$name.int8.onnx" --report "$OUT/$name.report.json"

echo "== float model (tract) on $LIMIT test images"
"$CBAM" eval "$MODEL" --data "$DATA/t10k-images-idx3-ubyte.gz" \
  --labels "$DATA/t10k-labels-idx1-ubyte.gz" --limit "$LIMIT"

echo "== int8 blob on the cbam-core interpreter, vs the float model"
"$CBAM" eval "$OUT/$name.cbam" --data "$DATA/t10k-images-idx3-ubyte.gz" \
  --labels "$DATA/t10k-labels-idx1-ubyte.gz" --limit "$LIMIT" --reference "$MODEL"
