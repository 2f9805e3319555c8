#!/usr/bin/env bash
# The per-kernel benchmark under QEMU: instructions per MAC for each
# layer shape, beside CMSIS-NN's counts, on Cortex-M4 (mps2-an386), Cortex-M3
# (mps2-an385), thumbv6m code (M0/M0+, run on the M3: v6-M is a subset of v7-M)
# and riscv32imc (virt). Exact instruction counts (-icount shift=0).
# A benchmark, not a test: exits non-zero only if a firmware fails to run.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
CBAM_BLOB=$(realpath -m "${CBAM_BLOB:-$repo/models/fmnist_cbam.cbam}")
export CBAM_BLOB
status=0
run() {
  local name=$1 dir=$2
  shift 2
  echo "== $name"
  local out
  out=$(cd "$here/$dir" && cargo run --release --features kernel-bench "$@" 2>&1)
  local rc=$?
  grep -E 'bench|ERROR' <<<"$out" | sed 's/^INFO  //'
  [ $rc -eq 0 ] || { echo "$name: exit $rc" >&2; status=1; }
}
run "mps2-an386 (Cortex-M4F, thumbv7em)" cortex-m
run "mps2-an385 (Cortex-M3, thumbv7m)" cortex-m --no-default-features --features mps2-an385 --target thumbv7m-none-eabi
run "thumbv6m code (Cortex-M0/M0+ portable path) on mps2-an385" cortex-m --no-default-features --features mps2-an385 --target thumbv6m-none-eabi
run "riscv-virt (rv32imc)" riscv-virt
exit $status
