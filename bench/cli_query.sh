#!/usr/bin/env bash
# `chimera-log query` against `zcat | jq` and `zcat | grep -F` on the same gzip backups, side by
# side in one run, run by run in turn (BENCHMARKS.md, "The CLI against zcat | jq and zcat | grep").
#
# Usage: bench/cli_query.sh [MB] [RUNS] [DATA_DIR]
#   MB        megabytes of JSON lines to generate (default 1024, about 150 MB of gzip; about 7300
#             makes 1 GB of gzip backups)
#   RUNS      runs of each command (default 3); the median is quoted
#   DATA_DIR  where the log directory is made (default: a temporary directory, removed at the
#             end); a DATA_DIR/logs already there is reused, and kept
# The selective filter, as chimera-log and as jq take it (change both together):
#   CLI_FILTER  default: --event state_divergence --where 'divergence_bps>=200' (words as a shell splits them)
#               with issue 31's --filter: CLI_FILTER="--filter 'event = \"state_divergence\" and divergence_bps >= 200'"
#   JQ_FILTER   default: select(.event == "state_divergence" and .context.divergence_bps >= 200)
#   CLI_WHERE   a filter without an event name (default: --where 'divergence_bps>=200')
#   JQ_WHERE    the same for jq (default: select(.context.divergence_bps >= 200))
#   EVENT       the event name of the plain match against grep -F (default state_divergence)
# Needs Python 3, gzip, jq and GNU time (/usr/bin/time); installs jq and time with apt-get when
# missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-1024}
runs=${2:-3}
data=${3:-}
CLI_FILTER=${CLI_FILTER:-"--event state_divergence --where 'divergence_bps>=200'"}
JQ_FILTER=${JQ_FILTER:-'select(.event == "state_divergence" and .context.divergence_bps >= 200)'}
CLI_WHERE=${CLI_WHERE:-"--where 'divergence_bps>=200'"}
JQ_WHERE=${JQ_WHERE:-'select(.context.divergence_bps >= 200)'}
EVENT=${EVENT:-state_divergence}
eval "cli_filter=($CLI_FILTER)"
eval "cli_where=($CLI_WHERE)"

for tool in jq:jq time:/usr/bin/time; do
    if ! command -v "${tool#*:}" > /dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool%%:*}" > /dev/null
    fi
done

cargo build -q --release -p chimera-log-cli
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/chimera-log

scratch=""
if [ -z "$data" ]; then
    data=$(mktemp -d)
    scratch=$data
fi
out=$(mktemp -d)
trap 'rm -rf "$out" ${scratch:+"$scratch"}' EXIT
mkdir -p "$data"
logs=$data/logs
if [ ! -e "$logs/chimera.log" ]; then
    python3 bench/cli_logs.py "$logs" "$mb"
fi
cd "$logs"
# zcat -f reads the plain current file as it is; the backups oldest first, as chimera-log does.
files="$(ls chimera.log.*.gz | sort | tr '\n' ' ') chimera.log"
gz_bytes=$(cat chimera.log.*.gz | wc -c)
plain_bytes=$(zcat -f $files | wc -c)
echo "data: $(ls chimera.log.*.gz | wc -l) gzip backups, $gz_bytes bytes ($((plain_bytes / 1048576)) MiB of lines with the current file, $(stat -c %s chimera.log) bytes of it)"
echo "chimera-log: $("$bin" --version); $(jq --version); $(zcat --version | head -1); $(grep --version | head -1)"

# time_it NAME OUTFILE COMMAND...: one run; appends "NAME seconds peak_kib" to $out/times.
time_it() {
    local name=$1 file=$2
    shift 2
    /usr/bin/time -f "%e %M" -o "$out/time" "$@" > "$file" || true
    echo "$name $(cat "$out/time" | tail -1)" >> "$out/times"
    printf '  %-10s %6s s  peak %7s KiB\n' "$name" $(tail -1 "$out/time")
}

for run in $(seq 1 "$runs"); do
    echo "run $run"
    time_it cli-filter "$out/cli-filter" "$bin" query . "${cli_filter[@]}"
    time_it jq "$out/jq" bash -c "zcat -f $files | jq -c '$JQ_FILTER'"
    time_it cli-where "$out/cli-where" "$bin" query . "${cli_where[@]}"
    time_it jq-where "$out/jq-where" bash -c "zcat -f $files | jq -c '$JQ_WHERE'"
    time_it cli-event "$out/cli-event" "$bin" query . --event "$EVENT"
    time_it grep "$out/grep" bash -c "zcat -f $files | grep -F '$EVENT'"
done

median() { grep "^$1 " "$out/times" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
peak() { grep "^$1 " "$out/times" | awk '{print $3}' | sort -n | tail -1; }
echo
echo "| command | median of $runs (s) | peak RSS (KiB) | lines |"
echo "|---|---|---|---|"
echo "| \`chimera-log query . $CLI_FILTER\` | $(median cli-filter) | $(peak cli-filter) | $(wc -l < "$out/cli-filter") |"
echo "| \`zcat -f … \\| jq -c '$JQ_FILTER'\` | $(median jq) | $(peak jq) | $(wc -l < "$out/jq") |"
echo "| \`chimera-log query . $CLI_WHERE\` | $(median cli-where) | $(peak cli-where) | $(wc -l < "$out/cli-where") |"
echo "| \`zcat -f … \\| jq -c '$JQ_WHERE'\` | $(median jq-where) | $(peak jq-where) | $(wc -l < "$out/jq-where") |"
echo "| \`chimera-log query . --event $EVENT\` | $(median cli-event) | $(peak cli-event) | $(wc -l < "$out/cli-event") |"
echo "| \`zcat -f … \\| grep -F $EVENT\` | $(median grep) | $(peak grep) | $(wc -l < "$out/grep") |"
python3 -c "import sys; a, b, e, f, c, d = map(float, sys.argv[1:]); print(f'jq / chimera-log: {b / a:.1f}x (with an event), {f / e:.1f}x (without); grep / chimera-log: {d / c:.1f}x')" \
    "$(median cli-filter)" "$(median jq)" "$(median cli-where)" "$(median jq-where)" "$(median cli-event)" "$(median grep)"
# The same lines on both sides (jq re-encodes what it prints, so ours go through jq -c too).
if cmp -s <(jq -c . "$out/cli-filter") "$out/jq"; then echo "filter: identical results"; else echo "filter: RESULTS DIFFER"; exit 1; fi
if cmp -s <(jq -c . "$out/cli-where") "$out/jq-where"; then echo "where: identical results"; else echo "where: RESULTS DIFFER"; exit 1; fi
if cmp -s "$out/cli-event" "$out/grep"; then echo "event: identical results"; else echo "event: RESULTS DIFFER"; exit 1; fi
