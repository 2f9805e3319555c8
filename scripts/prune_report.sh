#!/usr/bin/env bash
# Reproduces the `cbam prune` numbers of issue 5 on the residual example model:
# MACs before/after, float and int8 accuracy before/after (no fine-tuning), and attention
# ranking vs L1-norm ranking at the same per-block ratio.
#
#   scripts/prune_report.sh                 # RATIO=0.5 (about -26% MACs), first 1,000 test images
#   RATIO=0.1 LIMIT=10000 scripts/prune_report.sh
#
# Needs the Fashion-MNIST test set (Debian package dataset-fashion-mnist, or FMNIST_DIR).
# Outputs go to OUT (default target/prune-report): pruned ONNX, prune reports, blobs,
# eval JSON, and a summary.txt with every number.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/fmnist_cbam_res.onnx}
RATIO=${RATIO:-0.5}
LIMIT=${LIMIT:-1000}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-target/prune-report}
CALIB=models/data/calib256_images.u8
TEST_X=$FMNIST_DIR/t10k-images-idx3-ubyte.gz
TEST_Y=$FMNIST_DIR/t10k-labels-idx1-ubyte.gz

for f in "$MODEL" "$CALIB" "$TEST_X" "$TEST_Y"; do
    [[ -f $f ]] || { echo "missing $f" >&2; exit 1; }
done
mkdir -p "$OUT"
cargo build -q -p cbam-cli
CBAM=target/debug/cbam

run() { echo "+ $*" >&2; "$@"; }

# 1. statistics and charts
run $CBAM prune "$MODEL" --calib "$CALIB" --stats-only --ratio "$RATIO" --plots "$OUT/plots" > "$OUT/stats.txt"

# 2. prune by attention and by L1 at the same per-block ratio (float accuracy in the reports)
for crit in attention l1; do
    run $CBAM prune "$MODEL" --calib "$CALIB" --ratio "$RATIO" --criterion $crit \
        --data "$TEST_X" --labels "$TEST_Y" --limit "$LIMIT" \
        --out "$OUT/pruned.$crit.onnx" --report "$OUT/prune.$crit.json" > "$OUT/prune.$crit.txt"
done

# 3. int8: quantize the original and both pruned models on the same calibration set, evaluate
for name in original attention l1; do
    src=$MODEL
    [[ $name != original ]] && src=$OUT/pruned.$name.onnx
    run $CBAM quantize "$src" --calib "$CALIB" --out "$OUT/$name.cbam" --report "$OUT/quant.$name.json" > /dev/null
    run $CBAM eval "$OUT/$name.cbam" --data "$TEST_X" --labels "$TEST_Y" --limit "$LIMIT" --json > "$OUT/eval.$name.json"
done

{
    echo "model $MODEL, per-block ratio $RATIO, $LIMIT test images"
    for crit in attention l1; do
        echo "--- $crit"
        cat "$OUT/prune.$crit.txt"
        echo "int8 eval: $(tr -d '\n' < "$OUT/eval.$crit.json")"
    done
    echo "--- original int8 eval: $(tr -d '\n' < "$OUT/eval.original.json")"
} | tee "$OUT/summary.txt"
