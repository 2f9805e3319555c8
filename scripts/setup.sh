#!/usr/bin/env bash
# Installs everything cbam-edge needs on a fresh Debian/rustup machine.
# Idempotent: every step checks before it acts. Safe as root with no terminal.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- rustup targets -------------------------------------------------------
TARGETS="thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf aarch64-unknown-linux-gnu"
installed_targets="$(rustup target list --installed)"
missing=""
for t in $TARGETS; do
  grep -qx "$t" <<<"$installed_targets" || missing="$missing $t"
done
if [ -n "$missing" ]; then
  log "rustup targets:$missing"
  # shellcheck disable=SC2086
  rustup target add $missing
fi
for c in rustfmt clippy llvm-tools; do
  rustup component list --installed | grep -q "^$c" || rustup component add "$c" || rustup component add "${c}-preview"
done

# --- Debian packages ------------------------------------------------------
need_pkgs=""
for p in qemu-system-arm qemu-system-misc qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross dataset-fashion-mnist valgrind libclang1-14 libclang-common-14-dev chromium; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs="$need_pkgs $p"
done
if [ -n "$need_pkgs" ]; then
  log "apt packages:$need_pkgs"
  $SUDO apt-get update -qq
  # chromium: the headless browser of the live page's test (cbam-cli/tests/live_page.rs).
  # A newer qemu-utils is preinstalled on this image; QEMU 7.2's system
  # emulators only resolve against bookworm's qemu-utils.
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends --allow-downgrades \
    $need_pkgs qemu-utils/bookworm
fi

# --- cargo tools ----------------------------------------------------------
if ! command -v defmt-print >/dev/null 2>&1; then
  log "cargo install defmt-print"
  cargo install --locked defmt-print
fi

log "done"
