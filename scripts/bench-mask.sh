#!/usr/bin/env bash
# Masked restore against plain restore, in the same run: the speed of a restore that masks two
# fields of every record (`$.user` hashed, `$.url` redacted) as a ratio of a plain restore's, on
# the same backup and broker, the two alternated round by round so both see the same machine.
# The target: the masked restore at >= 0.5x the plain one.
#
# Starts its own in-memory broker (nisshi, via scripts/local-broker.sh, on a port of its own),
# fills one topic from a separate process (the `produce` example: ~500-byte keyed JSON messages
# with two headers, 3 partitions), backs it up (zstd) with the release binary, then restores it
# BENCH_ROUNDS times each way into fresh topics, checksums validated as by default, timing each
# with GNU time. Stops the broker and removes its temporary files on exit.
#
# Environment: BENCH_MESSAGES (default 1000000), BENCH_ROUNDS (default 2), BENCH_PORT (default
# 19093), KVAULT_BIN (default: target/release/kvault, built here).
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES="${BENCH_MESSAGES:-1000000}"
ROUNDS="${BENCH_ROUNDS:-2}"
PORT="${BENCH_PORT:-19093}"
PARTITIONS=3

[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time" >&2; exit 2; }

if [ -z "${KVAULT_BIN:-}" ]; then
  cargo build --release -q -p kvault
fi
cargo build --release -q -p kvault-kafka --example produce
target_dir="${CARGO_TARGET_DIR:-target}"
KVAULT="${KVAULT_BIN:-$target_dir/release/kvault}"
PRODUCE="$target_dir/release/examples/produce"

WORK="$(mktemp -d /tmp/kvault-bench-mask.XXXXXX)"
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
export KVAULT__MASKING__HMAC_KEY="bench-key-0123456789abcdef"
cat >"$WORK/mask.json" <<'JSON'
{"mask": [{"path": "$.user", "action": "hash"}, {"path": "$.url", "action": "redact"}]}
JSON

json_field() {
  grep -m1 "\"$2\":" "$1" | sed -E 's/^[^:]*: *"?([^",]*)"?,?$/\1/'
}

"$PRODUCE" "127.0.0.1:$PORT" bench "$MESSAGES" "$PARTITIONS" >"$WORK/produce.log"
"$KVAULT" --config "$CONFIG" backup --cluster bench --topic bench --compression zstd \
  --rate-limit-per-second 100000000 >"$WORK/backup.json"
id="$(json_field "$WORK/backup.json" backup_id)"

plain=()
masked=()
for round in $(seq 1 "$ROUNDS"); do
  for kind in plain masked; do
    extra=()
    [ "$kind" = masked ] && extra=(--transform "$WORK/mask.json")
    out="$WORK/$kind-$round"
    /usr/bin/time -f "%e" -o "$out.time" "$KVAULT" --config "$CONFIG" restore --cluster bench \
      --backup-id "$id" --target-topic "bench-$kind-$round" --rate-limit-per-second 100000000 \
      "${extra[@]}" >"$out.json" 2>"$out.err" || { cat "$out.err" >&2; exit 1; }
    got="$(json_field "$out.json" messages_restored)"
    [ "$got" = "$MESSAGES" ] || { echo "$kind restore wrote $got, expected $MESSAGES" >&2; exit 1; }
    if [ "$kind" = masked ]; then
      grep -q '"masked": '"$MESSAGES" "$out.json" || { echo "masked restore masked fewer fields" >&2; cat "$out.json" >&2; exit 1; }
      masked+=("$(cat "$out.time")")
    else
      plain+=("$(cat "$out.time")")
    fi
  done
done
echo "messages=$MESSAGES rounds=$ROUNDS"
echo "plain restore seconds:  ${plain[*]}"
echo "masked restore seconds: ${masked[*]}"
awk -v p="${plain[*]}" -v m="${masked[*]}" -v n="$MESSAGES" 'BEGIN {
  np = split(p, a, " "); nm = split(m, b, " "); sp = 0; sm = 0
  for (i = 1; i <= np; i++) sp += a[i]; for (i = 1; i <= nm; i++) sm += b[i]
  sp /= np; sm /= nm
  printf "plain %.0f msg/s, masked %.0f msg/s: masked at %.2fx the plain speed\n", n / sp, n / sm, sp / sm
}'
