#!/usr/bin/env bash
# Checks that chimera-log with its default features resolves in one dependency graph with
# sqlx 0.8 (features sqlite, postgres, runtime-tokio): both link the C SQLite library, and Cargo
# refuses a graph where two crates link it ("Only one package in the dependency graph may specify
# the same links value"). Resolves tests/fixtures/beside-sqlx in a temporary copy, against the
# registry's newest matching versions (as a service adding chimera-log would): nothing is built,
# and no lockfile is left behind. Exits 1 with the resolver's message when it does not resolve.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -R tests/fixtures/beside-sqlx/. "$scratch/"
rm -f "$scratch/Cargo.lock"
# The fixture's path to chimera-log is relative to where it lives in the repository.
sed -i "s|path = \"../../../chimera-log\"|path = \"$root/chimera-log\"|" "$scratch/Cargo.toml"
grep -q "path = \"$root/chimera-log\"" "$scratch/Cargo.toml" \
    || { echo "check-beside-sqlx: the fixture no longer names chimera-log by ../../../chimera-log" >&2; exit 1; }

if ! (cd "$scratch" && CARGO_TARGET_DIR="$scratch/target" cargo generate-lockfile > "$scratch/resolve.log" 2>&1); then
    echo "check-beside-sqlx: chimera-log (default features) does not resolve beside sqlx 0.8:" >&2
    cat "$scratch/resolve.log" >&2
    exit 1
fi
# What was resolved, for the log: one SQLite binding, and who uses it.
(cd "$scratch" && cargo tree --quiet --locked -e normal,build -i libsqlite3-sys --depth 1 --prefix none) \
    | sed 's/^/  /'
echo "check-beside-sqlx: chimera-log resolves beside sqlx 0.8 (sqlite, postgres, runtime-tokio)"
