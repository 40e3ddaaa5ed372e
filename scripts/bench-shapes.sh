# The wide and many shapes of scripts/bench-vs-kcat.sh (BENCH_SHAPE=wide|many), sourced by it
# once the tools, the broker and the dataset ($DATA, $RECORDS lines) are ready: it uses its
# helpers (topics, records, measure, json_field, expect_count, kcat, die, log) and settings.

# report TITLE: wall time and peak RSS per operation, then the ratios named after it
# ("name-fast/name-slow/label" each), per round.
report() {
  local title="$1"
  shift
  echo
  echo "$title: $ROUNDS rounds, $(nproc) cores, $kcat_version, $(date -u +%Y-%m-%dT%H:%MZ)"
  awk -v rounds="$ROUNDS" -v ratios="$*" '
    { t[$1, $2] = $3; rss[$2] = (rss[$2] > $4 ? rss[$2] : $4); if (!($2 in seen)) order[n++] = $2; seen[$2] = 1 }
    function times(name,   r, s) {
      s = ""
      for (r = 1; r <= rounds; r++) s = s sprintf("%s%.2f", (r > 1 ? " / " : ""), t[r, name])
      return s
    }
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
      printf "\n%-26s %-24s %s\n", "operation", "wall s (per round)", "peak RSS MB"
      for (i = 0; i < n; i++) printf "%-26s %-24s %d\n", order[i], times(order[i]), rss[order[i]] / 1024
      print "\nratios (speed of the first relative to the second, per round)"
      k = split(ratios, list, " ")
      for (i = 1; i <= k; i++) {
        split(list[i], p, "/")
        printf "  %-36s %s\n", p[1] " vs " p[2], ratio(p[1], p[2])
      }
    }
  ' "$RESULTS"
}

# wide: one topic of $PARTITIONS partitions.
run_wide() {
  local source="wide-source"
  topics create "$source"
  log "loading $source ($PARTITIONS partitions)"
  kcat -P -b "$BOOTSTRAP" -t "$source" -K $'\t' -z lz4 \
    -H tenant=a -H trace-id=0123456789abcdef0123456789abcdef <"$DATA"
  expect_count "source topic" "$(records "$source")"
  RESULTS="$WORK/results.txt"
  : >"$RESULTS"
  local round backup_id
  for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    topics create "kcat-p-$round"
    measure "$round" kcat-P env LD_LIBRARY_PATH="$RDKAFKA_DIR" "$KCAT_BIN" -P -b "$BOOTSTRAP" \
      -t "kcat-p-$round" -K $'\t' -l "$DATA"
    expect_count "kcat -P" "$(records "kcat-p-$round")"
    measure "$round" kvault-backup-zstd "$KVAULT" backup --cluster bench --topic "$source" \
      --compression zstd --rate-limit-per-second "$UNLIMITED"
    expect_count "backup" "$(json_field "$WORK/kvault-backup-zstd-$round.out" total_messages)"
    backup_id="$(json_field "$WORK/kvault-backup-zstd-$round.out" backup_id)"
    measure "$round" kvault-restore "$KVAULT" restore --cluster bench --backup-id "$backup_id" \
      --target-topic "restore-$round" --rate-limit-per-second "$UNLIMITED"
    expect_count "restore" "$(json_field "$WORK/kvault-restore-$round.out" messages_restored)"
    measure "$round" kcat-C-raw bash -c "LD_LIBRARY_PATH='$RDKAFKA_DIR' '$KCAT_BIN' -C \
      -b '$BOOTSTRAP' -t '$source' -o beginning -e -q >/dev/null"
    rm -rf "${WORK:?}/backups"
    topics delete "kcat-p-$round" "restore-$round" || log "could not delete round $round's topics"
  done
  report "wide: 1 topic, $PARTITIONS partitions, $RECORDS records" \
    kvault-restore/kcat-P kvault-backup-zstd/kcat-C-raw
}

# many: $TOPIC_COUNT topics of $PARTITIONS partitions, $RECORDS records each.
run_many() {
  local names=() i
  for i in $(seq -w 1 "$TOPIC_COUNT"); do names+=("many-src-$i"); done
  topics create "${names[@]}"
  log "loading $TOPIC_COUNT topics of $RECORDS records"
  for i in "${names[@]}"; do
    kcat -P -b "$BOOTSTRAP" -t "$i" -K $'\t' -z lz4 \
      -H tenant=a -H trace-id=0123456789abcdef0123456789abcdef <"$DATA"
  done
  expect_count "first source topic" "$(records "${names[0]}")"
  RESULTS="$WORK/results.txt"
  : >"$RESULTS"
  local round set_id total=$((RECORDS * TOPIC_COUNT))
  printf '%s\n' "${names[@]}" >"$WORK/topics.txt"
  for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    measure "$round" kvault-backup-set "$KVAULT" backup --cluster bench \
      --topic-pattern 'many-src-.*' --compression zstd --rate-limit-per-second "$UNLIMITED"
    [ "$(json_field "$WORK/kvault-backup-set-$round.out" total_messages)" = "$total" ] ||
      die "backup set: not $total records"
    set_id="$(json_field "$WORK/kvault-backup-set-$round.out" set_id)"
    measure "$round" kvault-restore-set "$KVAULT" restore --cluster bench --backup-id "$set_id" \
      --topic-prefix "r$round-" --rate-limit-per-second "$UNLIMITED"
    [ "$(json_field "$WORK/kvault-restore-set-$round.out" messages_restored)" = "$total" ] ||
      die "restore set: not $total records"
    measure "$round" kcat-C-each bash -c "while read -r t; do LD_LIBRARY_PATH='$RDKAFKA_DIR' \
      '$KCAT_BIN' -C -b '$BOOTSTRAP' -t \"\$t\" -o beginning -e -q >/dev/null; done <'$WORK/topics.txt'"
    sed "s/^/k$round-/" "$WORK/topics.txt" >"$WORK/targets.txt"
    topics create $(cat "$WORK/targets.txt")
    measure "$round" kcat-P-each bash -c "while read -r t; do LD_LIBRARY_PATH='$RDKAFKA_DIR' \
      '$KCAT_BIN' -P -b '$BOOTSTRAP' -t \"\$t\" -K \$'\\t' -l '$DATA'; done <'$WORK/targets.txt'"
    rm -rf "${WORK:?}/backups"
    topics delete $(sed "s/^/r$round-/" "$WORK/topics.txt") $(cat "$WORK/targets.txt") ||
      log "could not delete round $round's topics"
  done
  report "many: $TOPIC_COUNT topics x $PARTITIONS partitions x $RECORDS records" \
    kvault-backup-set/kcat-C-each kvault-restore-set/kcat-P-each
}
