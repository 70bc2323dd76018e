#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 10), starting from the committed corpus:
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]      (`make test`: 10 s each; `make fuzz`: 600 s each)
#
# New inputs go to a scratch corpus, so the committed one only changes by hand; a crash is
# written to fuzz/artifacts/TARGET/ and fails the run. Turn each crash into a regression
# test (a case under runtime/tests/ui/invalid or a unit test) and add the input to the corpus.
# cargo-fuzz is installed when missing; the stable toolchain is used with RUSTC_BOOTSTRAP=1
# for the sanitizer flags (no nightly needed).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(definitions expressions component_upload)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-../target}/fuzz"
cargo fuzz build --target-dir "$target_dir"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  if ! cargo fuzz run --target-dir "$target_dir" "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
      > "$scratch/$target.log" 2>&1; then
    tail -40 "$scratch/$target.log" >&2
    echo "fuzz: $target crashed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  echo "fuzz: $target: $(grep -E '^Done' "$scratch/$target.log" | tail -1) without a crash"
done
