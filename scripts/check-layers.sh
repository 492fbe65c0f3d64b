#!/usr/bin/env bash
# The layer checker: every `crate::` edge between top-level modules of src/ (non-test
# code) must be allowed by the module table in ARCHITECTURE.md (its "may use" column:
# the `backticked` module names; "every module" allows all). Also fails when a module
# of src/ is missing from the table or the table names one that does not exist, when
# the allowed edges form a cycle, when non-test code outside src/clock.rs reads the
# wall clock (`Utc::now()`, `SystemTime::now()`: time comes from the Clock port), and
# when a file of src/ does not open with a `//!` comment saying what it owns.
#
#   scripts/check-layers.sh [SRC_DIR [TABLE_FILE]]    (defaults: src ARCHITECTURE.md)
#   scripts/check-layers.sh --edges [SRC_DIR]         prints the edges found
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

args = sys.argv[1:]
print_edges = bool(args) and args[0] == "--edges"
if print_edges:
    args = args[1:]
SRC = args[0] if len(args) > 0 else "src"
TABLE = args[1] if len(args) > 1 else "ARCHITECTURE.md"
CLOCK_FILE = "clock.rs"

sys.path.insert(0, "scripts")
from rustsrc import blank, line_of, without_tests  # noqa: E402

def top_names_in_braces(s):
    # s: content inside the outermost braces of `use crate::{...}`
    names = []; depth = 0; cur = ''
    for ch in s:
        if ch == '{': depth += 1; cur += ch
        elif ch == '}': depth -= 1; cur += ch
        elif ch == ',' and depth == 0:
            names.append(cur); cur = ''
        else: cur += ch
    names.append(cur)
    res = []
    for n in names:
        n = n.strip()
        m = re.match(r'([A-Za-z_][A-Za-z0-9_]*)', n)
        if m: res.append(m.group(1))
    return res


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts

undocumented = []

def scan(src):
    """(edges {a: {b: set(files)}}, modules set, clock reads [(file, line)])."""
    edges, modules, clock = {}, set(), []
    global undocumented
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)
            parts = module_of(rel)
            if parts in (["lib"], ["main"]):
                continue
            top = parts[0]
            modules.add(top)
            raw = open(path, encoding="utf-8").read()
            if not raw.lstrip().startswith("//!"):
                undocumented.append(rel)
            text = without_tests(blank(raw))
            if rel != CLOCK_FILE:
                for m in re.finditer(r"\b(Utc|SystemTime)\s*::\s*now\s*\(", text):
                    clock.append((rel, line_of(text, m.start())))
            found = set()
            for m in re.finditer(r"\bcrate\s*::\s*\{", text):
                k = m.end(); depth = 1; s = k
                while depth and k < len(text):
                    if text[k] == "{": depth += 1
                    elif text[k] == "}": depth -= 1
                    k += 1
                found.update(top_names_in_braces(text[s:k - 1]))
            for m in re.finditer(r"\bcrate\s*::\s*([a-z_][a-z0-9_]*)", text):
                found.add(m.group(1))
            for m in re.finditer(r"\b((?:super\s*::\s*)+)([a-z_][a-z0-9_]*)", text):
                n = m.group(1).count("super")
                if n >= len(parts):
                    found.add(m.group(2))
            for t in found:
                if t != top and t != "self":
                    edges.setdefault(top, {}).setdefault(t, set()).add(rel)
    return edges, modules, clock

def read_table(path):
    """{module: allowed set or None (= every module)} from the table's rows."""
    allowed = {}
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.lstrip().startswith("|"):
            continue
        m = re.fullmatch(r"`([a-z_][a-z0-9_]*)(?:/|\.rs)?`", cells[0])
        if not m:
            continue
        uses = cells[-1]
        allowed[m.group(1)] = None if "every module" in uses else set(re.findall(r"`([a-z_][a-z0-9_]*)`", uses))
    return allowed

edges, modules, clock = scan(SRC)
if print_edges:
    for a in sorted(edges):
        for b in sorted(edges[a]):
            print(f"{a} -> {b}\t{' '.join(sorted(edges[a][b]))}")
    sys.exit(0)

allowed = read_table(TABLE)
errors = []
for m in sorted(modules - set(allowed)):
    errors.append(f"module `{m}` (src/) is not in the table of {TABLE}")
for m in sorted(set(allowed) - modules):
    errors.append(f"the table of {TABLE} names `{m}`, which is not a module of {SRC}/")
for m, uses in sorted(allowed.items()):
    for u in sorted(uses or ()):
        if u not in allowed:
            errors.append(f"`{m}` may use `{u}`: not a module of the table")
for a in sorted(edges):
    for b in sorted(edges[a]):
        ok = allowed.get(a)
        if a in allowed and ok is not None and b not in ok:
            errors.append(f"forbidden edge {a} -> {b} (in {', '.join(sorted(edges[a][b]))}); "
                          f"{TABLE} allows {a} -> {', '.join(sorted(ok)) or 'nothing'}")
# The allowed graph itself must be acyclic (only explicit lists; "every module" is the top).
graph = {m: sorted(u) for m, u in allowed.items() if u is not None}
state = {}
def visit(n, stack):
    state[n] = 1
    for nxt in graph.get(n, ()):
        if state.get(nxt) == 1:
            cyc = stack[stack.index(nxt):] + [nxt] if nxt in stack else [n, nxt]
            errors.append("the allowed edges form a cycle: " + " -> ".join(cyc))
        elif nxt in graph and not state.get(nxt):
            visit(nxt, stack + [nxt])
    state[n] = 2
for n in sorted(graph):
    if not state.get(n):
        visit(n, [n])
for rel in undocumented:
    errors.append(f"src/{rel} does not open with a //! comment saying what the module owns")
for rel, line in clock:
    errors.append(f"src/{rel}:{line}: reads the wall clock; take the time from crate::clock::Clock")
if errors:
    for e in errors:
        print("check-layers: " + e, file=sys.stderr)
    sys.exit(1)
n = sum(len(v) for v in edges.values())
print(f"check-layers: {len(modules)} modules, {n} edges, all allowed by {TABLE}; no wall-clock reads outside src/{CLOCK_FILE}")
PY
