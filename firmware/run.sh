#!/usr/bin/env bash
# Cargo runner for every cbam firmware: `run.sh ELF`.
#
# Reads the board from the `CBAM-RUN ...;` tag the firmware carries (written by
# cbam-firmware-build from boards.toml), then
#   - QEMU boards: runs the ELF in qemu-system-{arm,riscv32} with -icount shift=0
#     and decodes the defmt stream with `defmt-print -e ELF`, exiting with the
#     firmware's exit code (semihosting exit, or the virt test device);
#   - real boards: `probe-rs run --chip CHIP ELF` (flash, RTT defmt, exit code).
# CBAM_QEMU_TIMEOUT (seconds, default 600) bounds a QEMU run.
set -euo pipefail

elf=${1:?usage: run.sh ELF}
tag=$(grep -a -o -m1 'CBAM-RUN [^;]*' "$elf" | head -n1 || true)
if [ -z "$tag" ]; then
  echo "run.sh: $elf carries no CBAM-RUN tag; was it built from firmware/?" >&2
  exit 2
fi
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$tag "; }
board=$(field board)
qemu=$(field qemu)
chip=$(field chip)
core=$(field core)

for tool in defmt-print; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found; run scripts/setup.sh" >&2; exit 2; }
done

if [ -z "$qemu" ]; then
  command -v probe-rs >/dev/null || { echo "run.sh: $board is a real board; install probe-rs (or use cbam flash --chip $chip)" >&2; exit 2; }
  exec probe-rs run --chip "$chip" "$elf"
fi

case "$core" in
  M4F) cmd=(qemu-system-arm -cpu cortex-m4) ;;
  M3) cmd=(qemu-system-arm -cpu cortex-m3) ;;
  M0 | M0+) cmd=(qemu-system-arm -cpu cortex-m0) ;;
  RV32IMC) cmd=(qemu-system-riscv32 -bios none) ;;
  *) echo "run.sh: no QEMU CPU for core '$core' of board $board" >&2; exit 2 ;;
esac
# -icount shift=0: one instruction per virtual nanosecond, so the firmware's
# SysTick / mtime readings are exact, repeatable instruction counts.
cmd+=(-machine "$qemu" -nographic -monitor none -icount shift=0 -kernel "$elf")
case "$core" in
  RV32IMC) cmd+=(-serial stdio) ;;  # defmt frames on the UART
  *) cmd+=(-serial none -semihosting-config enable=on,target=native) ;;  # defmt on semihosting stdout
esac
command -v "${cmd[0]}" >/dev/null || { echo "run.sh: ${cmd[0]} not found; run scripts/setup.sh" >&2; exit 2; }

set +e
timeout "${CBAM_QEMU_TIMEOUT:-600}" "${cmd[@]}" </dev/null | defmt-print -e "$elf"
status=("${PIPESTATUS[@]}")
set -e
if [ "${status[0]}" -eq 124 ]; then
  echo "run.sh: $board timed out after ${CBAM_QEMU_TIMEOUT:-600} s" >&2
fi
if [ "${status[1]}" -ne 0 ]; then
  echo "run.sh: defmt-print failed (${status[1]})" >&2
  exit "${status[1]}"
fi
exit "${status[0]}"
