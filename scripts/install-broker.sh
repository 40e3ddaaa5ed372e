#!/usr/bin/env bash
# Installs nisshi, the Kafka-protocol broker kvault's integration tests (and a newcomer without a
# Kafka of their own) run against. Builds once into a cache; never rebuilds when present.
set -euo pipefail

NISSHI_VERSION="0.8.1"
NISSHI_ROOT="${KVAULT_NISSHI_ROOT:-$HOME/.cache/kvault/nisshi}"
NISSHI_BIN="$NISSHI_ROOT/bin/nisshi"
# The storage engines built in are part of the cache key: `dynostore` is the in-memory engine the
# tests run on; `postgres` adds an engine that can hold SCRAM users (tests of authenticated
# Kafka start such a broker on the local PostgreSQL). A cached broker built with other features
# is rebuilt once.
NISSHI_FEATURES="dynostore,postgres"
FEATURES_STAMP="$NISSHI_ROOT/features"

if [ -x "$NISSHI_BIN" ] && "$NISSHI_BIN" --version 2>/dev/null | grep -q "$NISSHI_VERSION" &&
  [ "$(cat "$FEATURES_STAMP" 2>/dev/null)" = "$NISSHI_FEATURES" ]; then
  echo "nisshi $NISSHI_VERSION ($NISSHI_FEATURES) already installed at $NISSHI_BIN"
  exit 0
fi

echo "Installing nisshi $NISSHI_VERSION into $NISSHI_ROOT (about 10 minutes on 2 cores)..."
# --ignore-rust-version: one dependency declares a newer rustc than needed; it builds and runs fine.
# A target dir of its own keeps the broker's build out of the workspace's.
CARGO_TARGET_DIR="${NISSHI_ROOT}/build" cargo install "nisshi@${NISSHI_VERSION}" \
  --locked --ignore-rust-version --no-default-features --features "$NISSHI_FEATURES" \
  --root "$NISSHI_ROOT"
rm -rf "${NISSHI_ROOT}/build"
echo "$NISSHI_FEATURES" > "$FEATURES_STAMP"
echo "nisshi installed at $NISSHI_BIN"
