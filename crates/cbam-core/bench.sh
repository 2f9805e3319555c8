#!/usr/bin/env bash
# Instruction counts of the hot kernels (callgrind, host, release) and the core's .text size
# for Cortex-M4 (thumbv7em) at opt-level "s". Prints a small table; takes about a minute.
#
# Instructions per call = (Ir at N+10 iterations - Ir at N iterations) / 10, so process
# start-up and data set-up cancel out. The CBAM figure includes one 6 KB input restore
# (memcpy) per call, which is < 1 instruction per element.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../../target/core-dev}"
SYSROOT_BIN="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin"

cargo build -q --release -p cbam-core --features kernels --example kernel_bench
BENCH="$CARGO_TARGET_DIR/release/examples/kernel_bench"

ir() { # kernel iterations -> total instructions executed
  local out
  out="$(mktemp)"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BENCH" "$1" "$2" >/dev/null 2>&1
  grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
  rm -f "$out"
}

per_call() { # kernel -> instructions per call
  local a b
  a="$(ir "$1" 2)"
  b="$(ir "$1" 12)"
  echo $(( (b - a) / 10 ))
}

CONV_MACS=$((14 * 14 * 32 * 9 * 16))
CBAM_ELEMS=$((14 * 14 * 32))
conv_ir="$(per_call conv)"
cbam_ir="$(per_call cbam)"

# .text of cbam-core's own object code for thumbv7em, opt-level "s": every kernel, the
# reader and the interpreter. An upper bound: in the rlib nothing is garbage-collected yet,
# and it includes the `Display` impls that a defmt firmware never links.
RLIB="$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/libcbam_core.rlib"
CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_DEBUG=0 \
  cargo build -q --release -p cbam-core --target thumbv7em-none-eabihf
sections() { "$SYSROOT_BIN/llvm-size" -A "$RLIB" 2>/dev/null; }
text="$(sections | awk '$1 ~ /^\.text/ {s += $2} END {print s + 0}')"
text_no_fmt="$(sections | awk '$1 ~ /^\.text/ && $1 !~ /fmt/ {s += $2} END {print s + 0}')"
kernels="$(sections | awk '$1 ~ /^\.text/ && $1 ~ /cbam_core(7kernels|4cbam)/ {s += $2} END {print s + 0}')"
rodata="$(sections | awk '$1 ~ /^\.rodata/ {s += $2} END {print s + 0}')"

printf '\n%-44s %14s %12s\n' "kernel (host x86_64, release)" "instr/call" "per unit"
printf '%-44s %14d %12s\n' "conv2d 3x3 16->32 on 14x14 (${CONV_MACS} MACs)" "$conv_ir" \
  "$(awk "BEGIN {printf \"%.2f/MAC\", $conv_ir / $CONV_MACS}")"
printf '%-44s %14d %12s\n' "fused CBAM 14x14x32, Cr=4, k=7 (${CBAM_ELEMS} el.)" "$cbam_ir" \
  "$(awk "BEGIN {printf \"%.2f/elem\", $cbam_ir / $CBAM_ELEMS}")"
printf '\n%-44s %14s\n' "cbam-core .text, thumbv7em, opt-level s" "${text} bytes"
printf '%-44s %14s\n' "  of which outside fmt::Display impls" "${text_no_fmt} bytes"
printf '%-44s %14s\n' "  of which kernels + fused CBAM" "${kernels} bytes"
printf '%-44s %14s\n' "cbam-core .rodata (CRC table, messages)" "${rodata} bytes"
