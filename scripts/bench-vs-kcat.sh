#!/usr/bin/env bash
# Side by side with kcat (issue 11): kvault backup and restore against the kcat commands that do
# the same work, on one machine, one broker, the same records, two rounds. Prints wall time and
# peak RSS of every run and the ratios the issue's targets are stated in.
#
# What it needs, installed once into caches outside the clone:
# - kcat from Debian's package (`apt-get install -y kcat`). Debian's kcat is linked against
#   librdkafka 2.0.2, too old for the test broker, so it is pointed (LD_LIBRARY_PATH) at the
#   librdkafka shipped in PyPI's `confluent-kafka` wheel, installed into a venv at
#   ~/.cache/kvault/bench-venv. The wheel names the library `librdkafka-<hash>.so.1`, so a
#   `librdkafka.so.1` symlink is made in ~/.cache/kvault/bench-librdkafka. The venv's
#   confluent_kafka AdminClient also creates and deletes the bench topics.
# - the nisshi broker (~/.cache/kvault/nisshi/bin/nisshi, scripts/install-broker.sh), started
#   in memory on a free port.
# - target/release/kvault (built here, `cargo build --release -p kvault`, under
#   $CARGO_TARGET_DIR when set), or the binary KVAULT_BIN names (not built: e.g. to measure a
#   build of another commit side by side).
#
# The dataset: BENCH_RECORDS (default 1,000,000) keyed JSON records of ~450 B, written to a
# tab-separated file and loaded into a 3-partition source topic with `kcat -P -K '\t'` and two
# headers (kcat gives every record the same two headers). `kvault sample-data` does not fit:
# its values are ~230 B with null keys and tombstones, which `kcat -P` could not replay.
#
# Measured per round (each into a fresh topic, deleted after the round):
#   kcat -P -K '\t' of the file (keys, no headers, no timestamps, not idempotent)
#   the same kcat -P doing a restore's work: idempotent acks=all, lz4, the two headers
#   kvault restore of the zstd backup (checksums checked first), and with
#   --validate-checksum false
#   kvault backup zstd / lz4 / gzip of the source topic
#   kcat -C -J | zstd -3, kcat -C -J | gzip -6, raw kcat -C > /dev/null
#
# Environment: BENCH_RECORDS (default 1000000), BENCH_ROUNDS (default 2), BENCH_PORT (default:
# a free port), BENCH_KEEP=1 keeps the temporary directory, KVAULT_BIN (see above). On a
# shared machine, run the full size only when nothing else (a CI run) is using the cores.
#
# BENCH_SHAPE picks the shape (default `three`, the above); the other two measure how kvault
# keeps up as topics get wide or many (issue 30), with the same records (scripts/bench-shapes.sh):
#   wide  one topic of BENCH_PARTITIONS partitions (default 400) holding BENCH_RECORDS records
#         (default 400,000): kcat -P, kvault restore, kvault backup zstd, raw kcat -C
#   many  BENCH_TOPICS topics (default 100) of BENCH_PARTITIONS partitions (default 3) holding
#         BENCH_RECORDS records each (default 2,000): a kvault backup set by pattern and its
#         restore, against kcat -C and kcat -P run topic after topic
set -euo pipefail
cd "$(dirname "$0")/.."

SHAPE="${BENCH_SHAPE:-three}"
case "$SHAPE" in
  three) RECORDS="${BENCH_RECORDS:-1000000}"; PARTITIONS=3 ;;
  wide) RECORDS="${BENCH_RECORDS:-400000}"; PARTITIONS="${BENCH_PARTITIONS:-400}" ;;
  many) RECORDS="${BENCH_RECORDS:-2000}"; PARTITIONS="${BENCH_PARTITIONS:-3}"
    TOPIC_COUNT="${BENCH_TOPICS:-100}" ;;
  *) printf '[bench] error: BENCH_SHAPE is three, wide or many, not %s\n' "$SHAPE" >&2; exit 1 ;;
esac
ROUNDS="${BENCH_ROUNDS:-2}"
# Rate limits high enough never to bind (0 is refused by validation).
UNLIMITED=100000000
CACHE="$HOME/.cache/kvault"
VENV="$CACHE/bench-venv"
RDKAFKA_DIR="$CACHE/bench-librdkafka"
NISSHI_BIN="${KVAULT_NISSHI_BIN:-$CACHE/nisshi/bin/nisshi}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time (apt-get install -y time)"
command -v zstd >/dev/null || die "needs zstd (apt-get install -y zstd)"

# --- tools, installed once ---------------------------------------------------------------------
if ! command -v kcat >/dev/null; then
  log "installing kcat (Debian package)"
  apt-get install -y kcat >/dev/null
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  log "installing confluent-kafka into $VENV (for its librdkafka)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q confluent-kafka
fi
PY="$VENV/bin/python"
wheel_lib="$(find "$VENV" -path '*confluent_kafka.libs/librdkafka*.so*' | head -n1)"
[ -n "$wheel_lib" ] || die "no librdkafka in the confluent-kafka wheel under $VENV"
mkdir -p "$RDKAFKA_DIR"
ln -sf "$wheel_lib" "$RDKAFKA_DIR/librdkafka.so.1"
kcat_version="$(LD_LIBRARY_PATH="$RDKAFKA_DIR" kcat -V | grep -o 'librdkafka [0-9.]*')"
case "$kcat_version" in
  "librdkafka 0."* | "librdkafka 1."* | "librdkafka 2.0."* | "")
    die "kcat still uses ${kcat_version:-an unknown librdkafka}; expected the wheel's" ;;
esac
log "kcat runs on $kcat_version (from $wheel_lib)"
KCAT_BIN="$(command -v kcat)"
kcat() { LD_LIBRARY_PATH="$RDKAFKA_DIR" "$KCAT_BIN" "$@"; }

[ -x "$NISSHI_BIN" ] || bash scripts/install-broker.sh
if [ -n "${KVAULT_BIN:-}" ]; then
  KVAULT="$KVAULT_BIN"
else
  log "building target/release/kvault"
  cargo build --release -q -p kvault
  KVAULT="${CARGO_TARGET_DIR:-$PWD/target}/release/kvault"
fi
[ -x "$KVAULT" ] || die "no kvault binary at $KVAULT"

# --- broker and scratch space ------------------------------------------------------------------
WORK="$(mktemp -d /tmp/kvault-bench-kcat.XXXXXX)"
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT="${BENCH_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
BOOTSTRAP="127.0.0.1:$PORT"
"$NISSHI_BIN" broker \
  --listener-url "tcp://$BOOTSTRAP" \
  --advertised-listener-url "tcp://$BOOTSTRAP" \
  --storage-engine memory://nisshi/ \
  --group-initial-rebalance-delay 0s \
  >"$WORK/nisshi.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$BROKER_PID" 2>/dev/null || die "broker exited; see $WORK/nisshi.log"
  sleep 0.2
done
log "broker nisshi (pid $BROKER_PID) on $BOOTSTRAP"

export KVAULT__CLUSTERS__BENCH__BOOTSTRAP_SERVERS="$BOOTSTRAP"
export KVAULT__BACKUP__BASE_PATH="$WORK/backups"
export KVAULT__DATABASE__URL="sqlite://$WORK/kvault.db?mode=rwc"

# topics create|delete NAME...: through the wheel's AdminClient (kcat has no admin commands).
topics() {
  "$PY" - "$BOOTSTRAP" "$PARTITIONS" "$@" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, partitions, action, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
admin = AdminClient({"bootstrap.servers": bootstrap})
if action == "create":
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
else:
    futures = admin.delete_topics(names)
for name, future in futures.items():
    future.result(timeout=60)
EOF
}

expect_count() {
  [ "$2" = "$RECORDS" ] || die "$1: $2 records, expected $RECORDS"
}

# records TOPIC: how many records TOPIC holds (sum of its partitions' high watermarks).
records() {
  "$PY" - "$BOOTSTRAP" "$1" <<'EOF'
import sys
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic = sys.argv[1], sys.argv[2]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kvault-bench-count"})
partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
print(sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions))
consumer.close()
EOF
}

# --- dataset -------------------------------------------------------------------------------------
DATA="$WORK/records.tsv"
log "generating $RECORDS records"
"$PY" - "$RECORDS" >"$DATA" <<'EOF'
import sys
levels = ["debug", "info", "warn", "error"]
out = sys.stdout
for i in range(int(sys.argv[1])):
    session = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = (
        '{"id":%d,"user_id":"user-%d","level":"%s","event":"page_view","path":"/products/%d",'
        '"important":%s,"referrer":"https://www.example.com/search?q=item-%d&page=%d",'
        '"user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",'
        '"attributes":{"browser":"firefox","region":"eu-west-1","session":"%016x",'
        '"experiment":"checkout-%d","cart_items":%d,"price_cents":%d,"currency":"EUR"},"app":"4.12.0"}'
        % (i, i % 1000, levels[i % 4], i % 311, "true" if i % 10 == 0 else "false",
           i % 7919, i % 17, session, i % 5, i % 9, (i * 37) % 100000)
    )
    out.write("user-%d\t%s\n" % (i % 1000, value))
EOF
payload_bytes="$(wc -c <"$DATA")"
log "dataset: $RECORDS records, $((payload_bytes / 1000000)) MB (key + tab + value + newline)"

# measure ROUND NAME CMD...: runs CMD under GNU time (stdout to $WORK/NAME-ROUND.out), records
# wall seconds and peak RSS. For a pipeline CMD is `bash -c '...'`: the peak is that of its
# largest process.
measure() {
  local round="$1" name="$2"
  shift 2
  local out="$WORK/$name-$round"
  if ! /usr/bin/time -f "%e %M" -o "$out.time" "$@" >"$out.out" 2>"$out.err"; then
    cat "$out.err" >&2
    die "failed: $name (round $round)"
  fi
  local secs kb
  read -r secs kb <"$out.time"
  echo "$round $name $secs $kb" >>"$RESULTS"
  printf '  round %s  %-28s %7.2f s  %6.0f MB peak RSS\n' "$round" "$name" "$secs" "$((kb / 1024))"
}

# json_field FILE NAME: the first value of "NAME" in kvault's pretty-printed JSON output.
json_field() {
  grep -m1 "\"$2\":" "$1" | sed -E 's/^[^:]*: *"?([^",]*)"?,?$/\1/'
}

if [ "$SHAPE" != three ]; then
  # shellcheck source=scripts/bench-shapes.sh
  source scripts/bench-shapes.sh
  "run_$SHAPE"
  exit 0
fi

SOURCE="bench-source"
topics create "$SOURCE"
log "loading $SOURCE"
kcat -P -b "$BOOTSTRAP" -t "$SOURCE" -K $'\t' -z lz4 \
  -H tenant=a -H trace-id=0123456789abcdef0123456789abcdef <"$DATA"
expect_count "source topic" "$(records "$SOURCE")"

# --- measuring -----------------------------------------------------------------------------------
RESULTS="$WORK/results.txt" # lines: round name seconds peak_kb
: >"$RESULTS"

for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  topics create "kcat-p-$round"
  measure "$round" kcat-P env LD_LIBRARY_PATH="$RDKAFKA_DIR" "$KCAT_BIN" -P -b "$BOOTSTRAP" -t "kcat-p-$round" -K $'\t' -l "$DATA"
  expect_count "kcat -P" "$(records "kcat-p-$round")"
  # The same kcat doing what a kvault restore does: idempotent acks=all producer, lz4-compressed
  # batches, two headers per record (kvault also sets each record's timestamp).
  topics create "kcat-ps-$round"
  measure "$round" kcat-P-same-work env LD_LIBRARY_PATH="$RDKAFKA_DIR" "$KCAT_BIN" -P -b "$BOOTSTRAP" \
    -t "kcat-ps-$round" -K $'\t' -z lz4 -X enable.idempotence=true -X acks=all \
    -H tenant=a -H trace-id=0123456789abcdef0123456789abcdef -l "$DATA"
  expect_count "kcat -P (same work)" "$(records "kcat-ps-$round")"

  declare -A backup_id=()
  for codec in zstd lz4 gzip; do
    measure "$round" "kvault-backup-$codec" "$KVAULT" backup --cluster bench --topic "$SOURCE" \
      --compression "$codec" --rate-limit-per-second "$UNLIMITED"
    out="$WORK/kvault-backup-$codec-$round.out"
    expect_count "backup $codec" "$(json_field "$out" total_messages)"
    backup_id[$codec]="$(json_field "$out" backup_id)"
    echo "$round size-$codec $(du -sb "$WORK/backups/${backup_id[$codec]}" | cut -f1)" >>"$RESULTS"
  done

  measure "$round" kvault-restore "$KVAULT" restore --cluster bench \
    --backup-id "${backup_id[zstd]}" --target-topic "restore-$round" \
    --rate-limit-per-second "$UNLIMITED"
  expect_count "restore" "$(json_field "$WORK/kvault-restore-$round.out" messages_restored)"
  measure "$round" kvault-restore-no-check "$KVAULT" restore --cluster bench \
    --backup-id "${backup_id[zstd]}" --target-topic "restore-nocheck-$round" \
    --validate-checksum false --rate-limit-per-second "$UNLIMITED"
  expect_count "restore (no check)" \
    "$(json_field "$WORK/kvault-restore-no-check-$round.out" messages_restored)"

  consume="LD_LIBRARY_PATH='$RDKAFKA_DIR' '$KCAT_BIN' -C -b '$BOOTSTRAP' -t '$SOURCE' -o beginning -e -q"
  measure "$round" kcat-C-J-zstd bash -c "$consume -J | zstd -3 -q >'$WORK/kcat.json.zst'"
  measure "$round" kcat-C-J-gzip bash -c "$consume -J | gzip -6 >'$WORK/kcat.json.gz'"
  measure "$round" kcat-C-raw bash -c "$consume >/dev/null"
  if [ "$round" = 1 ]; then
    # The consumers read everything (outside the timing).
    expect_count "kcat -C -J | zstd" "$(zstd -dcq "$WORK/kcat.json.zst" | wc -l)"
    echo "$round size-kcat-zstd $(stat -c %s "$WORK/kcat.json.zst")" >>"$RESULTS"
    echo "$round size-kcat-gzip $(stat -c %s "$WORK/kcat.json.gz")" >>"$RESULTS"
  fi
  rm -f "$WORK/kcat.json.zst" "$WORK/kcat.json.gz"
  rm -rf "${WORK:?}/backups"
  topics delete "kcat-p-$round" "kcat-ps-$round" "restore-$round" "restore-nocheck-$round" ||
    log "could not delete round $round's topics (broker memory keeps them)"
  unset backup_id
done

# --- report --------------------------------------------------------------------------------------
echo
echo "kvault vs kcat: $RECORDS records, $((payload_bytes / 1000000)) MB, $PARTITIONS partitions," \
  "$ROUNDS rounds, $(nproc) cores, $kcat_version, $(date -u +%Y-%m-%dT%H:%MZ)"
awk -v rounds="$ROUNDS" '
  $2 ~ /^size-/ { size[$2] = $3; next }
  { t[$1, $2] = $3; rss[$2] = (rss[$2] > $4 ? rss[$2] : $4); names[$2] = 1 }
  function range(a, b) { return (a < b) ? sprintf("%.2f-%.2f", a, b) : sprintf("%.2f-%.2f", b, a) }
  function times(name,   r, s) {
    s = ""
    for (r = 1; r <= rounds; r++) s = s sprintf("%s%.2f", (r > 1 ? " / " : ""), t[r, name])
    return s
  }
  # ratio(fast, slow): per round, speed of `a` relative to `b` = time(b) / time(a).
  function ratio(a, b,   r, lo, hi, x) {
    lo = 1e18; hi = 0
    for (r = 1; r <= rounds; r++) {
      x = (t[r, a] > 0) ? t[r, b] / t[r, a] : 0
      if (x < lo) lo = x
      if (x > hi) hi = x
    }
    return (rounds > 1) ? sprintf("%.2f-%.2fx", lo, hi) : sprintf("%.2fx", lo)
  }
  END {
    n = split("kcat-P kcat-P-same-work kvault-restore kvault-restore-no-check kvault-backup-zstd kvault-backup-lz4 kvault-backup-gzip kcat-C-J-zstd kcat-C-J-gzip kcat-C-raw", order, " ")
    printf "\n%-26s %-24s %s\n", "operation", "wall s (per round)", "peak RSS MB"
    for (i = 1; i <= n; i++)
      printf "%-26s %-24s %d\n", order[i], times(order[i]), rss[order[i]] / 1024
    printf "\nsizes: backup zstd %.1f MB, lz4 %.1f MB, gzip %.1f MB; kcat -J|zstd %.1f MB, kcat -J|gzip %.1f MB\n",
      size["size-zstd"] / 1e6, size["size-lz4"] / 1e6, size["size-gzip"] / 1e6,
      size["size-kcat-zstd"] / 1e6, size["size-kcat-gzip"] / 1e6
    print "\nratios (speed of the first relative to the second, per round; target in brackets)"
    printf "  restore vs kcat -P                  %s  [>= 0.75x]\n", ratio("kvault-restore", "kcat-P")
    printf "  restore (no check) vs kcat -P       %s\n", ratio("kvault-restore-no-check", "kcat-P")
    printf "  restore vs kcat -P doing the same   %s\n", ratio("kvault-restore", "kcat-P-same-work")
    printf "  backup zstd vs kcat -C -J | zstd -3 %s  [>= 3x]\n", ratio("kvault-backup-zstd", "kcat-C-J-zstd")
    printf "  backup lz4 vs raw kcat -C           %s  [>= 0.80x]\n", ratio("kvault-backup-lz4", "kcat-C-raw")
    printf "  backup gzip vs kcat -C -J | gzip -6 %s  [>= 2x]\n", ratio("kvault-backup-gzip", "kcat-C-J-gzip")
    printf "  backup gzip vs backup zstd          %s  [>= 0.40x]\n", ratio("kvault-backup-gzip", "kvault-backup-zstd")
  }
' "$RESULTS"
