#!/usr/bin/env bash
# Encryption's cost, in the same run: backup (zstd) and restore of one topic with encryption at
# rest on (`encryption.active_key`, AES-256-GCM per block) against the same without it, the two
# alternated round by round so both see the same machine. The target: each encrypted run at
# >= 0.85x the speed of the plain one.
#
# Starts its own in-memory broker (nisshi, via scripts/local-broker.sh, on a port of its own),
# fills one topic from a separate process (the `produce` example: ~500-byte keyed JSON messages
# with two headers, 3 partitions), then BENCH_ROUNDS times each way: a backup, and a restore of
# that backup into a fresh topic (checksums validated, blocks authenticated), timing each with
# GNU time. Stops the broker and removes its temporary files on exit.
#
# Environment: BENCH_MESSAGES (default 1000000), BENCH_ROUNDS (default 2), BENCH_PORT (default
# 19094), KVAULT_BIN (default: target/release/kvault, built here).
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES="${BENCH_MESSAGES:-1000000}"
ROUNDS="${BENCH_ROUNDS:-2}"
PORT="${BENCH_PORT:-19094}"
PARTITIONS=3
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time" >&2; exit 2; }

if [ -z "${KVAULT_BIN:-}" ]; then
  cargo build --release -q -p kvault
fi
cargo build --release -q -p kvault-kafka --example produce
target_dir="${CARGO_TARGET_DIR:-target}"
KVAULT="${KVAULT_BIN:-$target_dir/release/kvault}"
PRODUCE="$target_dir/release/examples/produce"

WORK="$(mktemp -d /tmp/kvault-bench-crypt.XXXXXX)"
export KVAULT_LOCAL_BROKER_PORT="$PORT" KVAULT_LOCAL_BROKER_DIR="$WORK/broker"
cleanup() {
  bash scripts/local-broker.sh stop >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bash scripts/local-broker.sh start >/dev/null

CONFIG="$WORK/kvault.yaml"
cat >"$CONFIG" <<YAML
backup:
  base_path: "$WORK/backups"
database:
  url: "sqlite://$WORK/kvault.db?mode=rwc"
clusters:
  bench:
    bootstrap_servers: "127.0.0.1:$PORT"
    properties: {}
YAML
json_field() {
  grep -m1 "\"$2\":" "$1" | sed -E 's/^[^:]*: *"?([^",]*)"?,?$/\1/'
}

# One run of kvault, plain or encrypted, timed into $out.time.
timed() {
  local kind="$1" out="$2"
  shift 2
  local env=()
  if [ "$kind" = encrypted ]; then
    env=(KVAULT__ENCRYPTION__ACTIVE_KEY=bench
      KVAULT__ENCRYPTION__KEYS__BENCH__KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f)
  fi
  env "${env[@]}" /usr/bin/time -f "%e" -o "$out.time" "$KVAULT" --config "$CONFIG" "$@" \
    >"$out.json" 2>"$out.err" || { cat "$out.err" >&2; exit 1; }
}

"$PRODUCE" "127.0.0.1:$PORT" bench "$MESSAGES" "$PARTITIONS" >"$WORK/produce.log"

declare -A backup restore
for round in $(seq 1 "$ROUNDS"); do
  for kind in plain encrypted; do
    out="$WORK/$kind-backup-$round"
    timed "$kind" "$out" backup --cluster bench --topic bench --compression zstd \
      --rate-limit-per-second 100000000
    id="$(json_field "$out.json" backup_id)"
    if [ "$kind" = encrypted ]; then
      grep -q '"key_id": "bench"' "$WORK/backups/$id/manifest.json" ||
        { echo "backup $id is not encrypted" >&2; exit 1; }
    fi
    backup[$kind]+="$(cat "$out.time") "
    out="$WORK/$kind-restore-$round"
    timed "$kind" "$out" restore --cluster bench --backup-id "$id" \
      --target-topic "bench-$kind-$round" --rate-limit-per-second 100000000
    got="$(json_field "$out.json" messages_restored)"
    [ "$got" = "$MESSAGES" ] || { echo "$kind restore wrote $got, expected $MESSAGES" >&2; exit 1; }
    restore[$kind]+="$(cat "$out.time") "
  done
done
echo "messages=$MESSAGES rounds=$ROUNDS"
for op in backup restore; do
  declare -n times="$op"
  echo "$op seconds: plain ${times[plain]}| encrypted ${times[encrypted]}"
  awk -v op="$op" -v p="${times[plain]}" -v e="${times[encrypted]}" -v n="$MESSAGES" 'BEGIN {
    np = split(p, a, " "); ne = split(e, b, " "); sp = 0; se = 0
    for (i = 1; i <= np; i++) sp += a[i]; for (i = 1; i <= ne; i++) se += b[i]
    sp /= np; se /= ne
    printf "%s: plain %.0f msg/s, encrypted %.0f msg/s: encrypted at %.2fx the plain speed\n", op, n / sp, n / se, sp / se
  }'
done
