#!/usr/bin/env bash
# Fidelity of int8 vs float on the full Fashion-MNIST test set, against the project's
# target: top-1 agreement >= 99.5 %, accuracy loss <= 0.2 pp.
#
# For each model (arguments, or every models/*.onnx plus the trained entries of
# models/manifest.json): quantize with 512 calibration images from the training set, then
# `cbam eval --json` the blob against its float source over all 10,000 test images.
#
#   scripts/fidelity.sh                      # every example model
#   scripts/fidelity.sh models/a.onnx        # one model
#   PROFILE=debug LIMIT=1000 scripts/fidelity.sh   # quicker, fewer test images
#   METHOD=mse scripts/fidelity.sh           # another calibration method
#   QUANTIZE_ARGS=--no-bias-correction scripts/fidelity.sh   # without bias correction
#   SPLIT=heldout scripts/fidelity.sh        # training images 50000-59999 instead of the
#                                            # test set (where the quantizer's defaults
#                                            # were chosen; calibration uses the first ones)
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/usr/share/datasets/fashion-mnist}
PROFILE=${PROFILE:-release}
CALIB=${CALIB:-512}
LIMIT=${LIMIT:-}
METHOD=${METHOD:-minmax}
QUANTIZE_ARGS=${QUANTIZE_ARGS:-}
SPLIT=${SPLIT:-test}

for f in t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz train-images-idx3-ubyte.gz; do
  [ -f "$DATA/$f" ] || { echo "missing $DATA/$f: run scripts/setup.sh" >&2; exit 1; }
done

if [ "$PROFILE" = release ]; then
  cargo build -q --release -p cbam-cli
else
  cargo build -q -p cbam-cli
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
CBAM="$target_dir/$PROFILE/cbam"

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  shopt -s nullglob
  models=(models/*.onnx)
  if [ -f models/manifest.json ]; then
    while IFS= read -r m; do models+=("$m"); done < <(python3 - <<'PY'
import json, os
doc = json.load(open("models/manifest.json"))
entries = doc.get("models", []) if isinstance(doc, dict) else doc
for e in entries:
    name = e.get("onnx") or e.get("path") or e.get("file")
    if e.get("trained") is True and name and os.path.isfile(os.path.join("models", name)):
        print(os.path.join("models", name))
PY
)
  fi
fi
mapfile -t models < <(printf '%s\n' "${models[@]}" | sort -u)
[ ${#models[@]} -gt 0 ] || { echo "no models: put ONNX files in models/ or pass them as arguments" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case "$SPLIT" in
  test)
    eval_data="$DATA/t10k-images-idx3-ubyte.gz"
    eval_labels="$DATA/t10k-labels-idx1-ubyte.gz"
    ;;
  heldout)
    # The last 10,000 training images as raw u8 (the .u8 format `cbam eval` reads).
    [ -f "$DATA/train-labels-idx1-ubyte.gz" ] || { echo "missing $DATA/train-labels-idx1-ubyte.gz" >&2; exit 1; }
    python3 - "$DATA" "$work" <<'PY'
import gzip, sys
data, work = sys.argv[1], sys.argv[2]
images = gzip.open(f"{data}/train-images-idx3-ubyte.gz").read()[16:]
labels = gzip.open(f"{data}/train-labels-idx1-ubyte.gz").read()[8:]
open(f"{work}/heldout_images.u8", "wb").write(images[50000 * 784:60000 * 784])
open(f"{work}/heldout_labels.u8", "wb").write(labels[50000:60000])
PY
    eval_data="$work/heldout_images.u8"
    eval_labels="$work/heldout_labels.u8"
    ;;
  *) echo "SPLIT must be test or heldout, not $SPLIT" >&2; exit 1 ;;
esac
limit_args=()
[ -n "$LIMIT" ] && limit_args=(--limit "$LIMIT")

printf '%-28s %6s %10s %9s %9s %8s %6s  %s\n' model n agreement float int8 loss_pp ties target
status=0
for m in "${models[@]}"; do
  stem=$(basename "$m" .onnx)
  "$CBAM" quantize "$m" --calib "$DATA/train-images-idx3-ubyte.gz" --limit "$CALIB" \
      --method "$METHOD" $QUANTIZE_ARGS --out "$work/$stem.cbam" --report "$work/$stem.report.json" \
      > "$work/$stem.quantize.log"
  "$CBAM" eval "$work/$stem.cbam" --reference "$m" \
      --data "$eval_data" --labels "$eval_labels" \
      "${limit_args[@]}" --json > "$work/$stem.json"
  python3 - "$stem" "$work/$stem.json" <<'PY' || status=1
import json, sys
stem, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
agree, q, f = r["agreement"], r["accuracy"], r["reference"]["accuracy"]
loss = (f - q) * 100
ok = agree >= 0.995 and loss <= 0.2
print(f"{stem:<28} {r['n']:>6} {agree*100:>9.2f}% {f*100:>8.2f}% {q*100:>8.2f}% {loss:>8.2f} {r['ties']:>6}  {'met' if ok else 'MISSED'}")
sys.exit(0 if ok else 1)
PY
done
if [ -f "$work/$stem.report.json" ]; then
  python3 -c 'import json,sys; print("quantizer: " + "; ".join(json.load(open(sys.argv[1]))["techniques"]))' "$work/$stem.report.json"
fi
echo "calibration: $METHOD on the first $CALIB training images; evaluation: $SPLIT split; target: agreement >= 99.50 %, loss <= 0.20 pp"
echo "ties: samples whose int8 output has two or more classes at the top level (the first of them is the prediction)"
exit $status
