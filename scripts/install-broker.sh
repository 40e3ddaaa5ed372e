#!/usr/bin/env bash
# Installs nisshi, the Kafka-protocol broker kvault's integration tests (and a newcomer without a
# Kafka of their own) run against. Builds once into a cache; never rebuilds when present.
set -euo pipefail

NISSHI_VERSION="0.8.1"
NISSHI_ROOT="${KVAULT_NISSHI_ROOT:-$HOME/.cache/kvault/nisshi}"
NISSHI_BIN="$NISSHI_ROOT/bin/nisshi"

if [ -x "$NISSHI_BIN" ] && "$NISSHI_BIN" --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
  echo "nisshi $NISSHI_VERSION already installed at $NISSHI_BIN"
  exit 0
fi

echo "Installing nisshi $NISSHI_VERSION into $NISSHI_ROOT (about 10 minutes on 2 cores)..."
# --ignore-rust-version: one dependency declares a newer rustc than needed; it builds and runs fine.
# A target dir of its own keeps the broker's build out of the workspace's.
CARGO_TARGET_DIR="${NISSHI_ROOT}/build" cargo install "nisshi@${NISSHI_VERSION}" \
  --locked --ignore-rust-version --no-default-features --features dynostore \
  --root "$NISSHI_ROOT"
rm -rf "${NISSHI_ROOT}/build"
echo "nisshi installed at $NISSHI_BIN"
