#!/usr/bin/env bash
# Prints the ESP32-C3 firmware's flash and RAM use against the chip's memory:
# 4 MB SPI flash on the DevKit's ESP32-C3-MINI-1 module, 400 KB SRAM (Espressif
# "ESP32-C3 Series Datasheet", CPU and Memory; firmware/boards.toml).
#   size.sh [ELF]   (default: the release build of this crate)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
elf=${1:-$here/target/riscv32imc-unknown-none-elf/release/cbam-firmware-esp32c3}
size_tool="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
FLASH_BYTES=$((4 * 1024 * 1024))
SRAM_BYTES=$((400 * 1024))

[ -f "$elf" ] || { echo "size.sh: $elf not found; run cargo build --release first" >&2; exit 1; }
[ -x "$size_tool" ] || { echo "size.sh: llvm-size missing; run scripts/setup.sh" >&2; exit 1; }

sum() {
  "$size_tool" -A "$elf" | awk -v want=" $* " 'index(want, " " $1 " ") { s += $2 } END { print s + 0 }'
}
# In flash: everything with load bytes (IRAM code and .data are copied from flash
# at boot). In SRAM: IRAM code, initialised and zeroed data. The "dummy"
# sections only reserve cache-MMU address space. The stack gets what is left.
flash=$(sum .flash.appdesc .rodata .text .trap .rwtext .data)
ram=$(sum .trap .rwtext .data .bss)
blob=$(sed -n 's/^pub const BLOB_LEN: usize = \([0-9]*\);/\1/p' "$(ls -t "$here"/target/riscv32imc-unknown-none-elf/release/build/cbam-firmware-esp32c3-*/out/cbam_testset.rs | head -n1)")
arena=$(sed -n 's/^pub const ARENA_SIZE: usize = \([0-9]*\);/\1/p' "$(ls -t "$here"/target/riscv32imc-unknown-none-elf/release/build/cbam-firmware-esp32c3-*/out/cbam_testset.rs | head -n1)")

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f%%", 100 * a / b }'; }
printf 'esp32c3-devkit  flash %8d of %8d bytes (%s), blob %d bytes embedded\n' "$flash" "$FLASH_BYTES" "$(pct "$flash" $FLASH_BYTES)" "$blob"
printf 'esp32c3-devkit  SRAM  %8d of %8d bytes (%s), arena %d bytes in .bss; the rest is stack\n' "$ram" "$SRAM_BYTES" "$(pct "$ram" $SRAM_BYTES)" "$arena"
