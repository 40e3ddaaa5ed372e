#!/usr/bin/env bash
# Installs the Azure Blob Storage emulator kvault's object storage tests run against: Azurite,
# from the npm registry, into a cache outside the clone. Never reinstalls when present.
# 3.35.0 is the newest Azurite that runs on Node.js 20 (3.36 needs 21, 3.37 needs 22).
set -euo pipefail

AZURITE_VERSION="3.35.0"
AZURITE_ROOT="${KVAULT_AZURITE_ROOT:-$HOME/.cache/kvault/azurite}"
BIN="$AZURITE_ROOT/node_modules/.bin/azurite-blob"

installed() {
  [ -x "$BIN" ] && [ "$(node -p "require('$AZURITE_ROOT/node_modules/azurite/package.json').version" 2>/dev/null)" = "$AZURITE_VERSION" ]
}

if installed; then
  echo "azurite $AZURITE_VERSION already installed in $AZURITE_ROOT"
  exit 0
fi
command -v npm >/dev/null || { echo "install-azurite: needs Node.js and npm (apt-get install nodejs npm)" >&2; exit 1; }
echo "Installing azurite $AZURITE_VERSION into $AZURITE_ROOT..."
mkdir -p "$AZURITE_ROOT"
npm install --prefix "$AZURITE_ROOT" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
installed || { echo "install-azurite: $BIN missing after install" >&2; exit 1; }
echo "azurite installed: $BIN"
