#!/usr/bin/env bash
# Cross-builds the `cbam` CLI for the Raspberry Pi (64-bit Raspberry Pi OS,
# aarch64-unknown-linux-gnu) with Debian's aarch64-linux-gnu-gcc.
#
#   scripts/pi-build.sh              release build with camera (V4L2) support
#   scripts/pi-build.sh --dev        the dev profile (what scripts/test-pi.sh runs; faster to build)
#   scripts/pi-build.sh --no-camera  without V4L2 (no libclang needed; --input still works)
#
# Copy the printed binary to the Pi (`scp ... pi@raspberrypi:`) and run it there; on the Pi
# itself, `cargo build --release -p cbam-cli --bin cbam --features camera` does the same.
# Only the `cbam` binary is built; `cbam flash` is in it too (probe-rs cross-builds with no
# C dependency beyond the linker).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
PROFILE=release
FEATURES=(--features camera)
for arg in "$@"; do
  case "$arg" in
    --dev) PROFILE=dev ;;
    --no-camera) FEATURES=() ;;
    *) echo "usage: $0 [--dev] [--no-camera]" >&2; exit 2 ;;
  esac
done

if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  echo "error: aarch64-linux-gnu-gcc not found; run scripts/setup.sh (package gcc-aarch64-linux-gnu)" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "error: the Rust target $TARGET is not installed; run scripts/setup.sh (rustup target add $TARGET)" >&2
  exit 1
fi
if [ ${#FEATURES[@]} -gt 0 ] && ! ldconfig -p | grep -q 'libclang.*\.so'; then
  echo "error: camera support generates V4L2 bindings with bindgen, which needs libclang;" >&2
  echo "       apt-get install libclang1-14 libclang-common-14-dev, or pass --no-camera" >&2
  exit 1
fi

cargo build --profile "$PROFILE" -p cbam-cli --bin cbam --target "$TARGET" "${FEATURES[@]}"
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN="target/$TARGET/$DIR/cbam"
file "$BIN" 2>/dev/null || true
echo "$BIN"
