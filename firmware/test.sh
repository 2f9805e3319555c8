#!/usr/bin/env bash
# Builds and runs every cbam firmware; exits non-zero on any mismatch or build failure.
#
#   firmware/test.sh            # blob: $CBAM_BLOB or models/fmnist_cbam.cbam
#
# - host unit tests of the shared crates (app, build-support);
# - QEMU runs, each must end in PASS with every embedded image bit-exact with
#   the host core: cortex-m on mps2-an386 (M4F) and mps2-an385 (M3, and the
#   thumbv6m build on it), riscv-virt;
# - link-only builds of the real boards (nucleo-f411re, nrf52840dk, rpi-pico
#   thumbv6m) and of the ESP32-C3 firmware, test and evaluation (`eval`) builds;
# - the RGB example models (scripts/rgb-blobs.sh quantizes them) on mps2-an386 with
#   their own test images, bit-exact with the host core, when `cbam flash --dry-run`
#   says they fit it; their fit on the real boards, from the same check;
# - the 96x96 RGB model quantized with a patch schedule (--ram-budget) on mps2-an386
#   linked into 128 KB of RAM (CBAM_RAM_LIMIT, the STM32F411's) and into 80 KB, bit-exact and with
#   stack room left (the CBAM-RAM line's margin > 0); its fit on nucleo-f411re;
# - a table: board, instructions per inference, per MAC, arena, code, blob bytes.
# Needs what scripts/setup.sh installs (targets, QEMU, defmt-print, llvm-tools).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
CBAM_BLOB=$(realpath -m "${CBAM_BLOB:-$repo/models/fmnist_cbam.cbam}")
export CBAM_BLOB
logs=${CBAM_FIRMWARE_LOGS:-$here/target/test-logs}
mkdir -p "$logs"
size_tool="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"

if [ ! -f "$CBAM_BLOB" ]; then
  echo "test.sh: no model blob at $CBAM_BLOB; build it (models/README) or set CBAM_BLOB" >&2
  exit 1
fi
if [ ! -x "$size_tool" ]; then
  echo "test.sh: $size_tool missing; run scripts/setup.sh (rustup component llvm-tools)" >&2
  exit 1
fi

failures=0
rows=()

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# section_sum ELF SECTION... : sum of the named sections' sizes.
section_sum() {
  local elf=$1
  shift
  "$size_tool" -A "$elf" | awk -v want=" $* " 'index(want, " " $1 " ") { s += $2 } END { print s + 0 }'
}

# add_row BOARD ELF LOG: one table row from an ELF and (for QEMU runs) its log.
add_row() {
  local board=$1 elf=$2 log=${3:-}
  local per_inf="-" per_mac="-" arena="-" unit=""
  if [ -n "$log" ]; then
    local result
    result=$(grep -o 'CBAM-RESULT .*' "$log" | tail -n1)
    per_inf=$(sed -n 's/.* per_inference=\([0-9]*\).*/\1/p' <<<"$result")
    unit=$(sed -n 's/.* unit=\([a-z]*\).*/\1/p' <<<"$result")
    arena=$(sed -n 's/.* arena=\([0-9]*\).*/\1/p' <<<"$result")
    local macs
    macs=$(sed -n 's/.* macs=\([0-9]*\).*/\1/p' <<<"$result")
    if [ -n "$macs" ] && [ "$macs" -gt 0 ]; then
      per_mac=$(awk -v a="$per_inf" -v b="$macs" 'BEGIN { printf "%.2f", a / b }')
    fi
  fi
  local code blob
  code=$(section_sum "$elf" .vector_table .boot2 .init .trap .text .rwtext .rodata .data .flash.appdesc)
  blob=$(section_sum "$elf" .cbam_model)
  [ "$blob" -eq 0 ] && blob="$(stat -c %s "$CBAM_BLOB") (in code)"
  rows+=("$(printf '%-28s %14s %-12s %8s %8s %10s %s' "$board" "$per_inf" "$unit" "$per_mac" "$arena" "$code" "$blob")")
}

# qemu_run NAME DIR CARGO-ARGS...: cargo run under QEMU, checks PASS and bit-exactness.
qemu_run() {
  local name=$1 dir=$2
  shift 2
  local log="$logs/$name.log"
  echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $name: cargo run --release $*"
  (cd "$here/$dir" && cargo run --release "$@") >"$log" 2>&1
  local status=$?
  grep -E 'counter check|accuracy|latency|CBAM-RESULT|CBAM-RAM|PASS|FAIL|ERROR|error' "$log" | sed 's/^/   /'
  if [ $status -ne 0 ]; then
    fail "$name exited with $status (log: $log)"
    return
  fi
  local result images exact
  result=$(grep -o 'CBAM-RESULT .*' "$log" | tail -n1)
  images=$(sed -n 's/.* images=\([0-9]*\).*/\1/p' <<<"$result")
  exact=$(sed -n 's/.* exact=\([0-9]*\).*/\1/p' <<<"$result")
  if [ -z "$images" ] || [ "$images" != "$exact" ] || ! grep -q 'compared=true' <<<"$result"; then
    fail "$name: outputs not bit-exact with the host core ($exact of $images; log: $log)"
    return
  fi
  add_row "$name" "$(elf_path "$dir" "$@")" "$log"
}

# build_only NAME DIR CARGO-ARGS...: must compile and link.
build_only() {
  local name=$1 dir=$2
  shift 2
  local log="$logs/$name.log"
  echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $name: cargo build --release $*"
  if ! (cd "$here/$dir" && cargo build --release "$@") >"$log" 2>&1; then
    tail -n 20 "$log" | sed 's/^/   /'
    fail "$name did not build (log: $log)"
    return 1
  fi
  add_row "$name" "$(elf_path "$dir" "$@")"
}

# elf_path DIR CARGO-ARGS...: the ELF cargo wrote for these arguments.
elf_path() {
  local dir=$1
  shift
  local target
  target=$(sed -n 's/^target = "\(.*\)"/\1/p' "$here/$dir/.cargo/config.toml" | head -n1)
  while [ $# -gt 0 ]; do
    [ "$1" = "--target" ] && target=$2
    shift
  done
  echo "$here/$dir/target/$target/release/cbam-firmware-$dir"
}

# The suite lints its host workspace through RUSTC_WORKSPACE_WRAPPER; the firmware
# workspaces build for their targets without it, and only the host `cbam` below keeps it so
# it reuses the suite's build.
HOST_WORKSPACE_WRAPPER=${RUSTC_WORKSPACE_WRAPPER:-}
unset RUSTC_WORKSPACE_WRAPPER

echo "== host unit tests (app, build-support)"
for crate in app build-support; do
  if ! (cd "$here/$crate" && cargo test --quiet) >"$logs/unit-$crate.log" 2>&1; then
    tail -n 20 "$logs/unit-$crate.log" | sed 's/^/   /'
    fail "unit tests of firmware/$crate (log: $logs/unit-$crate.log)"
  else
    grep 'test result' "$logs/unit-$crate.log" | head -n1 | sed 's/^/   /'
  fi
done
# The evaluation firmware's request handling (cbam eval --device), on the host.
if ! (cd "$here/app" && cargo test --quiet --features eval) >"$logs/unit-app-eval.log" 2>&1; then
  tail -n 20 "$logs/unit-app-eval.log" | sed 's/^/   /'
  fail "unit tests of firmware/app --features eval (log: $logs/unit-app-eval.log)"
else
  grep 'test result' "$logs/unit-app-eval.log" | head -n1 | sed 's/^/   /'
fi

# cbam-core's shared kernel suite against its Cortex-M4 (Arm DSP) backend (bit-exact).
echo "== kernel-tests (DSP path on mps2-an386): cargo run --release"
if (cd "$here/kernel-tests" && cargo run --release) >"$logs/kernel-tests.log" 2>&1; then
  grep -E 'PASS' "$logs/kernel-tests.log" | sed 's/^/   /'
else
  tail -n 20 "$logs/kernel-tests.log" | sed 's/^/   /'
  fail "DSP kernels differ from the reference on thumbv7em (log: $logs/kernel-tests.log)"
fi
qemu_run mps2-an386 cortex-m
qemu_run mps2-an385 cortex-m --no-default-features --features mps2-an385 --target thumbv7m-none-eabi
# Cortex-M0/M0+ code (thumbv6m, the portable path) executed on QEMU's M3: v6-M
# is a subset of v7-M, and QEMU's only M0 machine (microbit) has 16 KB of RAM.
qemu_run thumbv6m@an385 cortex-m --no-default-features --features mps2-an385 --target thumbv6m-none-eabi
qemu_run riscv-virt riscv-virt
build_only nucleo-f411re cortex-m --no-default-features --features nucleo-f411re --target thumbv7em-none-eabihf
build_only nrf52840dk cortex-m --no-default-features --features nrf52840dk --target thumbv7em-none-eabihf
build_only rpi-pico cortex-m --no-default-features --features rpi-pico --target thumbv6m-none-eabi
build_only esp32c3-devkit esp32c3 && "$here/esp32c3/size.sh" | sed 's/^/   /'
# The evaluation firmware (cbam eval --device) of the real boards must link; the QEMU
# boards' eval builds run in crates/cbam-cli/tests/eval_device.rs.
for eval in "nucleo-f411re cortex-m thumbv7em-none-eabihf" "rpi-pico cortex-m thumbv6m-none-eabi" \
  "esp32c3-devkit esp32c3 riscv32imc-unknown-none-elf"; do
  read -r board dir target <<<"$eval"
  args=(--no-default-features --features "$board,eval" --target "$target")
  echo "== $board+eval: cargo build --release ${args[*]}"
  if ! (cd "$here/$dir" && cargo build --release "${args[@]}") >"$logs/$board-eval.log" 2>&1; then
    tail -n 20 "$logs/$board-eval.log" | sed 's/^/   /'
    fail "$board+eval did not build (log: $logs/$board-eval.log)"
  fi
done
# The benchmark calls the core's kernels directly: keep it building.
echo "== kernel-bench: cargo build --release --features kernel-bench"
if ! (cd "$here/cortex-m" && cargo build --release --features kernel-bench) >"$logs/kernel-bench.log" 2>&1; then
  tail -n 20 "$logs/kernel-bench.log" | sed 's/^/   /'
  fail "the kernel benchmark did not build (log: $logs/kernel-bench.log)"
fi

# The RGB example models (scripts/rgb-blobs.sh) on the M4 under QEMU with their own test
# images, when they fit the board. `cbam flash --dry-run` is the fit check: its numbers are
# printed for the QEMU board and the real ones, and a model that does not fit the QEMU board
# is reported with them instead of run.
rgb_board=mps2-an386
rgb_images=8
real_boards=(nucleo-f411re nrf52840dk rpi-pico esp32c3-devkit)

# fit_summary BOARD FIT-LOG: the dry-run's rows on one line, and what does not fit by how
# much (or the error, when the check itself failed).
fit_summary() {
  local board=$1 log=$2
  if ! grep -qE '^  (flash|RAM)' "$log"; then
    printf '%-16s %s\n' "$board" "no fit check: $(grep -m1 -i error "$log" || head -n1 "$log")"
    return
  fi
  awk -v board="$board" '
    /^  (flash|RAM)/ && substr($0, 25) ~ /^ +[0-9,]+ +[0-9,]+ / {
      res = substr($0, 3, 22); sub(/ +$/, "", res)
      split(substr($0, 25), f, " +")
      rows = rows sep res " " f[2] " of " f[3] " B (" f[4] ")"; sep = "; "
    }
    END { printf "%-16s %s\n", board, rows }' "$log"
  grep -E 'needs .* over\)' "$log" | sed 's/^ */   does not fit: /'
}

echo "== RGB example models on $rgb_board (scripts/rgb-blobs.sh; $rgb_images of their test images)"
cbam=$repo/target/debug/cbam
rgb=""
if ! (cd "$repo" && RUSTC_WORKSPACE_WRAPPER=$HOST_WORKSPACE_WRAPPER cargo build -p cbam-cli --bin cbam) >"$logs/cbam-host.log" 2>&1; then
  tail -n 20 "$logs/cbam-host.log" | sed 's/^/   /'
  fail "the host cbam did not build (log: $logs/cbam-host.log)"
elif ! rgb=$(bash "$repo/scripts/rgb-blobs.sh" "$cbam" "$logs/rgb-blobs" 2>"$logs/rgb-blobs.log"); then
  sed 's/^/   /' "$logs/rgb-blobs.log"
  fail "the RGB example models did not quantize (log: $logs/rgb-blobs.log)"
fi
while IFS=$'\t' read -r name blob test_dir <&3; do
  [ -n "$name" ] || continue
  fit_log="$logs/$name@$rgb_board.fit.log"
  "$cbam" flash --board "$rgb_board" --model "$blob" --dry-run --no-build >"$fit_log" 2>&1
  fit_status=$?
  if [ $fit_status -eq 0 ]; then
    CBAM_BLOB=$blob CBAM_TEST_DATA=$test_dir CBAM_TEST_IMAGES=$rgb_images \
      qemu_run "$name@$rgb_board" cortex-m
    # Again with the ELF just run: its code and static RAM counted too.
    "$cbam" flash --board "$rgb_board" --model "$blob" --firmware "$(elf_path cortex-m)" \
      --dry-run >"$fit_log" 2>&1
    echo "   fit ($name, firmware included):"
  elif grep -q 'does not fit' "$fit_log"; then
    echo "   $name does not fit $rgb_board; not run (log: $fit_log):"
  else
    fail "the fit check of $name on $rgb_board failed (log: $fit_log)"
  fi
  fit_summary "$rgb_board" "$fit_log" | sed 's/^/     /'
  echo "   fit ($name alone: model, arena and cbam flash's default stack) on the real boards:"
  for board in "${real_boards[@]}"; do
    "$cbam" flash --board "$board" --model "$blob" --dry-run --no-build \
      >"$logs/$name@$board.fit.log" 2>&1
    fit_summary "$board" "$logs/$name@$board.fit.log" | sed 's/^/     /'
  done
done 3<<<"$rgb"

# The 96x96 RGB model in little RAM: a patch schedule whose arena leaves room for the
# firmware's statics and stack, linked into the STM32F411's 128 KB and into 80 KB.
# Last, as it relinks the cortex-m ELF.
ram_model=$repo/models/rgb_mbv2_cbam96.onnx
ram_images=3
ram_run() { # RAM limit of the link, arena budget of the quantizer
  local ram_limit=$1 ram_budget=$2 ram name blob test_dir run_name margin
  echo "== $(basename "$ram_model" .onnx) at CBAM_RAM_LIMIT=$ram_limit (quantize --ram-budget $ram_budget; $ram_images test images)"
  if [ -x "$cbam" ] && ram=$(bash "$repo/scripts/rgb-blobs.sh" "$cbam" "$logs/rgb-ram-$ram_limit" "$ram_model" \
    -- --ram-budget "$ram_budget" 2>"$logs/rgb-ram-$ram_limit-blobs.log"); then
    grep '^arena:' "$logs/rgb-ram-$ram_limit-blobs.log" | sed 's/^/   /'
    IFS=$'\t' read -r name blob test_dir <<<"$ram"
    run_name="$name@$rgb_board-$ram_limit"
    CBAM_RAM_LIMIT=$ram_limit CBAM_BLOB=$blob CBAM_TEST_DATA=$test_dir CBAM_TEST_IMAGES=$ram_images \
      qemu_run "$run_name" cortex-m
    margin=$(grep -o 'CBAM-RAM .*' "$logs/$run_name.log" | tail -n1 | sed -n 's/.* margin=\([0-9]*\).*/\1/p')
    if [ -z "$margin" ] || [ "$margin" -eq 0 ]; then
      fail "$run_name: no stack room left in $ram_limit of RAM (margin ${margin:-missing}; log: $logs/$run_name.log)"
    fi
    if ! "$cbam" flash --board nucleo-f411re --model "$blob" --dry-run --no-build \
      >"$logs/$name@nucleo-f411re-$ram_limit.fit.log" 2>&1; then
      fail "$name with --ram-budget $ram_budget does not fit nucleo-f411re (log: $logs/$name@nucleo-f411re-$ram_limit.fit.log)"
    fi
    fit_summary nucleo-f411re "$logs/$name@nucleo-f411re-$ram_limit.fit.log" | sed 's/^/   /'
  else
    sed 's/^/   /' "$logs/rgb-ram-$ram_limit-blobs.log" 2>/dev/null
    fail "$(basename "$ram_model") did not quantize with --ram-budget $ram_budget (log: $logs/rgb-ram-$ram_limit-blobs.log)"
  fi
}
ram_run 128K 96KB
ram_run 80K 64KB

echo
echo "blob: $CBAM_BLOB ($(stat -c %s "$CBAM_BLOB") bytes), the RGB rows their own; code = vector table + text + rodata (incl. the embedded test images) + data"
printf '%-28s %14s %-12s %8s %8s %10s %s\n' board per-inference counter per-MAC arena code blob
for row in "${rows[@]}"; do echo "$row"; done
echo
if [ $failures -ne 0 ]; then
  echo "firmware: $failures failure(s)"
  exit 1
fi
echo "firmware: all builds and QEMU runs passed"
