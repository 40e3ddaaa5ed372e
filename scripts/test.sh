#!/usr/bin/env bash
# Runs kvault's whole test suite on a fresh machine: installs the test broker if missing, makes
# sure PostgreSQL is up, then runs every test against them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KVAULT_TEST_BOOTSTRAP:-}" ]; then
  bash scripts/install-broker.sh
fi
bash scripts/start-postgres.sh
export KVAULT_TEST_DATABASE_URL="${KVAULT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

cargo test --workspace --all-targets "$@"
