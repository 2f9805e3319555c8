#!/usr/bin/env bash
# The Pi path for real: runs cbam-core's tests (the NEON kernels among them) for aarch64,
# cross-builds `cbam` for aarch64, runs it under qemu-aarch64 on the
# committed test images (models/data/images) with both backends, and compares with the
# x86 host binary: bit for bit for the int8 core (its int8 outputs and classes), within a
# float tolerance for tract (float and QDQ). Also draws an attention overlay on aarch64.
# The int8 core runs on two emulated CPUs: QEMU's default (which has the Pi 5's `sdot`
# dot products) and a Cortex-A72 (the Pi 4, without them), so both kernel sets are checked,
# and once more with each frame's layers split over four threads (`--split-layers`).
# The RGB example models (scripts/rgb-blobs.sh) run their int8 blobs on the first images of
# their own test folders, compared bit for bit in the same way.
#
#   scripts/test-pi.sh            (PI_CAMERA=1 also cross-builds V4L2 camera support)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
step() { printf '\n=== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# The camera feature needs bindgen against the aarch64 kernel headers; the suite keeps to
# the capture-free build so it stays fast, and the camera code is unit-tested on the host.
CAMERA=(--no-camera)
[ "${PI_CAMERA:-0}" = 1 ] && CAMERA=()
step "cross-build cbam for aarch64 ${CAMERA[*]:-}"
PI_BIN="$ROOT/$(env -u RUSTC_WORKSPACE_WRAPPER bash scripts/pi-build.sh --dev "${CAMERA[@]}" | tail -n 1)"
step "cbam-core's tests on aarch64 under qemu-user (the NEON backend's shared suite)"
env -u RUSTC_WORKSPACE_WRAPPER cargo test -p cbam-core --target aarch64-unknown-linux-gnu
step "host build"
cargo build -p cbam-cli --bin cbam
HOST_BIN="$ROOT/target/debug/cbam"
QEMU=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
QEMU_PI4=(qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu)
"${QEMU[@]}" "$PI_BIN" --version

OUT="$ROOT/target/pi-test"
rm -rf "$OUT"
mkdir -p "$OUT"
IMAGES=models/data/images

compare() { # compare KIND HOST.json PI.json
  python3 - "$@" <<'PY'
import json, sys
kind, host_path, pi_path = sys.argv[1:4]
host, pi = json.load(open(host_path)), json.load(open(pi_path))
hf, pf = host["frames"], pi["frames"]
assert len(hf) == len(pf) > 0, f"{len(hf)} host frames vs {len(pf)} aarch64 frames"
worst = 0.0
for h, p in zip(hf, pf):
    hc = [c["class"] for c in h["top_k"]]
    pc = [c["class"] for c in p["top_k"]]
    if kind == "core":
        assert h["output_q"] == p["output_q"], f'{h["source"]}: int8 outputs differ\n{h["output_q"]}\n{p["output_q"]}'
        assert hc == pc, f'{h["source"]}: classes {hc} vs {pc}'
    else:
        assert hc[0] == pc[0], f'{h["source"]}: top-1 {hc[0]} vs {pc[0]}'
        for a, b in zip(h["top_k"], p["top_k"]):
            if a["class"] == b["class"]:
                worst = max(worst, abs(a["score"] - b["score"]))
        assert worst <= 1e-3, f'{h["source"]}: score differs by {worst}'
print(f"  {kind}: {len(hf)} frames equal" + (f" bit for bit ({pi_path.rsplit('.', 2)[-2]})" if kind == "core" else f" (max score diff {worst:.2e})"))
PY
}

for m in fmnist_cbam fmnist_cbam_res; do
  step "$m"
  "$HOST_BIN" quantize "models/$m.onnx" --calib models/data/calib256_images.u8 \
    --out "$OUT/$m.cbam" --qdq "$OUT/$m.int8.onnx" >/dev/null
  for variant in core float qdq; do
    case $variant in
      core) model="$OUT/$m.cbam" ;;
      float) model="models/$m.onnx" ;;
      qdq) model="$OUT/$m.int8.onnx" ;;
    esac
    "$HOST_BIN" run "$model" --input "$IMAGES" --json --top-k 3 >"$OUT/$m.$variant.host.json"
    "${QEMU[@]}" "$PI_BIN" run "$model" --input "$IMAGES" --json --top-k 3 >"$OUT/$m.$variant.pi.json"
    compare "$([ $variant = core ] && echo core || echo tract)" "$OUT/$m.$variant.host.json" "$OUT/$m.$variant.pi.json"
  done
  "${QEMU_PI4[@]}" "$PI_BIN" run "$OUT/$m.cbam" --input "$IMAGES" --json --top-k 3 >"$OUT/$m.core.pi4.json"
  compare core "$OUT/$m.core.host.json" "$OUT/$m.core.pi4.json"
  "${QEMU[@]}" "$PI_BIN" run "$OUT/$m.cbam" --input "$IMAGES" --json --top-k 3 \
    --threads 4 --split-layers >"$OUT/$m.core.pi-split4.json"
  compare core "$OUT/$m.core.host.json" "$OUT/$m.core.pi-split4.json"
  "${QEMU[@]}" "$PI_BIN" attention "$OUT/$m.cbam" "$IMAGES/test_000.png" \
    --compare "models/$m.onnx" -o "$OUT/$m.attention.pi.png" >/dev/null
  "$HOST_BIN" attention "$OUT/$m.cbam" "$IMAGES/test_000.png" -o "$OUT/$m.attention.core.host.png" >/dev/null
  "${QEMU[@]}" "$PI_BIN" attention "$OUT/$m.cbam" "$IMAGES/test_000.png" -o "$OUT/$m.attention.core.pi.png" >/dev/null
  if cmp -s "$OUT/$m.attention.core.host.png" "$OUT/$m.attention.core.pi.png"; then
    echo "  core attention PNG identical on x86 and aarch64"
  else
    echo "  core attention PNG differs between x86 and aarch64" >&2
    exit 1
  fi
done

# The RGB example models: no metadata of ours, so quantized with the normalisation a user
# gives, which the blob then carries to `cbam run` on both machines. The int8 core only, on
# the first images of each model's own test folder.
RGB_IMAGES=8
step "quantize the RGB example models"
RGB_BLOBS=$(bash scripts/rgb-blobs.sh "$HOST_BIN" "$OUT/rgb")
while IFS=$'\t' read -r m blob test_dir <&3; do
  step "$m (int8 core, $RGB_IMAGES of its test images)"
  images="$OUT/$m.images"
  mkdir -p "$images"
  find "$test_dir" -name '*.png' -printf '%f\t%p\n' | sort | sed -n "1,${RGB_IMAGES}p" |
    while IFS=$'\t' read -r file path; do ln -s "$path" "$images/$file"; done
  "$HOST_BIN" run "$blob" --input "$images" --json --top-k 3 >"$OUT/$m.core.host.json"
  "${QEMU[@]}" "$PI_BIN" run "$blob" --input "$images" --json --top-k 3 >"$OUT/$m.core.pi.json"
  compare core "$OUT/$m.core.host.json" "$OUT/$m.core.pi.json"
  "${QEMU_PI4[@]}" "$PI_BIN" run "$blob" --input "$images" --json --top-k 3 >"$OUT/$m.core.pi4.json"
  compare core "$OUT/$m.core.host.json" "$OUT/$m.core.pi4.json"
  # One frame's layers over the Pi's four cores.
  "${QEMU_PI4[@]}" "$PI_BIN" run "$blob" --input "$images" --json --top-k 3 \
    --threads 4 --split-layers >"$OUT/$m.core.pi4-split4.json"
  compare core "$OUT/$m.core.host.json" "$OUT/$m.core.pi4-split4.json"
done 3<<<"$RGB_BLOBS"

echo
echo "aarch64 under qemu-user matches the x86 host (outputs in $OUT)"
