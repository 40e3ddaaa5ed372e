#!/usr/bin/env bash
# Starts a local Kafka-protocol broker (nisshi, in-memory) on 127.0.0.1:9092: the `local`
# cluster of config/default.yaml. For trying kvault without a Kafka of your own; data is lost
# when the broker stops. Usage: scripts/local-broker.sh [start|stop|status]
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${KVAULT_LOCAL_BROKER_PORT:-9092}"
STATE_DIR="${KVAULT_LOCAL_BROKER_DIR:-./data/broker}"
PID_FILE="$STATE_DIR/nisshi.pid"
NISSHI_BIN="${KVAULT_NISSHI_BIN:-${KVAULT_NISSHI_ROOT:-$HOME/.cache/kvault/nisshi}/bin/nisshi}"

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

case "${1:-start}" in
  start)
    if running; then
      echo "local broker already running (pid $(cat "$PID_FILE")) on 127.0.0.1:$PORT"
      exit 0
    fi
    [ -x "$NISSHI_BIN" ] || bash scripts/install-broker.sh
    mkdir -p "$STATE_DIR"
    nohup "$NISSHI_BIN" broker \
      --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT" \
      --storage-engine memory://nisshi/ \
      --group-initial-rebalance-delay 0s \
      >"$STATE_DIR/nisshi.log" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 50); do
      running || break   # it exited: the port is taken, or it failed to start
      if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "local broker running (pid $(cat "$PID_FILE")) on 127.0.0.1:$PORT; log: $STATE_DIR/nisshi.log"
        exit 0
      fi
      sleep 0.2
    done
    echo "broker did not start; see $STATE_DIR/nisshi.log" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$PID_FILE")
      kill "$pid"
      # Wait for it to exit, so a start right after binds a free port instead of finding the
      # dying process still listening.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    echo "local broker stopped"
    ;;
  status)
    if running; then echo "running (pid $(cat "$PID_FILE"))"; else echo "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
