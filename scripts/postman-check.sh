#!/usr/bin/env bash
# Runs docs/postman_collection.json with newman against a real server and broker, as an ops
# engineer's "Run collection" would: starts an in-memory broker (nisshi) and `kvault serve` on
# free loopback ports with a job database and backup directory of their own, seeds topic
# `events` and a consumer group that has read it (for the drain), mints an admin token, runs the
# collection, and exits non-zero on any failed assertion. Everything it starts is stopped on exit.
#
# newman (from the npm registry) is installed once into ~/.cache/kvault/newman
# (KVAULT_NEWMAN_ROOT), outside the clone. Needs node >= 16 with npm, and what `cargo build`
# needs. Builds target/debug (or $CARGO_TARGET_DIR) unless KVAULT_BIN points at a kvault binary.
# Usage: scripts/postman-check.sh [extra newman arguments, e.g. --verbose]
set -euo pipefail
cd "$(dirname "$0")/.."
started_at=$(date +%s)

NEWMAN_VERSION="6.2.2"
NEWMAN_ROOT="${KVAULT_NEWMAN_ROOT:-$HOME/.cache/kvault/newman}"
NEWMAN="$NEWMAN_ROOT/node_modules/.bin/newman"
TOPIC="events"
GROUP="events-readers"
MESSAGES=2000

command -v npm >/dev/null || { echo "postman-check: node and npm are needed (apt-get install nodejs npm)" >&2; exit 1; }

echo "== newman $NEWMAN_VERSION"
if ! { [ -x "$NEWMAN" ] && [ "$("$NEWMAN" --version 2>/dev/null)" = "$NEWMAN_VERSION" ]; }; then
  mkdir -p "$NEWMAN_ROOT"
  npm install --prefix "$NEWMAN_ROOT" --no-audit --no-fund --loglevel=error "newman@$NEWMAN_VERSION"
fi

echo "== build"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
# One invocation for both, so they share one feature resolution (two would rebuild each other).
cargo build -q -p kvault --bin kvault -p kvault-testkit --example consume_group
KVAULT="${KVAULT_BIN:-$target_dir/debug/kvault}"
CONSUME_GROUP="$target_dir/debug/examples/consume_group"
bash scripts/install-broker.sh >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/kvault-postman.XXXXXX")
server_pid=""
cleanup() {
  status=$?
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  KVAULT_LOCAL_BROKER_DIR="$work/broker" bash scripts/local-broker.sh stop >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    echo "postman-check failed; last lines of the server log ($work/serve.log):" >&2
    tail -n 30 "$work/serve.log" >&2 2>/dev/null || true
  else
    rm -rf "$work"
  fi
  echo "postman-check took $(($(date +%s) - started_at)) s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port the kernel just handed out and released: free unless something races us for it.
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_for_port() {
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1 after 30 s" >&2
  return 1
}

echo "== broker"
broker_port=$(free_port)
KVAULT_LOCAL_BROKER_PORT="$broker_port" KVAULT_LOCAL_BROKER_DIR="$work/broker" bash scripts/local-broker.sh start

# The server and the CLI read the same settings: cluster `local` is this broker.
api_port=$(free_port)
export KVAULT__CLUSTERS__LOCAL__BOOTSTRAP_SERVERS="127.0.0.1:$broker_port"
export KVAULT__SERVER__HOST="127.0.0.1"
export KVAULT__SERVER__PORT="$api_port"
export KVAULT__BACKUP__BASE_PATH="$work/backups"
export KVAULT__DATABASE__URL="sqlite://$work/kvault.db?mode=rwc"
KVAULT__AUTH__JWT_SECRET=$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')
export KVAULT__AUTH__JWT_SECRET
# The key of masked restores' hash action ("Restore into a test environment").
KVAULT__MASKING__HMAC_KEY=$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')
export KVAULT__MASKING__HMAC_KEY

echo "== topic $TOPIC and consumer group $GROUP"
"$KVAULT" sample-data --cluster local --topic "$TOPIC" --messages "$MESSAGES" >/dev/null
"$CONSUME_GROUP" "127.0.0.1:$broker_port" "$GROUP" "$TOPIC"

echo "== kvault serve on 127.0.0.1:$api_port"
"$KVAULT" serve >"$work/serve.log" 2>&1 &
server_pid=$!
wait_for_port "$api_port"
token=$("$KVAULT" token --sub postman-check --role admin --ttl 1h)

echo "== newman"
"$NEWMAN" run docs/postman_collection.json \
  -e docs/postman_environment.json \
  --env-var "baseUrl=http://127.0.0.1:$api_port" \
  --env-var "token=$token" \
  --env-var "topic=$TOPIC" \
  --env-var "group=$GROUP" \
  --timeout-request 120000 \
  --color off \
  "$@"
