#!/usr/bin/env bash
# Runs kvault's whole test suite on a fresh machine: installs the test broker, the S3-compatible
# test server and the Azure Blob emulator if missing, makes sure PostgreSQL is up, then runs every test against them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KVAULT_TEST_BOOTSTRAP:-}" ]; then
  bash scripts/install-broker.sh
fi
bash scripts/install-s3.sh
bash scripts/install-azurite.sh
bash scripts/start-postgres.sh
# Each API test creates a database of its own (kvault_test_*); drop those of earlier runs.
{ psql -h 127.0.0.1 -U postgres -d test -Atqc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'kvault\_test\_%'" |
    while read -r db; do psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS \"$db\""; done
} 2>/dev/null || true

# Benches are not run here: they are measurements, run on purpose (see README).
cargo test --workspace "$@"
