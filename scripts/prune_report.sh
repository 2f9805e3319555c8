#!/usr/bin/env bash
# Reproduces the `cbam prune` numbers on the residual example model: MACs
# before/after, float and int8 accuracy before/after (no fine-tuning) on the test set, and
# attention ranking vs L1-norm ranking at the same MAC budget and at the same per-block ratio.
# Then the same default cut (--channels auto, --macs-budget BUDGET) on the plain CBAM CNN
# (PLAIN_MODEL; set it empty to skip, about 1 min).
#
#   scripts/prune_report.sh                       # all 10,000 test images (about 5 min)
#   LIMIT=1000 BUDGET=70% RATIO=0.35 scripts/prune_report.sh
#   FINETUNE_EPOCHS=2 scripts/prune_report.sh     # also the PyTorch fine-tune recipe (+6 min)
#
# Every selection uses the calibration images only (models/data/calib256_images.u8, taken
# from the training set); the test set is only measured. Needs the Fashion-MNIST test set
# (Debian package dataset-fashion-mnist, or FMNIST_DIR). Outputs go to OUT (default
# target/prune-report): pruned ONNX, prune reports, blobs, eval JSON, charts and
# summary.txt with every number.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/fmnist_cbam_res.onnx}
PLAIN_MODEL=${PLAIN_MODEL-models/fmnist_cbam.onnx}
BUDGET=${BUDGET:-75%}
RATIO=${RATIO:-0.3}
LIMIT=${LIMIT:-10000}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-target/prune-report}
CALIB=models/data/calib256_images.u8
TEST_X=$FMNIST_DIR/t10k-images-idx3-ubyte.gz
TEST_Y=$FMNIST_DIR/t10k-labels-idx1-ubyte.gz

for f in "$MODEL" "$CALIB" "$TEST_X" "$TEST_Y"; do
    [[ -f $f ]] || { echo "missing $f" >&2; exit 1; }
done
mkdir -p "$OUT"
cargo build -q --release -p cbam-cli
CBAM=target/release/cbam

run() { echo "+ $*" >&2; "$@"; }

# 1. statistics and charts, with the default selection's cut drawn
run $CBAM prune "$MODEL" --calib "$CALIB" --stats-only --ratio "$RATIO" --plots "$OUT/plots" > "$OUT/stats.txt"

# 2. the configurations compared: name and `cbam prune` selection flags. The default
#    (internal channels, least-squares refit of the consumer conv) under a MAC budget and a
#    per-block ratio, by attention and by L1; the plain cut without the refit; and the
#    residual-coupled CBAM channels only (the first version's behaviour).
configs=(
    "attention.budget --criterion attention --macs-budget $BUDGET"
    "l1.budget --criterion l1 --macs-budget $BUDGET"
    "attention.ratio --criterion attention --ratio $RATIO"
    "l1.ratio --criterion l1 --ratio $RATIO"
    "attention.ratio.norefit --criterion attention --ratio $RATIO --no-reconstruct"
    "attended.ratio --criterion attention --channels attended --ratio 0.5 --no-reconstruct"
)
for config in "${configs[@]}"; do
    read -r name flags <<< "$config"
    # shellcheck disable=SC2086 # flags are words on purpose
    run $CBAM prune "$MODEL" --calib "$CALIB" $flags \
        --data "$TEST_X" --labels "$TEST_Y" --limit "$LIMIT" \
        --out "$OUT/pruned.$name.onnx" --report "$OUT/prune.$name.json" > "$OUT/prune.$name.txt"
done

# 3. int8: quantize the original and every pruned model on the same calibration set, evaluate
names=(original)
for config in "${configs[@]}"; do names+=("${config%% *}"); done
for name in "${names[@]}"; do
    src=$MODEL
    [[ $name != original ]] && src=$OUT/pruned.$name.onnx
    run $CBAM quantize "$src" --calib "$CALIB" --out "$OUT/$name.cbam" --report "$OUT/quant.$name.json" > /dev/null
    run $CBAM eval "$OUT/$name.cbam" --data "$TEST_X" --labels "$TEST_Y" --limit "$LIMIT" --json > "$OUT/eval.$name.json"
done

# 3b. the plain CBAM CNN (no residual Add): the default scope cuts its CBAM feature maps
if [[ -n $PLAIN_MODEL ]]; then
    run $CBAM prune "$PLAIN_MODEL" --calib "$CALIB" --macs-budget "$BUDGET" \
        --data "$TEST_X" --labels "$TEST_Y" --limit "$LIMIT" \
        --out "$OUT/plain.pruned.onnx" --report "$OUT/prune.plain.json" > "$OUT/prune.plain.txt"
    for src in "$PLAIN_MODEL" "$OUT/plain.pruned.onnx"; do
        name=plain.original
        [[ $src != "$PLAIN_MODEL" ]] && name=plain.pruned
        run $CBAM quantize "$src" --calib "$CALIB" --out "$OUT/$name.cbam" > /dev/null
        run $CBAM eval "$OUT/$name.cbam" --data "$TEST_X" --labels "$TEST_Y" --limit "$LIMIT" \
            --json > "$OUT/eval.$name.json"
    done
else
    rm -f "$OUT/prune.plain.json"
fi

# 4. optional: what the fine-tune recipe recovers on the default (attention, budget) cut
if [[ -n ${FINETUNE_EPOCHS:-} ]]; then
    PYTHON=${PYTHON:-/opt/torchenv/bin/python}
    run "$PYTHON" tools/finetune_pruned.py "$OUT/pruned.attention.budget.onnx" \
        "$OUT/pruned.attention.budget.ft.onnx" --epochs "$FINETUNE_EPOCHS" > "$OUT/finetune.txt"
    run $CBAM quantize "$OUT/pruned.attention.budget.ft.onnx" --calib "$CALIB" \
        --out "$OUT/attention.budget.ft.cbam" > /dev/null
    run $CBAM eval "$OUT/attention.budget.ft.cbam" --data "$TEST_X" --labels "$TEST_Y" \
        --limit "$LIMIT" --json > "$OUT/eval.attention.budget.ft.json"
else
    rm -f "$OUT/finetune.txt"
fi

# 5. one table
python3 - "$OUT" "$MODEL" "$LIMIT" "${names[@]}" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
out, model, limit, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
load = lambda p: json.load(open(f"{out}/{p}"))
orig = 100 * load("eval.original.json")["accuracy"]
print(f"model {model}, {limit} test images; original int8 accuracy {orig:.2f}%")
print(f"{'config':<24}{'MACs':>10}{'-MACs':>8}{'float before':>14}{'float after':>13}{'int8 after':>12}{'int8 loss':>11}")
for name in names[1:]:
    r = load(f"prune.{name}.json")
    int8 = 100 * load(f"eval.{name}.json")["accuracy"]
    acc = r.get("accuracy") or {}
    print(f"{name:<24}{r['after']['macs']:>10}{r['macs_reduction_pct']:>7.1f}%"
          f"{acc.get('before_pct', float('nan')):>13.2f}%{acc.get('after_pct', float('nan')):>12.2f}%"
          f"{int8:>11.2f}%{orig - int8:>9.2f}pp")
print()
for name in names[1:]:
    r = load(f"prune.{name}.json")
    kept = ", ".join(f"{b['name'].strip('/')} {b['kept']}/{b['channels']}" for b in r["blocks"] if b["kept"] < b["channels"])
    print(f"{name}: {r['selection']}, {r['scope']} channels; kept {kept}")
    for rec in r["reconstruction"]:
        print(f"    refit {rec['conv']}: relative output error {rec['rel_error_before']:.3f} -> {rec['rel_error_after']:.3f}")
try:
    r = load("prune.plain.json")
    before, after = (100 * load(f"eval.plain.{n}.json")["accuracy"] for n in ("original", "pruned"))
    acc = r.get("accuracy") or {}
    kept = ", ".join(f"{b['name'].strip('/')} {b['kept']}/{b['channels']}" for b in r["blocks"] if b["kept"] < b["channels"])
    print(f"\nplain CBAM CNN, {r['selection']}, {r['scope']} channels: MACs {r['before']['macs']} -> {r['after']['macs']}"
          f" (-{r['macs_reduction_pct']:.1f}%); float {acc.get('before_pct', float('nan')):.2f}% -> {acc.get('after_pct', float('nan')):.2f}%;"
          f" int8 {before:.2f}% -> {after:.2f}% ({before - after:.2f} pp); kept {kept}")
except FileNotFoundError:
    pass
try:
    ft = open(f"{out}/finetune.txt").read().strip().splitlines()
    int8 = 100 * load("eval.attention.budget.ft.json")["accuracy"]
    print(f"\nfine-tuned attention.budget: {ft[-2] if len(ft) > 1 else ft}; int8 {int8:.2f}%")
except FileNotFoundError:
    pass
EOF
