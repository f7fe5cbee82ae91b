#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: unit, integration, trybuild UI and doc tests of
# every workspace member. Needs only the Rust toolchain; anything else a test needs is installed
# and started here, and a test whose prerequisite is missing fails saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace --locked
