#!/usr/bin/env bash
# SPID conformance: runs AgID's spid-sp-test (PyPI, pinned) against a real
# `polis-gateway serve` on a free loopback port, for every binding x level.
#
#   scripts/conformance.sh                      all six runs
#   CONFORMANCE_RUNS="redirect:1 post:2" scripts/conformance.sh
#   SST_ARGS="-tn 1 8 xsw1" scripts/conformance.sh   extra spid_sp_test args
#                                                     (e.g. only some Response tests)
#   KEEP_TMP=1 scripts/conformance.sh           keep the temp dir (keys, overlay)
# Other knobs: POLIS_BIN (default target/debug/polis-gateway), CONFORMANCE_CONFIG
# (default config/conformance.toml), PYTHON (default python3, makes the venv),
# IDP_ENTITYID (fake IdP entityID, default https://localhost:8443),
# SP_ORG_NAME / SP_COMMON_NAME / SP_ORG_ID (SP certificate subject).
#
# Needs (make deps-test installs them): xmlsec1, openssl, curl, python3 with venv,
# and the gateway binary (make build).
# Output: target/conformance/<binding>-L<level>.{json,log} and ...-html/ (the
# gateway's answer to each crafted Response), plus gateway.log, overlay.toml, idp.xml.
# Exit status: non-zero if any run failed, crashed or ran incomplete.
set -euo pipefail

# Paths given by the caller are relative to the caller's directory.
abs() { if [[ "$1" == /* ]]; then printf '%s' "$1"; else printf '%s/%s' "$PWD" "$1"; fi; }
[[ -z "${POLIS_BIN:-}" ]] || POLIS_BIN="$(abs "$POLIS_BIN")"
[[ -z "${CONFORMANCE_CONFIG:-}" ]] || CONFORMANCE_CONFIG="$(abs "$CONFORMANCE_CONFIG")"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

SST_VERSION=1.2.18
VENV="$ROOT/target/sst-venv"
OUT="$ROOT/target/conformance"
BIN="${POLIS_BIN:-$ROOT/target/debug/polis-gateway}"
BASE_CONFIG="${CONFORMANCE_CONFIG:-$ROOT/config/conformance.toml}"
PYTHON="${PYTHON:-python3}"
RUNS="${CONFORMANCE_RUNS:-redirect:1 redirect:2 redirect:3 post:1 post:2 post:3}"
# spid-sp-test's fake IdP; its SSO URL is {entityID}/samlsso (never served).
export IDP_ENTITYID="${IDP_ENTITYID:-https://localhost:8443}"
# SP certificate subject (Avviso 29 v3, public sector); must match config/conformance.toml.
default_org="Ministero dell'Istruzione e del Merito"
SP_ORG_NAME="${SP_ORG_NAME:-$default_org}"
SP_COMMON_NAME="${SP_COMMON_NAME:-MIM}"
SP_ORG_ID="${SP_ORG_ID:-PA:IT-m_pi}"
HEALTH_TIMEOUT=30
# pysaml2/cryptography print deprecation warnings on every start.
export PYTHONWARNINGS=ignore

say() { printf 'conformance: %s\n' "$*"; }
die() { printf 'conformance: ERROR: %s\n' "$*" >&2; exit 1; }

# ---- prerequisites ------------------------------------------------------------
for tool in xmlsec1 openssl curl "$PYTHON"; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' not found; run 'make deps-test' (scripts/install-deps.sh --test)"
done
[[ -x "$BIN" ]] || die "$BIN not found; run 'make build' first (or set POLIS_BIN)"
[[ -f "$BASE_CONFIG" ]] || die "$BASE_CONFIG not found"

runs=()
for r in $RUNS; do
    [[ "$r" =~ ^(redirect|post):[123]$ ]] ||
        die "bad CONFORMANCE_RUNS entry '$r' (want binding:level, binding redirect|post, level 1|2|3)"
    runs+=("$r")
done
((${#runs[@]} > 0)) || die "CONFORMANCE_RUNS is empty"
extra_args=()
if [[ -n "${SST_ARGS:-}" ]]; then
    read -r -a extra_args <<<"$SST_ARGS"
fi

# ---- 1. spid-sp-test in a virtualenv --------------------------------------------
SST="$VENV/bin/spid_sp_test"
if [[ -x "$SST" ]] && [[ "$("$SST" --version 2>/dev/null)" == "$SST_VERSION" ]]; then
    say "reusing spid-sp-test $SST_VERSION in ${VENV#"$ROOT"/}"
else
    say "installing spid-sp-test $SST_VERSION into ${VENV#"$ROOT"/} (about 30 s)"
    t0=$SECONDS
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" ||
        die "'$PYTHON -m venv' failed (Debian's python3 needs python3-venv: make deps-test)"
    pip=("$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q)
    "${pip[@]}" "spid-sp-test==$SST_VERSION" || {
        say "pip install failed; retrying once"
        "${pip[@]}" "spid-sp-test==$SST_VERSION"
    }
    [[ "$("$SST" --version 2>/dev/null)" == "$SST_VERSION" ]] ||
        die "spid_sp_test $SST_VERSION does not run after install"
    say "spid-sp-test installed in $((SECONDS - t0)) s"
fi
VPY="$VENV/bin/python"

# ---- 2. temp dir, cleanup, fake IdP key + metadata ------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/polis-conformance.XXXXXX")"
GW_PID=""
SST_PID=""
mkdir -p "$OUT"

cleanup() {
    local rc=$?
    if [[ -n "$SST_PID" ]]; then
        kill "$SST_PID" 2>/dev/null || true
        wait "$SST_PID" 2>/dev/null || true
    fi
    if [[ -n "$GW_PID" ]] && kill -0 "$GW_PID" 2>/dev/null; then
        kill "$GW_PID" 2>/dev/null || true
        for _ in {1..50}; do # up to 5 s for a graceful shutdown
            kill -0 "$GW_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    fi
    for f in gateway.log overlay.toml idp.xml; do
        [[ -f "$TMP/$f" ]] && cp "$TMP/$f" "$OUT/$f"
    done
    if [[ -n "${KEEP_TMP:-}" ]]; then
        echo "conformance: temp dir kept at $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The certificate bundled with spid-sp-test expired on 2025-03-08: make a fresh one.
# spid-sp-test reads $IDP_CERT_PATH/private.key and $IDP_CERT_PATH/public.cert.
export IDP_CERT_PATH="$TMP/idp-cert"
mkdir -p "$IDP_CERT_PATH"
openssl req -x509 -newkey rsa:2048 -sha256 -days 30 -nodes \
    -keyout "$IDP_CERT_PATH/private.key" -out "$IDP_CERT_PATH/public.cert" \
    -subj "/C=IT/L=Roma/O=spid-sp-test fake IdP/CN=localhost" >"$TMP/openssl.log" 2>&1 ||
    { cat "$TMP/openssl.log" >&2; die "openssl could not make the fake IdP certificate"; }

"$SST" --idp-metadata >"$TMP/idp.xml" 2>"$TMP/idp-metadata.err" ||
    { cat "$TMP/idp-metadata.err" >&2; die "spid_sp_test --idp-metadata failed"; }
"$VPY" - "$TMP/idp.xml" "$IDP_CERT_PATH/public.cert" <<'PY' || die "fake IdP metadata does not carry the fresh certificate"
import sys
md = "".join(open(sys.argv[1]).read().split())
pem = open(sys.argv[2]).read().splitlines()
b64 = "".join(l.strip() for l in pem if l and not l.startswith("-----"))
sys.exit(0 if b64 in md else 1)
PY
say "fake IdP $IDP_ENTITYID: fresh certificate (30 days), metadata in ${OUT#"$ROOT"/}/idp.xml"

# ---- 3. SP key/cert, overlay config, start the gateway --------------------------
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE_URL="http://127.0.0.1:$PORT"

"$BIN" keygen --sector public \
    --common-name "$SP_COMMON_NAME" --organization-name "$SP_ORG_NAME" \
    --entity-id "$BASE_URL" --organization-identifier "$SP_ORG_ID" \
    --country IT --locality Roma --key-bits 2048 --days 365 \
    --out-key "$TMP/sp.key" --out-cert "$TMP/sp.crt" >"$TMP/keygen.log" 2>&1 ||
    { cat "$TMP/keygen.log" >&2; die "polis-gateway keygen failed"; }

mkdir -p "$TMP/txlog"
cat >"$TMP/overlay.toml" <<EOF
# Written by scripts/conformance.sh on top of config/conformance.toml.
data_dir = "$TMP/data"

[server]
listen = "127.0.0.1:$PORT"
public_url = "$BASE_URL"

[sp]
entity_id = "$BASE_URL"
key_file = "$TMP/sp.key"
cert_file = "$TMP/sp.crt"

[federation]
allow_test_idps = true
test_metadata_files = ["$TMP/idp.xml"]

[txlog]
dir = "$TMP/txlog"
EOF

say "starting polis-gateway on $BASE_URL"
"$BIN" serve --config "$BASE_CONFIG" --config "$TMP/overlay.toml" >"$TMP/gateway.log" 2>&1 &
GW_PID=$!

deadline=$((SECONDS + HEALTH_TIMEOUT))
until curl -fsS --max-time 2 "$BASE_URL/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$GW_PID" 2>/dev/null; then
        echo "---- gateway log ----" >&2; cat "$TMP/gateway.log" >&2
        die "polis-gateway exited before answering /healthz"
    fi
    if ((SECONDS >= deadline)); then
        echo "---- gateway log ----" >&2; cat "$TMP/gateway.log" >&2
        die "polis-gateway did not answer $BASE_URL/healthz within ${HEALTH_TIMEOUT} s"
    fi
    sleep 0.1
done
say "gateway healthy (pid $GW_PID)"

# ---- 4. the matrix -------------------------------------------------------------
IDP_Q="$("$VPY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$IDP_ENTITYID")"
expect_all=1
((${#extra_args[@]} == 0)) || expect_all=0

# Lists the failed checks of one JSON report; exit 1 on failures or an incomplete run.
# Report layout: {"test": {"sp": {CATEGORY: {CHECK_CLASS: [
#   {"test_id", "test", "value", "references", "method", "result": success|warning|failure}]}}}}
# with CATEGORY in metadata_{strict,extra}, authnrequest_{strict,extra}, response.
check_report() {
    "$VPY" - "$1" "$expect_all" <<'PY'
import json, sys
path, expect_all = sys.argv[1], sys.argv[2] == "1"
try:
    with open(path) as f:
        sp = json.load(f)["test"]["sp"]
except Exception as e:  # noqa: BLE001
    print(f"    no usable JSON report ({e})")
    sys.exit(1)
def short(text, limit):
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."
bad = 0
for cat, classes in sp.items():
    for results in classes.values():
        for r in results:
            if r.get("result") != "failure":
                continue
            bad += 1
            tid = r.get("test_id") or ""
            if isinstance(tid, list):
                tid = ",".join(str(t) for t in tid if t)
            tid = f"#{tid} " if tid else ""
            name = short(r.get("test"), 200)
            val = short(r.get("value"), 240)
            print(f"    FAIL [{cat}] {tid}{name}" + (f" :: {val}" if val else ""))
for stage in ("metadata", "authnrequest", "response"):
    if not any(k.startswith(stage) for k in sp):
        print(f"    INCOMPLETE: no {stage} results (an earlier stage aborted: see the log)")
        bad += 1
if expect_all and "response" in sp:
    from spid_sp_test.responses.settings import RESPONSE_TESTS
    ran = sum(len(v) for v in sp["response"].values())
    if ran < len(RESPONSE_TESTS):
        print(f"    INCOMPLETE: {ran} of {len(RESPONSE_TESTS)} Response tests ran (see the log)")
        bad += 1
sys.exit(1 if bad else 0)
PY
}

declare -A R_RC R_EXEC R_FAIL R_WARN R_RESULT
failed_runs=0
total_exec=0
total_fail=0
crashed_runs=0 # failed runs whose own count shows no failure (crash, incomplete)
for run in "${runs[@]}"; do
    binding="${run%%:*}"
    level="${run##*:}"
    name="$binding-L$level"
    report="$OUT/$name.json"
    log="$OUT/$name.log"
    dumps="$OUT/$name-html"
    rm -rf "$report" "$log" "$dumps"

    if ! kill -0 "$GW_PID" 2>/dev/null; then
        say "[$binding L$level] skipped: the gateway is no longer running"
        R_RC[$name]=-; R_EXEC[$name]=-; R_FAIL[$name]=-; R_WARN[$name]=-; R_RESULT[$name]=SKIPPED
        failed_runs=$((failed_runs + 1))
        crashed_runs=$((crashed_runs + 1))
        continue
    fi

    rc=0
    # In the background + wait, so that INT/TERM reach the cleanup trap at once.
    "$SST" \
        --metadata-url "$BASE_URL/metadata" \
        --authn-url "$BASE_URL/login?idp=$IDP_Q&level=$level&binding=$binding" \
        -pr spid-sp-public --extra -tr \
        -rf json -o "$report" \
        --response-html-dumps "$dumps" \
        "${extra_args[@]}" >"$log" 2>&1 &
    SST_PID=$!
    wait "$SST_PID" || rc=$?
    SST_PID=""

    summary="$(grep -E '^Spid QA: executed' "$log" | tail -n 1 || true)"
    exec_n=- fail_n=- warn_n=-
    if [[ "$summary" =~ executed\ ([0-9]+)\ tests,\ ([0-9]+)\ failed\.\ ([0-9]+)\ warnings ]]; then
        exec_n="${BASH_REMATCH[1]}" fail_n="${BASH_REMATCH[2]}" warn_n="${BASH_REMATCH[3]}"
        total_exec=$((total_exec + exec_n))
        total_fail=$((total_fail + fail_n))
    else
        summary="(no 'Spid QA' summary line: spid_sp_test crashed, see ${log#"$ROOT"/})"
    fi
    say "[$binding L$level] $summary"

    ok=1
    ((rc == 0)) || ok=0
    [[ "$fail_n" == 0 ]] || ok=0
    details="$(check_report "$report")" || ok=0
    if ((ok)); then
        R_RESULT[$name]=PASS
    else
        R_RESULT[$name]=FAIL
        failed_runs=$((failed_runs + 1))
        [[ "$fail_n" =~ ^[1-9] ]] || crashed_runs=$((crashed_runs + 1))
        [[ -z "$details" ]] || printf '%s\n' "$details"
        # spid_sp_test logs why a stage was aborted only as CRITICAL lines.
        grep -E '^CRITICAL' "$log" | head -n 5 | cut -c1-300 | sed 's/^/    /' || true
        if [[ ! -s "$report" ]]; then
            echo "    last lines of ${log#"$ROOT"/}:"
            tail -n 25 "$log" | sed 's/^/      /'
        fi
    fi
    R_RC[$name]=$rc; R_EXEC[$name]=$exec_n; R_FAIL[$name]=$fail_n; R_WARN[$name]=$warn_n
done

# ---- 5. summary ------------------------------------------------------------------
echo
say "summary (reports in ${OUT#"$ROOT"/}/)"
printf '  %-12s %4s %9s %7s %9s  %s\n' run exit executed failed warnings result
for run in "${runs[@]}"; do
    name="${run%%:*}-L${run##*:}"
    printf '  %-12s %4s %9s %7s %9s  %s\n' "$name" "${R_RC[$name]}" "${R_EXEC[$name]}" \
        "${R_FAIL[$name]}" "${R_WARN[$name]}" "${R_RESULT[$name]}"
done
if ((failed_runs > 0)); then
    echo "---- last 40 lines of the gateway log (full: ${OUT#"$ROOT"/}/gateway.log) ----"
    tail -n 40 "$TMP/gateway.log" || true
fi
# Checks passed/failed over all runs; a crashed, incomplete or skipped run counts as one failure.
echo "conformance: $((total_exec - total_fail)) passed, $((total_fail + crashed_runs)) failed"
if ((failed_runs > 0)); then
    say "FAILED: $failed_runs of ${#runs[@]} run(s) did not pass"
    exit 1
fi
say "all ${#runs[@]} run(s) passed"
