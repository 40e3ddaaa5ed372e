#!/usr/bin/env bash
# Runs every shell example of README.md and docs/api.md as written, in order, on a fresh
# directory with the local broker (and the local S3 server), and checks the outputs they show
# (scripts/doc_examples.py says how). Builds target/debug/kvault unless KVAULT_BIN points at a
# kvault binary. `--list` prints which blocks run and which are skipped, and why.
# Usage: scripts/doc-examples.sh [--list]
set -euo pipefail
cd "$(dirname "$0")/.."
docs=(README.md docs/api.md)
if [ "${1:-}" = "--list" ]; then
  exec python3 scripts/doc_examples.py --list "${docs[@]}"
fi
command -v jq >/dev/null || { echo "doc-examples: the examples use jq (apt-get install jq)" >&2; exit 1; }
command -v curl >/dev/null || { echo "doc-examples: the examples use curl" >&2; exit 1; }
if [ -z "${KVAULT_BIN:-}" ]; then
  cargo build -q -p kvault --bin kvault
  KVAULT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/kvault"
fi
bash scripts/install-broker.sh >/dev/null
bash scripts/install-s3.sh >/dev/null
bin_dir=$(mktemp -d "${TMPDIR:-/tmp}/kvault-bin.XXXXXX")
trap 'rm -rf "$bin_dir"' EXIT
ln -s "$(realpath "$KVAULT_BIN")" "$bin_dir/kvault"
PATH="$bin_dir:$PATH" python3 scripts/doc_examples.py "${docs[@]}"
