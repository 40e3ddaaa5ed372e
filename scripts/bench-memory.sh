#!/usr/bin/env bash
# Memory check for backup and restore: peak RSS of `kvault backup` / `kvault restore`, each in a
# process of its own that never produced the data, for topics of growing size. Bounded memory
# means the peaks stay about the same while the topic grows several times past the cap.
#
# Starts its own in-memory broker (nisshi, via scripts/local-broker.sh, on a port of its own),
# fills one topic per size from a separate process (the `produce` example: ~500-byte keyed
# messages with two headers, 3 partitions), then per codec backs the topic up and restores it
# into a new topic, reading "Maximum resident set size" from GNU time. Stops the broker and
# removes its temporary files on exit.
#
# With BENCH_BACKENDS="file s3" each run is repeated with the archives in a local S3-compatible
# server (moto, via scripts/local-s3.sh on BENCH_S3_PORT, default 19000): the same data, backed
# up and restored through each backend, side by side.
#
# Environment: BENCH_MESSAGES (sizes, default "1000000 3000000"), BENCH_CODECS (default
# "zstd none"), BENCH_BACKENDS (default "file"), BENCH_RSS_CAP_MB (default 200),
# BENCH_PORT (default 19092).
# nisshi keeps every topic in memory: keep the largest size at a few million messages.
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES="${BENCH_MESSAGES:-1000000 3000000}"
CODECS="${BENCH_CODECS:-zstd none}"
CAP_MB="${BENCH_RSS_CAP_MB:-200}"
PORT="${BENCH_PORT:-19092}"
BACKENDS="${BENCH_BACKENDS:-file}"
PARTITIONS=3

[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time" >&2; exit 2; }

cargo build --release -q -p kvault
cargo build --release -q -p kvault-kafka --example produce
KVAULT=target/release/kvault
PRODUCE=target/release/examples/produce

WORK="$(mktemp -d /tmp/kvault-bench-memory.XXXXXX)"
export KVAULT_LOCAL_BROKER_PORT="$PORT" KVAULT_LOCAL_BROKER_DIR="$WORK/broker"
export KVAULT_LOCAL_S3_PORT="${BENCH_S3_PORT:-19000}" KVAULT_LOCAL_S3_DIR="$WORK/s3"
cleanup() {
  bash scripts/local-broker.sh stop >/dev/null || true
  bash scripts/local-s3.sh stop >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bash scripts/local-broker.sh start >/dev/null
S3_SETTINGS=()
if [[ " $BACKENDS " == *" s3 "* ]]; then
  while read -r line; do
    S3_SETTINGS+=("${line#export }")
  done < <(bash scripts/local-s3.sh start | grep ^export)
fi

CONFIG="$WORK/kvault.yaml"
cat >"$CONFIG" <<EOF
backup:
  base_path: "$WORK/backups"
database:
  url: "sqlite://$WORK/kvault.db?mode=rwc"
clusters:
  bench:
    bootstrap_servers: "127.0.0.1:$PORT"
    properties: {}
EOF

# json_field FILE NAME: the first value of "NAME" in kvault's pretty-printed JSON output.
json_field() {
  grep -m1 "\"$2\":" "$1" | sed -E 's/^[^:]*: *"?([^",]*)"?,?$/\1/'
}

# measure OUT -- CMD...: runs CMD under GNU time; OUT.json gets stdout, OUT.time "KB seconds".
measure() {
  local out="$1"
  shift 2
  if ! /usr/bin/time -f "%M %e" -o "$out.time" "$@" >"$out.json" 2>"$out.err"; then
    echo "failed: $*" >&2
    cat "$out.err" >&2
    exit 1
  fi
}

rows=()
for n in $MESSAGES; do
  topic="mem-$n"
  "$PRODUCE" "127.0.0.1:$PORT" "$topic" "$n" "$PARTITIONS" >"$WORK/produce.log"
  for codec in $CODECS; do
  for backend in $BACKENDS; do
    run="$WORK/$n-$codec-$backend"
    env_for=()
    if [ "$backend" = s3 ]; then env_for=(env "${S3_SETTINGS[@]}" KVAULT__STORAGE__URL=s3://kvault/bench); fi
    measure "$run-backup" -- "${env_for[@]}" "$KVAULT" --config "$CONFIG" backup --cluster bench \
      --topic "$topic" --compression "$codec" --rate-limit-per-second 1000000
    id="$(json_field "$run-backup.json" backup_id)"
    got="$(json_field "$run-backup.json" total_messages)"
    [ "$got" = "$n" ] || { echo "backup of $topic holds $got messages, expected $n" >&2; exit 1; }
    topic_bytes="$(json_field "$run-backup.json" total_size_bytes)"
    measure "$run-restore" -- "${env_for[@]}" "$KVAULT" --config "$CONFIG" restore --backup-id "$id" \
      --target-topic "$topic-$codec-$backend" --rate-limit-per-second 1000000
    got="$(json_field "$run-restore.json" messages_restored)"
    [ "$got" = "$n" ] || { echo "restore of $id wrote $got messages, expected $n" >&2; exit 1; }
    read -r b_kb b_s <"$run-backup.time"
    read -r r_kb r_s <"$run-restore.time"
    rows+=("$n $codec $backend $topic_bytes $b_kb $b_s $r_kb $r_s")
    rm -rf "${WORK:?}/backups/$id"
  done
  done
done

printf '%-9s %-5s %-7s %9s %8s %7s %9s %11s %8s %9s %11s %6s  %s\n' \
  messages codec backend topic_MB cap_MB xcap backup_s backup_msg/s peak_MB restore_s restore_msg/s \
  peak_MB verdict
for row in "${rows[@]}"; do
  read -r n codec backend bytes b_kb b_s r_kb r_s <<<"$row"
  awk -v n="$n" -v c="$codec" -v be="$backend" -v bytes="$bytes" -v cap="$CAP_MB" -v bkb="$b_kb" -v bs="$b_s" \
    -v rkb="$r_kb" -v rs="$r_s" 'BEGIN {
      mb = bytes / 1e6; bp = bkb / 1024; rp = rkb / 1024
      verdict = (bp <= cap && rp <= cap) ? "under the cap" : "OVER THE CAP"
      printf "%-9d %-5s %-7s %9.0f %8d %7.1f %9.1f %11.0f %8.0f %9.1f %11.0f %6.0f  %s\n",
        n, c, be, mb, cap, mb / cap, bs, n / (bs > 0 ? bs : 1), bp, rs, n / (rs > 0 ? rs : 1), rp, verdict
    }'
done
echo "restore time includes verifying every checksum of the archive first (validate_checksum)"
