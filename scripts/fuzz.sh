#!/usr/bin/env bash
# Runs the fuzz targets for a fixed number of executions each and prints one line per
# target: executions done, and whether libFuzzer found a crash (it stops at the first).
#
#   scripts/fuzz.sh                         # every target, the counts the project promises
#   scripts/fuzz.sh parse_run 100000        # one target, another count
#
# The core's targets start from the seed blobs in crates/cbam-core/fuzz/seeds; the
# importer's target builds its inputs from models/*.onnx itself. Corpora grow under
# target/fuzz-corpus/ and are kept between runs. The nightly toolchain and cargo-fuzz
# are installed on first use (they are not needed by the test suite).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
  cargo install cargo-fuzz --locked
fi

declare -A CRATE=([parse_run]=cbam-core [run_accepted]=cbam-core [import_onnx]=cbam-compiler)
declare -A RUNS=([parse_run]=10000000 [run_accepted]=1000000 [import_onnx]=1000000)

if [ $# -ge 1 ]; then
  targets=("$1")
  [ -n "${CRATE[$1]:-}" ] || { echo "unknown target $1 (one of ${!CRATE[*]})" >&2; exit 2; }
  [ $# -ge 2 ] && RUNS[$1]=$2
else
  targets=(parse_run run_accepted import_onnx)
fi

root=$PWD
status=0
for t in "${targets[@]}"; do
  crate=crates/${CRATE[$t]}
  corpus=$root/target/fuzz-corpus/$t
  mkdir -p "$corpus"
  seeds=()
  [ -d "$crate/fuzz/seeds" ] && seeds=("$crate/fuzz/seeds")
  log=$root/target/fuzz-corpus/$t.log
  echo "fuzzing $t for ${RUNS[$t]} executions (log: $log)" >&2
  if (cd "$crate" && cargo +nightly fuzz run "$t" "$corpus" "${seeds[@]/#/$root/}" -- \
      -runs="${RUNS[$t]}" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
    verdict="no crash"
  else
    verdict="FAILED (see $log)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  printf '%-14s %12s executions  %s\n' "$t" "$execs" "$verdict"
done
exit $status
