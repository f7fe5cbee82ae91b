#!/usr/bin/env python3
"""Checks that the declared minimum Rust versions are true of the dependency graph.

Only one toolchain can be installed on the machines this project is built on, so the MSRV cannot
be checked by building with the old compiler. What can be checked is the next best thing: every
crate the published crates build with, as resolved in Cargo.lock, declares a `rust-version` no
newer than ours. Two graphs are checked:

- the default features of `chimera-log`, and with `postgres` or `otlp`, against the workspace's `rust-version`;
- with `cloudwatch`, and with `s3` (the same AWS SDK), against the version the README states for
  them.

A dependency that declares no `rust-version` is listed, not failed (most old crates declare none).
Exit status 1 with each offending crate named when a declared version is exceeded.
"""

import json
import re
import subprocess
import sys


def version_tuple(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def declared_versions():
    """(package name, version) -> declared rust_version, for every package in the lock file."""
    metadata = json.loads(
        subprocess.check_output(["cargo", "metadata", "--locked", "--all-features", "--format-version", "1"], text=True)
    )
    return {(p["name"], p["version"]): p.get("rust_version") for p in metadata["packages"]}, metadata


def graph(features):
    """The (name, version) pairs `chimera-log` builds with (normal and build edges)."""
    command = [
        "cargo", "tree", "--locked", "-p", "chimera-log", "-e", "normal,build",
        "--prefix", "none", "--format", "{p}",
    ]
    if features:
        command += ["--features", features]
    out = subprocess.check_output(command, text=True)
    found = set()
    for line in out.splitlines():
        match = re.match(r"^(\S+) v(\S+)", line.strip())
        if match:
            found.add((match.group(1), match.group(2)))
    return found


def readme_cloudwatch_msrv():
    text = open("README.md", encoding="utf-8").read()
    match = re.search(r"Minimum Rust: ([0-9.]+)[^\n]*\n?[^\n]*with `cloudwatch`, ([0-9.]+)", text)
    if not match:
        sys.exit("check-msrv: README.md does not state 'Minimum Rust: X ... with `cloudwatch`, Y'")
    return match.group(1), match.group(2)


def main():
    versions, metadata = declared_versions()
    workspace = next(p for p in metadata["packages"] if p["name"] == "chimera-log")
    ours = workspace["rust_version"]
    readme_core, readme_cloudwatch = readme_cloudwatch_msrv()
    failed = False
    if readme_core != ours:
        print(f"check-msrv: README says {readme_core}, Cargo.toml declares {ours}")
        failed = True
    for features, limit in (("", ours), ("postgres", ours), ("otlp", ours), ("cloudwatch", readme_cloudwatch), ("s3", readme_cloudwatch)):
        packages = graph(features)
        undeclared = sorted(f"{n} {v}" for n, v in packages if not versions.get((n, v)))
        worst = max(
            (version_tuple(versions[p]), p) for p in packages if versions.get(p)
        )
        over = sorted(
            f"{n} {v} needs {versions[(n, v)]}"
            for n, v in packages
            if versions.get((n, v)) and version_tuple(versions[(n, v)]) > version_tuple(limit)
        )
        label = features or "default features"
        print(
            f"check-msrv: {label}: {len(packages)} crates, newest declared "
            f"{'.'.join(map(str, worst[0]))} ({worst[1][0]}), limit {limit}; "
            f"{len(undeclared)} declare none"
        )
        for line in over:
            print(f"  exceeds {limit}: {line}")
        failed |= bool(over)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
