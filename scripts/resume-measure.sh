#!/usr/bin/env bash
# Measures a resumed backup against a full one (not a test of the times): about 1 GB
# (RESUME_MEASURE_MIB, default 1024) of 8 KiB records in a 3-partition topic of the test
# broker, backed up to S3 (moto) by real `kvault serve` replicas sharing one PostgreSQL, with
# 16 MiB segments: once whole, then once more with the replica SIGKILLed at 50 % of the
# records, so another replica resumes it from the segments the first attempt committed. Prints
# the full run's time, the resumed attempt's time, the time from the kill to the completed job
# (including the lease running out), what was adopted, and whether the archive verifies.
#
# Needs what the integration tests need: PostgreSQL on 127.0.0.1:5432, the nisshi broker
# (scripts/install-broker.sh), moto (scripts/install-s3.sh). Runs the ignored test
# `resume_measure_1gb` of tests/resume.rs; the figures are on the lines starting `measure:`.
# Usage: scripts/resume-measure.sh [MIB]   (RESUME_MEASURE_PROFILE=release for a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
export RESUME_MEASURE_MIB="${1:-${RESUME_MEASURE_MIB:-1024}}"
profile=()
if [ "${RESUME_MEASURE_PROFILE:-}" = release ]; then profile=(--release); fi
cargo test "${profile[@]}" --workspace --test resume -- --ignored --exact resume_measure_1gb \
  --nocapture 2>&1 | tee /tmp/resume-measure.log | grep -E '^measure:|test result|panicked'
