#!/usr/bin/env bash
# The whole test suite: set-up, lint, host tests, cross builds, firmware under QEMU,
# the Pi build under qemu-user. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# Each step is stamped with the suite's elapsed time, so a CI log shows where the time goes.
step() { printf '\n=== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

step "set-up"
bash scripts/setup.sh

step "format"
cargo fmt --all --check

# Every host build of the workspace below goes through clippy (see scripts/clippy-rustc.sh):
# the same lints as `cargo clippy --workspace --all-targets -- -D warnings`, without a second
# pass over the dependencies. Builds for other targets leave it out (env -u): they are
# compiled, not linted.
export RUSTC_WORKSPACE_WRAPPER="$ROOT/scripts/clippy-rustc.sh"

step "clippy while building every host target"
cargo test --workspace --all-targets --no-run

step "host tests"
cargo test --workspace

step "cbam-core builds for every embedded target"
for t in thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf; do
  env -u RUSTC_WORKSPACE_WRAPPER cargo build -p cbam-core --release --target "$t"
  env -u RUSTC_WORKSPACE_WRAPPER cargo build -p cbam-core --release --target "$t" --features defmt
done

step "example blobs from the example models"
CBAM="$ROOT/target/debug/cbam"
mkdir -p target/blobs
for m in fmnist_cbam fmnist_cbam_res; do
  "$CBAM" quantize "models/$m.onnx" --calib models/data/calib256_images.u8 \
    --out "target/blobs/$m.cbam"
done
# The committed default blob of the firmware (`cargo run` in firmware/cortex-m with no
# CBAM_BLOB) must still be one the core reads and runs.
"$CBAM" eval models/fmnist_cbam.cbam --data models/data/test64_images.u8 \
  --labels models/data/test64_labels.u8

step "firmware under QEMU (Cortex-M, RISC-V) and real-board builds"
CBAM_BLOB="$ROOT/target/blobs/fmnist_cbam.cbam" bash firmware/test.sh

step "the Pi build: aarch64 under qemu-user, compared with the host"
bash scripts/test-pi.sh

echo
echo "all test steps passed in $((SECONDS / 60))m$((SECONDS % 60))s"
