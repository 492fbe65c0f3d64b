#!/usr/bin/env python3
"""Rebuilds src/accounts/places/belfiore.tsv, the Belfiore (cadastral) code table that
turns a stored place of birth such as `F205` into «Milano (MI)».

The data is python-codicefiscale's (MIT, Fabio Caccamo; refreshed by its author from
ANPR): `municipalities.json` (every Italian municipality, historic ones included, one
code possibly several times over time) and `countries.json` + `deleted-countries.json`
(foreign states, `Z` codes). Python 3 standard library only; the package's source
distribution is fetched with `pip download` unless --sdist names one already on disk.

    scripts/refresh-belfiore.py [--version 0.12.1] [--sdist FILE.tar.gz] [--out DIR]

One row per code, sorted by code: the active entry, else the one deleted last (then the
one created last, then the name, so ties are stable). Foreign states get the marker
`EE` (estero) instead of a province. The "generated" date is SOURCE_DATE_EPOCH when
set, else the date of the data files inside the package, so the same input always gives
the same bytes. Writes belfiore.tsv and LICENSE-python-codicefiscale.txt into --out.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

DEFAULT_VERSION = "0.12.1"
PACKAGE = "python-codicefiscale"
OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "accounts", "places"))
CODE = re.compile(r"[A-Z][0-9]{3}")
ABROAD = "EE"


def fetch_sdist(version, workdir):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--no-binary", ":all:", f"{PACKAGE}=={version}", "-d", workdir],
        check=True,
    )
    names = [n for n in os.listdir(workdir) if n.endswith(".tar.gz")]
    if len(names) != 1:
        sys.exit(f"refresh-belfiore: expected one sdist in {workdir}, found {names}")
    return os.path.join(workdir, names[0])


def read_sdist(path, version):
    """{basename: bytes} of the files we use, and the data files' date (UTC)."""
    wanted = {"municipalities.json", "countries.json", "deleted-countries.json",
              "LICENSE.txt", "PKG-INFO"}
    found, mtime = {}, None
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            base = parts[-1]
            top_level = len(parts) == 2
            in_data = parts[-2:-1] == ["data"] and parts[-3:-2] == ["codicefiscale"]
            if (base in ("LICENSE.txt", "PKG-INFO") and top_level) or (base in wanted and in_data):
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                found[base] = handle.read()
                if base == "municipalities.json":
                    mtime = int(member.mtime)
    missing = wanted - set(found)
    if missing:
        sys.exit(f"refresh-belfiore: {path} lacks {sorted(missing)}")
    declared = re.search(rb"^Version: (\S+)$", found["PKG-INFO"], re.M)
    if not declared or declared.group(1).decode() != version:
        sys.exit(f"refresh-belfiore: {path} is not {PACKAGE} {version}")
    return found, mtime


def pick(entries):
    """The active entry of one code, else the one deleted last (ties: created last, name)."""
    return max(entries, key=lambda e: (bool(e.get("active")), e.get("date_deleted") or "",
                                       e.get("date_created") or "", e.get("name") or ""))


def rows_of(entries, marker_of):
    by_code, skipped = {}, 0
    for e in entries:
        code = (e.get("code") or "").strip().upper()
        if not CODE.fullmatch(code):
            skipped += 1  # e.g. "ND" (non disponibile) for a few historic entries
            continue
        by_code.setdefault(code, []).append(e)
    rows = {}
    for code, group in by_code.items():
        e = pick(group)
        name = " ".join((e.get("name") or "").split())
        marker = marker_of(e)
        if not name or not marker or "\t" in name:
            sys.exit(f"refresh-belfiore: bad entry for {code}: {e!r}")
        rows[code] = (name, marker)
    return rows, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default=DEFAULT_VERSION, help=f"{PACKAGE} version (default {DEFAULT_VERSION})")
    ap.add_argument("--sdist", help="an already downloaded sdist (.tar.gz) of that version")
    ap.add_argument("--out", default=OUT, help="output folder (default src/accounts/places)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        sdist = args.sdist or fetch_sdist(args.version, workdir)
        with open(sdist, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        files, mtime = read_sdist(sdist, args.version)

    municipalities = json.loads(files["municipalities.json"])
    countries = json.loads(files["deleted-countries.json"]) + json.loads(files["countries.json"])
    towns, skipped_t = rows_of(municipalities, lambda e: (e.get("province") or "").strip().upper())
    states, skipped_s = rows_of(countries, lambda e: ABROAD)
    clash = sorted(set(towns) & set(states))
    if clash:
        sys.exit(f"refresh-belfiore: codes both a municipality and a state: {clash}")
    if any(m == ABROAD for _, m in towns.values()):
        sys.exit(f"refresh-belfiore: a municipality has the province {ABROAD}")
    rows = {**towns, **states}

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = int(epoch) if epoch else mtime
    date = datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).date().isoformat()
    header = [
        "# Belfiore (cadastral) codes -> place names, to show a stored place of birth.",
        f"# source: {PACKAGE} {args.version} (https://pypi.org/project/{PACKAGE}/{args.version}/),"
        " src/codicefiscale/data/{municipalities,countries,deleted-countries}.json;"
        " its author refreshes them from ANPR",
        f"# sdist sha256: {digest}",
        "# licence: MIT, Copyright (c) 2017-present Fabio Caccamo"
        " (LICENSE-python-codicefiscale.txt beside this file)",
        f"# generated: {date} by scripts/refresh-belfiore.py --version {args.version}",
        f"# rows: {len(rows)} ({len(towns)} municipalities, {len(states)} foreign states);"
        f" {len(municipalities)} + {len(countries)} source entries, {skipped_t + skipped_s}"
        " without a code",
        "# one row per code: the active entry, else the one deleted last",
        f"# columns: code<TAB>name<TAB>province, or {ABROAD} for a foreign state (estero)",
    ]
    lines = header + [f"{code}\t{name}\t{marker}" for code, (name, marker) in sorted(rows.items())]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "belfiore.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "LICENSE-python-codicefiscale.txt"), "wb") as f:
        f.write(files["LICENSE.txt"])
    print(f"refresh-belfiore: {len(rows)} codes ({len(towns)} municipalities, "
          f"{len(states)} foreign states) from {PACKAGE} {args.version} into {args.out}")


if __name__ == "__main__":
    main()
