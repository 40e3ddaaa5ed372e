#!/usr/bin/env bash
# Runs the chaos test (tests/chaos.rs) with N seeds, one after another: seeds FIRST, FIRST+1, ...
# (FIRST defaults to the current Unix time). Each run's output goes to target/chaos/SEED.log;
# the seeds that failed and their invariant violations are listed at the end. Needs what the
# test needs: PostgreSQL on 127.0.0.1:5432, the test broker and the test S3 server installed.
# Usage: bash scripts/chaos.sh [N=5] [FIRST]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
first=${2:-$(date +%s)}
mkdir -p target/chaos
cargo test -p kvault --test chaos --no-run || exit 1
failed=()
for i in $(seq 0 $((n - 1))); do
  seed=$((first + i))
  log="target/chaos/$seed.log"
  started=$(date +%s)
  if KVAULT_CHAOS_SEED=$seed cargo test -q -p kvault --test chaos -- --include-ignored --nocapture >"$log" 2>&1; then
    result=passed
  else
    result=FAILED
    failed+=("$seed")
  fi
  kills=$(grep -o 'kills: [0-9]*' "$log" | head -1)
  echo "seed $seed: $result in $(($(date +%s) - started)) s (${kills:-kills: ?}; log $log)"
done
echo "$((n - ${#failed[@]})) of $n seeds passed"
for seed in "${failed[@]}"; do
  echo "== seed $seed"
  grep -E '^- |invariant violation|panicked' "target/chaos/$seed.log" | head -20
done
[ "${#failed[@]}" -eq 0 ]
