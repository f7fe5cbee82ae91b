#!/usr/bin/env bash
# The CLI's query speed against `zcat | jq` on the same ~1 GB of gzip backups (BENCHMARKS.md).
# Needs jq (apt-get install jq). Usage: scripts/bench-query.sh [MB] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-1024}
runs=${2:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build -q --release -p chimera-log-cli
cargo run -q --release -p chimera-log-runtime --example generate_logs -- "$dir/logs" "$mb"
bin=$PWD/target/release/chimera-log
cd "$dir/logs"
for run in $(seq 1 "$runs"); do
    /usr/bin/time -f "run $run chimera-log query: %e s (peak RSS %M KiB)" \
        "$bin" query . --event state_divergence > "$dir/ours.out"
    /usr/bin/time -f "run $run zcat | jq:          %e s" \
        bash -c "zcat -f \$(ls chimera.log.*.gz | sort) chimera.log | jq -c 'select(.event == \"state_divergence\")' > '$dir/jq.out'"
done
echo "matches: $(wc -l < "$dir/ours.out") (chimera-log), $(wc -l < "$dir/jq.out") (jq)"
cmp <(jq -c . "$dir/ours.out") "$dir/jq.out" && echo "identical results"
