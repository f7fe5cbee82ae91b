#!/usr/bin/env python3
"""Two builds of one of the peers package's children side by side, runs interleaved.

    python3 bench/interleave.py OLD_BINARY NEW_BINARY [--rounds 5] [--events 1000000] [--threads 1 4 8]
        [--child chimera-log|chimera-layer]

Per round and thread count it runs the old binary's child (`chimera-log`, the typed `emit!`;
`--child chimera-layer` for `tracing::info!` into `ChimeraLayer`), the new one's, and the new
one's `raw-bufwriter` child (the physical reference), each in a fresh directory, and prints the
medians in events/s with new/old. This machine's speed drifts by tens of percent over minutes;
interleaving puts both builds in the same drift, so compare builds only within one run.
"""

import argparse
import statistics
import subprocess
import tempfile


def run(binary: str, child: str, threads: int, events: int) -> int:
    """Nanoseconds the child took, end to end, for `events` events."""
    with tempfile.TemporaryDirectory() as directory:
        out = subprocess.run(
            [binary, "--child", child, str(threads), str(events), directory],
            capture_output=True, text=True, check=True,
        )
        return int(out.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--child", default="chimera-log")
    args = parser.parse_args()
    for threads in args.threads:
        times = {"old": [], "new": [], "raw": []}
        for _ in range(args.rounds):
            times["old"].append(run(args.old, args.child, threads, args.events))
            times["new"].append(run(args.new, args.child, threads, args.events))
            times["raw"].append(run(args.new, "raw-bufwriter", threads, args.events))
        rate = {who: args.events / (statistics.median(ns) / 1e9) for who, ns in times.items()}
        print(
            f"{threads} thread(s): old {rate['old']:,.0f} ({rate['old'] / rate['raw']:.2f}x raw), "
            f"new {rate['new']:,.0f} ({rate['new'] / rate['raw']:.2f}x raw), raw {rate['raw']:,.0f}; "
            f"new/old {rate['new'] / rate['old']:.2f}"
        )


if __name__ == "__main__":
    main()
