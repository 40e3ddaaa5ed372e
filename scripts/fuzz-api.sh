#!/usr/bin/env bash
# Schema-driven fuzz of kvault's HTTP API from its own OpenAPI document (issue 14): schemathesis
# (PyPI) generates requests for every operation from /api/openapi.json, sends them to a real
# `kvault serve` (SQLite, a temporary archive directory, the nisshi test broker on a free port)
# and checks every answer: no 5xx, every status and content type documented, every body
# matching its schema (errors in the documented ErrorBody). Exits non-zero on any failure.
#
# `positive_data_acceptance` is left out: it expects every schema-valid body to be accepted, but
# some rules span fields (a migration's source and target may not be the same topic) or are not
# JSON Schema (`10.0` is a valid JSON Schema integer; kvault's integers are JSON integers), so it
# reports rules, not bugs. Every other check runs, including `negative_data_rejection` (a body
# or path the schema forbids must be refused).
#
# Installs schemathesis once into ~/.cache/kvault/schemathesis (a venv outside the clone).
# Environment: FUZZ_EXAMPLES (per operation, default 40), FUZZ_SEED (default 1: CI runs the
# same cases every time; change it to explore), KVAULT_BIN (default
# target/debug/kvault, built when missing), KVAULT_NISSHI_BIN, FUZZ_KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES="${FUZZ_EXAMPLES:-40}"
SCHEMATHESIS_VERSION="4.32.5"
CACHE="$HOME/.cache/kvault"
VENV="$CACHE/schemathesis"
NISSHI_BIN="${KVAULT_NISSHI_BIN:-$CACHE/nisshi/bin/nisshi}"
KVAULT_BIN="${KVAULT_BIN:-${CARGO_TARGET_DIR:-target}/debug/kvault}"

log() { printf '[fuzz] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi
[ -x "$NISSHI_BIN" ] || bash scripts/install-broker.sh
[ -x "$KVAULT_BIN" ] || cargo build -q -p kvault

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

BROKER_PORT="$(free_port)"
"$NISSHI_BIN" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
  --storage-engine memory://nisshi/ --group-initial-rebalance-delay 0s \
  >"$WORK/nisshi.log" 2>&1 &
PIDS+=($!)
wait_port "$BROKER_PORT" || { cat "$WORK/nisshi.log" >&2; exit 1; }

PORT="$(free_port)"
export KVAULT__SERVER__PORT="$PORT"
export KVAULT__DATABASE__URL="sqlite://$WORK/kvault.db?mode=rwc"
export KVAULT__BACKUP__BASE_PATH="$WORK/backups"
export KVAULT__CLUSTERS__LOCAL__BOOTSTRAP_SERVERS="127.0.0.1:$BROKER_PORT"
export KVAULT__AUTH__JWT_SECRET="fuzz-secret-0123456789abcdef0123456789"
# The fuzzer is one subject and one address sending thousands of requests.
export KVAULT__LIMITS__REQUESTS_PER_MINUTE=10000000
export KVAULT__LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE=10000000
TOKEN="$("$KVAULT_BIN" token --sub fuzz --role admin --ttl 3600)"
"$KVAULT_BIN" serve >"$WORK/kvault.log" 2>&1 &
PIDS+=($!)
KVAULT_PID=$!
wait_port "$PORT" || { cat "$WORK/kvault.log" >&2; exit 1; }
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/openapi.json" >"$WORK/openapi.json"

log "fuzzing http://127.0.0.1:$PORT with $EXAMPLES examples per operation"
status=0
# From the temporary directory: schemathesis keeps a `.schemathesis/` cache in its working
# directory, which belongs neither in the clone nor in a commit.
(cd "$WORK" && "$VENV/bin/st" run "$WORK/openapi.json" \
  --url "http://127.0.0.1:$PORT" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$EXAMPLES" \
  --workers 1 \
  --request-timeout 60 \
  --seed "${FUZZ_SEED:-1}" \
  --generation-database none \
  --no-color) || status=$?

if ! kill -0 "$KVAULT_PID" 2>/dev/null; then
  log "kvault serve died during the fuzz; its log:"
  tail -n 50 "$WORK/kvault.log" >&2
  exit 1
fi
if grep -q "panicked" "$WORK/kvault.log"; then
  log "kvault serve logged a panic:"
  grep -A5 "panicked" "$WORK/kvault.log" >&2
  exit 1
fi
[ "$status" = 0 ] || { log "schemathesis found failures (exit $status)"; exit "$status"; }
log "no failures"
