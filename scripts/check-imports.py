#!/usr/bin/env python3
"""Fails when the runtime's modules import in a circle.

Reads every file under chimera-log-runtime/src, resolves each `crate::`, `super::` and
`self::` path it names to the file that defines it (the deepest module file on the path), and
looks for circles among files (strongly connected components of more than one file). A
folder's `mod.rs` that only declares its children and re-exports their items (`pub use
child::X`) is a table of contents: those re-exports are not imports. Tests (`#[cfg(test)] mod
tests` at the end of a file) are left out. Prints each circle with the names that tie it, and
the count of imports that run from a lower layer to a higher one (the order is the project's
layers, `LAYERS` below); exits 1 on a circle or on more upward imports than `MAX_UPWARD`.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "chimera-log-runtime" / "src"
# From the ground up (docs/architecture.md); a module not named here is checked for circles only.
LAYERS = [
    ["error", "clock", "fast_clock", "json", "event", "deferred", "testing", "dir"],
    ["thread", "report", "levels", "stats", "sink", "spans"],
    ["config"],
    ["audit", "file"],
    ["write", "forward"],
    ["logger"],
    ["events"],
    ["capture"],
    ["init", "lib"],
]
MAX_UPWARD = 8


def module_of(path: Path) -> list:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib") and len(parts) == 1 or parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def file_of(parts: list):
    """The file that defines module `parts` (or the deepest prefix of it that is a module)."""
    for n in range(len(parts), 0, -1):
        base = SRC.joinpath(*parts[:n])
        for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
            if candidate.is_file():
                return candidate
    return SRC / "lib.rs"


def strip_tests(text: str) -> str:
    """The file without its tests module and without comments (doc links name paths too)."""
    found = re.search(r"(?m)^#\[cfg\((all\()?test\b[^\n]*\]\nmod tests", text)
    text = text if found is None else text[: found.start()]
    return re.sub(r"(?m)//.*$", "", text)


USE = re.compile(r"(?m)^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
INLINE = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def expand(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (names only, `as` dropped)."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, rest):
        if "{" not in rest:
            for item in rest.split(","):
                item = item.split("as")[0] if "as" in item and not item.startswith("as") else item
                if item:
                    out.append(prefix + item)
            return
        head, body = rest.split("{", 1)
        depth, items, cur = 0, [], ""
        for ch in body[:-1]:
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        items.append(cur)
        for item in items:
            walk(prefix + head, item)

    walk("", tree)
    return out


def resolve(path: str, here: list) -> list:
    parts = path.split("::")
    if parts[0] == "crate":
        return parts[1:]
    base = list(here)
    while parts and parts[0] in ("super", "self"):
        if parts[0] == "super":
            base = base[:-1]
        parts = parts[1:]
    return base + parts


def reexports(f: Path) -> dict:
    """A file's `pub use` re-exports: name -> the module path it names (`*` for a glob)."""
    here = module_of(f)
    out = {}
    for match in USE.finditer(strip_tests(f.read_text())):
        if not match.group(1):
            continue
        for path in expand(match.group(2)):
            parts = resolve(path, here) if path.startswith(("crate", "super", "self")) else here + path.split("::")
            out[parts[-1]] = parts
    return out


def follow_reexport(parts: list, tables: dict):
    """The file that defines the item `parts` names, looking through re-exports."""
    for _ in range(16):
        # The longest prefix that names a module file; the name after it is an item there.
        for n in range(len(parts), -1, -1):
            prefix = parts[:n]
            base = SRC.joinpath(*prefix) if prefix else None
            candidates = [SRC / "lib.rs"] if not prefix else [base.with_suffix(".rs"), base / "mod.rs"]
            target = next((c for c in candidates if c.is_file()), None)
            if target is not None:
                break
        if n == len(parts):
            return target
        table = tables.get(target, {})
        name = parts[n]
        # `#[macro_export]` macros must be defined at the crate root: naming one is no import of it.
        if target == SRC / "lib.rs" and name in ROOT_MACROS:
            return None
        if name in table and table[name][: n + 1] != parts[: n + 1]:
            parts = table[name] + parts[n + 1 :]
            continue
        if name not in table and "*" in table:
            parts = table["*"][:-1] + parts[n:]
            continue
        return target
    return file_of(parts)


ROOT_MACROS = set(re.findall(r"macro_rules!\s*(\w+)", (SRC / "lib.rs").read_text()))


def main() -> int:
    files = sorted(p for p in SRC.rglob("*.rs"))
    tables = {f: reexports(f) for f in files if f.name in ("mod.rs", "lib.rs")}
    edges = {}
    for f in files:
        text = strip_tests(f.read_text())
        here = module_of(f)
        is_toc = f.name in ("mod.rs", "lib.rs")
        targets = {}
        for match in USE.finditer(text):
            visibility, tree = match.group(1), match.group(2)
            for path in expand(tree):
                if not path.startswith(("crate", "super", "self")):
                    continue
                parts = resolve(path, here)
                target = follow_reexport(parts, tables)
                if target is None:
                    continue
                # A table of contents re-exporting its own children imports nothing.
                if is_toc and visibility and len(parts) > len(here) and parts[: len(here)] == here:
                    continue
                if target != f:
                    targets.setdefault(target, set()).add(parts[-1])
        for match in INLINE.finditer(re.sub(r"(?m)^\s*(pub(\([^)]*\))?\s+)?use\s+[^;]+;", "", text)):
            parts = resolve(match.group(1), here)
            target = follow_reexport(parts, tables)
            if target is not None and target != f:
                targets.setdefault(target, set()).add(parts[-1])
        edges[f] = targets

    # Circles: strongly connected components (Tarjan).
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10_000)
    for f in files:
        if f not in index:
            visit(f)

    rel = lambda p: str(p.relative_to(SRC))
    for comp in sccs:
        print(f"circle of {len(comp)} files:")
        members = set(comp)
        for a in sorted(comp):
            for b, names in sorted(edges[a].items()):
                if b in members:
                    print(f"  {rel(a)} -> {rel(b)}: {', '.join(sorted(names))}")

    layer_of = {name: i for i, names in enumerate(LAYERS) for name in names}
    top = lambda p: module_of(p)[0] if module_of(p) else "lib"
    upward = []
    for a, targets in edges.items():
        for b, names in targets.items():
            la, lb = layer_of.get(top(a)), layer_of.get(top(b))
            if la is not None and lb is not None and lb > la:
                upward.append(f"  {rel(a)} -> {rel(b)}: {', '.join(sorted(names))}")
    print(f"{len(upward)} import(s) from a lower layer to a higher one (at most {MAX_UPWARD}):")
    print("\n".join(sorted(upward)))
    if sccs or len(upward) > MAX_UPWARD:
        print(f"FAILED: {len(sccs)} circle(s), {len(upward)} upward import(s)")
        return 1
    print("no import circles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
