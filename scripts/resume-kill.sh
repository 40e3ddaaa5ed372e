#!/usr/bin/env bash
# Runs the kill-point test of resumable restores and migrations (tests/resume.rs, the ignored
# test `kill_points`) for N seeds, one after another: seeds FIRST, FIRST+1, ... (FIRST defaults
# to the current Unix time). Each seed kills the replica running a restore (new topic,
# preserve_offsets, append) and a migration (new topic, append) at a point drawn from the seed,
# on KVAULT_RESUME_RECORDS records (default 200000), and a backup of 200,000 records (on S3 for
# even seeds, a local disk for odd), and checks with an independent consumer that every record
# landed exactly once (for the backup: in a restore of the resumed archive). Output per seed goes to target/resume-kill/SEED.log;
# the kill points and outcomes are listed at the end. Needs what the test needs: PostgreSQL on
# 127.0.0.1:5432, the test broker and the test S3 server installed.
# Usage: bash scripts/resume-kill.sh [N=10] [FIRST]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
first=${2:-$(date +%s)}
export KVAULT_RESUME_RECORDS=${KVAULT_RESUME_RECORDS:-200000}
mkdir -p target/resume-kill
cargo test --workspace --test resume --no-run || exit 1
failed=()
for i in $(seq 0 $((n - 1))); do
  seed=$((first + i))
  log="target/resume-kill/$seed.log"
  started=$(date +%s)
  if KVAULT_RESUME_SEED=$seed cargo test -q --workspace --test resume -- --ignored kill_points --nocapture >"$log" 2>&1; then
    result=passed
  else
    result=FAILED
    failed+=("$seed")
  fi
  echo "seed $seed: $result in $(($(date +%s) - started)) s (log $log)"
  grep -h '^kill point:' "$log" | sed 's/^/  /'
done
echo "$((n - ${#failed[@]})) of $n seeds passed"
for seed in "${failed[@]}"; do
  echo "== seed $seed"
  grep -E 'panicked|assert' "target/resume-kill/$seed.log" | head -20
done
[ "${#failed[@]}" -eq 0 ]
