#!/usr/bin/env bash
# Starts a local S3-compatible server (moto, in memory) on 127.0.0.1:$KVAULT_LOCAL_S3_PORT
# (default 9000) with a bucket `kvault`, for trying kvault's object storage without a cloud
# account; objects are lost when it stops. Prints the settings kvault needs as `export` lines:
#   eval "$(bash scripts/local-s3.sh start | grep ^export)"
# Usage: scripts/local-s3.sh [start|stop|status]
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${KVAULT_LOCAL_S3_PORT:-9000}"
STATE_DIR="${KVAULT_LOCAL_S3_DIR:-./data/s3}"
PID_FILE="$STATE_DIR/moto.pid"
PYTHON="${KVAULT_S3_ROOT:-$HOME/.cache/kvault/s3}/venv/bin/python"
BUCKET=kvault

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

print_settings() {
  cat <<SETTINGS
export KVAULT__STORAGE__URL=s3://$BUCKET/backups
export KVAULT__STORAGE__S3__ENDPOINT=http://127.0.0.1:$PORT
export KVAULT__STORAGE__S3__REGION=us-east-1
export KVAULT__STORAGE__S3__ALLOW_HTTP=true
export KVAULT__STORAGE__S3__ACCESS_KEY_ID=kvault-local
export KVAULT__STORAGE__S3__SECRET_ACCESS_KEY=kvault-local-secret
SETTINGS
}

case "${1:-start}" in
  start)
    if running; then
      echo "local S3 already running (pid $(cat "$PID_FILE")) on http://127.0.0.1:$PORT"
      print_settings
      exit 0
    fi
    [ -x "$PYTHON" ] || bash scripts/install-s3.sh >&2
    mkdir -p "$STATE_DIR"
    nohup "$PYTHON" scripts/s3-server.py "$PORT" >"$STATE_DIR/moto.log" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 100); do
      running || break   # it exited: the port is taken, or it failed to start
      if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        # moto does not check signatures: creating the bucket needs no credentials.
        curl -fsS -X PUT "http://127.0.0.1:$PORT/$BUCKET" >/dev/null
        echo "local S3 running (pid $(cat "$PID_FILE")) on http://127.0.0.1:$PORT, bucket $BUCKET; log: $STATE_DIR/moto.log"
        print_settings
        exit 0
      fi
      sleep 0.2
    done
    echo "S3 server did not start; see $STATE_DIR/moto.log" >&2
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
    echo "local S3 stopped"
    ;;
  status)
    if running; then echo "running (pid $(cat "$PID_FILE"))"; else echo "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
