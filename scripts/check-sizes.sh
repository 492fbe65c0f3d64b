#!/usr/bin/env bash
# Size limits of non-test code in src/: no function over 80 lines, no file over 800
# lines (a file's #[cfg(test)] items do not count), except the ones listed under
# "Size exceptions" in ARCHITECTURE.md, each with its reason ("- `path` — reason" or
# "- `path::function` — reason"). An exception that no longer applies is an error too,
# so the list stays true.
#
#   scripts/check-sizes.sh [SRC_DIR [DOC]]     --report prints every size over half the limit
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

args = sys.argv[1:]
report = bool(args) and args[0] == "--report"
if report:
    args = args[1:]
SRC = args[0] if len(args) > 0 else "src"
DOC = args[1] if len(args) > 1 else "ARCHITECTURE.md"
MAX_FN, MAX_FILE = 80, 800

sys.path.insert(0, "scripts")
from rustsrc import blank, line_of, match_brace, test_spans  # noqa: E402

found_files, found_fns = {}, {}
for root, _, files in os.walk(SRC):
    for f in sorted(files):
        if not f.endswith(".rs"): continue
        path = os.path.join(root, f)
        rel = os.path.relpath(path, ".")
        t = blank(open(path, encoding="utf-8").read())
        spans = test_spans(t)
        in_test = lambda p: any(a <= p <= b for a, b in spans)
        test_lines = sum(line_of(t, b) - line_of(t, a) + 1 for a, b in spans)
        found_files[rel] = t.count("\n") - test_lines
        for m in re.finditer(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)", t):
            if in_test(m.start()): continue
            k = m.end(); depth = 0
            while k < len(t):
                ch = t[k]
                if ch in "(<[": depth += 1
                elif ch in ")>]": depth -= 1
                elif ch == ";" and depth <= 0: k = -1; break
                elif ch == "{" and depth <= 0: break
                k += 1
            if k < 0 or k >= len(t): continue
            end = match_brace(t, k)
            n = line_of(t, end) - line_of(t, m.start()) + 1
            key = f"{rel}::{m.group(1)}"
            found_fns[key] = max(n, found_fns.get(key, 0))

if report:
    for k, v in sorted(found_files.items(), key=lambda kv: -kv[1]):
        if v > MAX_FILE // 2: print(f"file {v:5} {k}")
    for k, v in sorted(found_fns.items(), key=lambda kv: -kv[1]):
        if v > MAX_FN // 2: print(f"fn   {v:5} {k}")
    sys.exit(0)

exceptions = {}
text = open(DOC, encoding="utf-8").read()
sec = re.search(r"^#+ Size exceptions\s*$(.*?)(?=^#+ |\Z)", text, re.M | re.S)
if sec:
    for m in re.finditer(r"^- `([^`]+)` — (.+)$", sec.group(1), re.M):
        exceptions[m.group(1)] = m.group(2).strip()
errors = []
for k, v in sorted(found_files.items()):
    if v > MAX_FILE and k not in exceptions:
        errors.append(f"{k}: {v} lines of non-test code (limit {MAX_FILE})")
for k, v in sorted(found_fns.items()):
    if v > MAX_FN and k not in exceptions:
        errors.append(f"{k}: {v} lines (limit {MAX_FN})")
for k in sorted(exceptions):
    size = found_fns.get(k) if "::" in k else found_files.get(k)
    limit = MAX_FN if "::" in k else MAX_FILE
    if size is None:
        errors.append(f"{DOC} lists `{k}` under Size exceptions, but it does not exist")
    elif size <= limit:
        errors.append(f"{DOC} lists `{k}` under Size exceptions, but it is {size} lines now: drop it")
if errors:
    for e in errors: print("check-sizes: " + e, file=sys.stderr)
    sys.exit(1)
print(f"check-sizes: {len(found_fns)} functions ≤ {MAX_FN} lines, {len(found_files)} files ≤ {MAX_FILE} lines (besides {len(exceptions)} listed exceptions)")
PY
