#!/usr/bin/env bash
# The audit store benchmark (BENCHMARKS.md): records/s into SQLite and into a local PostgreSQL
# started for the run, and emit latency with the store on and off. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/start-postgres.sh
cargo bench --locked -p chimera-log-tests --features postgres --bench audit_store
