#!/usr/bin/env bash
# Installs the S3-compatible server kvault's object storage tests (and a newcomer trying S3
# locally) run against: moto in server mode, from PyPI, into a virtualenv in a cache outside
# the clone. Never reinstalls when present.
set -euo pipefail

MOTO_VERSION="5.2.5"
S3_ROOT="${KVAULT_S3_ROOT:-$HOME/.cache/kvault/s3}"
PYTHON="$S3_ROOT/venv/bin/python"

if [ -x "$PYTHON" ] && "$PYTHON" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "moto $MOTO_VERSION already installed in $S3_ROOT/venv"
  exit 0
fi

echo "Installing moto[server] $MOTO_VERSION into $S3_ROOT/venv..."
python3 -m venv "$S3_ROOT/venv"
"$PYTHON" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
echo "moto installed: $PYTHON"
