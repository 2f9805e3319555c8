#!/usr/bin/env bash
# Instructions per inference of the int8 core for each example model, aarch64 (the
# Raspberry Pi build, NEON backend) beside x86_64 (the AVX2 backend), counted under
# qemu-user: a machine that cannot time a Pi can still see what a kernel change costs there.
# A benchmark, not a test (minutes, not part of scripts/test.sh).
#
#   scripts/insn-counts.sh            builds the `cbam` CLI (release) to quantize the blobs
#   scripts/insn-counts.sh CBAM_BIN   quantizes with an existing `cbam` binary instead
#   K=8 scripts/insn-counts.sh        more inferences in each difference (default 4)
#
# How it counts. Debian's QEMU 7.2 ships no TCG plugins, so the count comes from QEMU's own
# log: `-d in_asm,exec,nochain` prints every translation block's guest instructions when it
# is translated and a line each time it runs (`nochain` sends every block through that
# log). A streaming awk keys each block by its host code address, takes its size from the
# disassembly just before its first run and sums sizes over the runs, so no log is stored.
# An x86 rep-string instruction runs as one block per iteration; it is counted once, as a
# CPU's retired-instruction counter does, and its extra iterations are shown apart. Before
# the models, two small programs with a known count (a loop with long x86 instructions,
# AVX2 and a rep movsb; a NEON loop) must come out exact, or the script stops.
#
# What it runs: cbam-core's `model_profile` example on fixed pseudo-random input, once with
# 1 warm-up inference and once with 1 + K; the difference over K is the instructions of one
# `Model::run`, start-up, the first run and the timed run cancelled. The timed run's
# printout varies by some thousands of instructions between processes, so a count moves by
# about that over K between runs of this script. The NEON backend is what every aarch64
# build runs; on x86_64 the AVX2 backend runs only if the CPU reports AVX2 (QEMU's
# `-cpu max` does from 7.2 on), so the x86 column names the backend that ran, seen from
# the share of instructions on ymm registers (QEMU 7.2 has no AVX-512, so the VNNI kernels
# never run here). aarch64 runs under `-cpu cortex-a72` (the Pi 4: `smlal` kernels) and
# `-cpu cortex-a76` (the Pi 5: the convolutions take `sdot`, detected at run time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
K="${K:-4}"
case "$K" in '' | *[!0-9]* | 0) echo "K must be a positive integer" >&2; exit 2 ;; esac
[ $# -le 1 ] || { echo "usage: $0 [CBAM_BIN]" >&2; exit 2; }
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
OUT="$TARGET_DIR/insn-counts"
A64=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
step() { printf '=== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

for tool in qemu-aarch64 qemu-x86_64 aarch64-linux-gnu-gcc cc; do
  command -v "$tool" >/dev/null ||
    { echo "error: $tool not found; run scripts/setup.sh" >&2; exit 1; }
done
[ "$(uname -m)" = x86_64 ] ||
  { echo "error: the x86_64 column needs an x86_64 host build" >&2; exit 1; }
mkdir -p "$OUT"

# Sums guest instructions from a `-d in_asm,exec,nochain` log on stdin. VEC: a regex for the
# instructions on vector registers. Prints: instructions (a rep-string instruction counted
# once), of them on vector registers, extra rep-string iterations, blocks run before any
# translation was seen (must be 0).
COUNTER='
/^IN:/ { n = 0; v = 0; rep = 0; pending = 1; next }
# x86 disassembly puts an instruction longer than 8 bytes on two lines; the second has
# only bytes.
/^0x[0-9a-f]+:  [0-9a-f][0-9a-f]( [0-9a-f][0-9a-f])*$/ { next }
/^0x[0-9a-f]+:/ {
  if (pending) {
    n++
    if (n == 1) { first = $1; rep = ($0 ~ /[ \t]rep[a-z]* /) }
    last = $1
    if ($0 ~ VEC) v++
  }
  next
}
/^Trace / {
  k = $3
  if (pending) {
    size[k] = n; vec[k] = v; start[k] = first; stop[k] = last; isrep[k] = rep
    pending = 0
  }
  if (!(k in size)) unknown++
  total += size[k]; vtotal += vec[k]
  # A block that starts at the rep-string instruction the last block ended on is its next
  # iteration.
  if (isrep[k] && start[k] == prev) again++
  prev = stop[k]
  next
}
END { printf "%d %d %d %d\n", total - again, vtotal, again, unknown }
'
VEC_A64='v[0-9]+\.|[ {,]q[0-9]+'
VEC_X86='%ymm'

count() { # count a64|x86 CPU VEC PROGRAM ARGS... -> "INSNS VECTOR REP_EXTRA"
  local arch=$1 cpu=$2 vec=$3 qemu result
  shift 3
  case $arch in
    a64) qemu=(qemu-aarch64 -L "$SYSROOT") ;;
    x86) qemu=(qemu-x86_64) ;;
  esac
  result=$("${qemu[@]}" -cpu "$cpu" -d in_asm,exec,nochain -D /dev/fd/3 "$@" 3>&1 >/dev/null |
    awk -v VEC="$vec" "$COUNTER")
  [ "${result##* }" = 0 ] ||
    { echo "error: $* ran blocks the log never showed translated" >&2; exit 1; }
  echo "${result% *}"
}

step "self-check: the counter on programs of known instruction count"
cat >"$OUT/known_x86.S" <<'EOF'
    .global _start
_start:
    sub $4096, %rsp
    mov $1000, %ecx
1:  movabs $0x123456789abcdef0, %rax
    vpaddd 0x100(%rsp), %ymm0, %ymm1
    dec %ecx
    jnz 1b
    mov %rsp, %rsi
    lea 2048(%rsp), %rdi
    mov $1000, %ecx
    rep movsb
    mov $60, %eax
    xor %edi, %edi
    syscall
EOF
# 2 + 4 x 1000 + 7 instructions, 1000 on ymm, the rep movsb's 999 further iterations.
cat >"$OUT/known_a64.S" <<'EOF'
    .global _start
_start:
    mov x0, #1000
    sub sp, sp, #64
1:  ld1 {v0.16b}, [sp]
    add v1.16b, v0.16b, v0.16b
    ldr q2, [sp, #16]
    subs x0, x0, #1
    b.ne 1b
    mov x0, #0
    mov x8, #93
    svc #0
EOF
# 2 + 5 x 1000 + 3 instructions, 3000 on vector registers.
cc -nostdlib -static -o "$OUT/known_x86" "$OUT/known_x86.S"
aarch64-linux-gnu-gcc -nostdlib -static -o "$OUT/known_a64" "$OUT/known_a64.S"
check() { # check WANT a64|x86 CPU VEC PROGRAM
  local want=$1 got
  shift
  got=$(count "$@")
  [ "$got" = "$want" ] ||
    { echo "error: counted '$got' for $4 under -cpu $2, want '$want'" >&2; exit 1; }
}
check "4009 1000 999" x86 max "$VEC_X86" "$OUT/known_x86"
check "5005 3000 0" a64 cortex-a72 "$VEC_A64" "$OUT/known_a64"
check "5005 3000 0" a64 cortex-a76 "$VEC_A64" "$OUT/known_a64"

step "build model_profile for aarch64 and x86_64"
# Builds for another target are compiled, not linted (as in scripts/test.sh).
env -u RUSTC_WORKSPACE_WRAPPER cargo build --release --target "$A64" -p cbam-core --example model_profile
cargo build --release -p cbam-core --example model_profile
PROFILE_A64="$TARGET_DIR/$A64/release/examples/model_profile"
PROFILE_X86="$TARGET_DIR/release/examples/model_profile"

if [ $# -eq 1 ]; then
  CBAM=$(realpath "$1")
else
  step "build the cbam CLI to quantize the models"
  cargo build --release -p cbam-cli --bin cbam
  CBAM="$TARGET_DIR/release/cbam"
fi

step "blobs (quantizer output in $OUT/quantize.log)"
# fmnist_cbam's blob is committed (the one the firmware embeds); fmnist_cbam_res is
# quantized with the CLI's defaults as that one was, the RGB models as their tests do.
quantize_log() { cat "$OUT/quantize.log" >&2; exit 1; }
BLOBS=$(printf 'fmnist_cbam\t%s\n' "$ROOT/models/fmnist_cbam.cbam")
"$CBAM" quantize models/fmnist_cbam_res.onnx --calib models/data/calib256_images.u8 \
  --out "$OUT/fmnist_cbam_res.cbam" >"$OUT/quantize.log" 2>&1 || quantize_log
BLOBS+=$(printf '\nfmnist_cbam_res\t%s\n' "$OUT/fmnist_cbam_res.cbam")
BLOBS+=$'\n'$(bash scripts/rgb-blobs.sh "$CBAM" "$OUT/rgb" 2>>"$OUT/quantize.log" | cut -f1,2) ||
  quantize_log

# MACs per inference as the blob's header states them (u32 at byte 56, see
# crates/cbam-core/FORMAT.md): the figure `cbam quantize` prints.
macs() { od -An -t u4 -j 56 -N 4 --endian=little "$1" | tr -d ' '; }

per_inference() { # per_inference a64|x86 CPU VEC PROGRAM BLOB -> count() per inference
  local base more
  base=$(count "$1" "$2" "$3" "$4" "$5" 1 1)
  more=$(count "$1" "$2" "$3" "$4" "$5" 1 $((1 + K)))
  awk -v k="$K" -v a="$base" -v b="$more" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    printf "%.0f %.0f %.0f\n", (y[1] - x[1]) / k, (y[2] - x[2]) / k, (y[3] - x[3]) / k }'
}

ROWS=()
while IFS=$'\t' read -r name blob <&3; do
  [ -n "$name" ] || continue
  step "$name"
  row="$name $(macs "$blob")"
  row+=" $(per_inference a64 cortex-a72 "$VEC_A64" "$PROFILE_A64" "$blob")"
  row+=" $(per_inference a64 cortex-a76 "$VEC_A64" "$PROFILE_A64" "$blob")"
  row+=" $(per_inference x86 max "$VEC_X86" "$PROFILE_X86" "$blob")"
  ROWS+=("$row")
done 3<<<"$BLOBS"

echo
QEMU_VERSION=$(qemu-aarch64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
echo "int8 core, instructions per inference (model_profile, difference of $K inferences)," \
  "qemu-user $QEMU_VERSION"
printf '%s\n' "${ROWS[@]}" | awk '
  function per(n, macs) { return macs > 0 ? sprintf("%.3f", n / macs) : "-" }
  function pct(v, n) { return n > 0 ? sprintf("%.0f%%", 100 * v / n) : "-" }
  BEGIN {
    printf "%-18s %11s | %12s %6s %5s | %12s %6s %5s | %12s %6s %5s %-8s %10s\n",
      "model", "MACs", "a64 A72", "/MAC", "vec", "a64 A76", "/MAC", "vec",
      "x86_64 max", "/MAC", "ymm", "backend", "rep iter"
  }
  {
    printf "%-18s %11d | %12d %6s %5s | %12d %6s %5s | %12d %6s %5s %-8s %10d\n",
      $1, $2, $3, per($3, $2), pct($4, $3), $6, per($6, $2), pct($7, $6),
      $9, per($9, $2), pct($10, $9), ($10 > 0 ? "AVX2" : "portable"), $11
  }'
cat <<EOF

a64 A72 / a64 A76: aarch64 build (NEON backend) under qemu-aarch64 -cpu cortex-a72 (Pi 4,
smlal) / -cpu cortex-a76 (Pi 5, sdot convolutions);
x86_64 max: host build under qemu-x86_64 -cpu max, backend as detected (AVX2 if any ymm
instructions ran). vec / ymm: share of the instructions on vector registers (NEON v/q;
ymm only on x86). /MAC: instructions per multiply-accumulate. rep iter: x86 rep-string
iterations beyond the first (memset/memcpy in glibc), not in the x86 count; callgrind's Ir
counts every iteration, so x86 + rep iter is what callgrind shows on an AVX2 host.
EOF
step "done"
