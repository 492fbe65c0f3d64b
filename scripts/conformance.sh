#!/usr/bin/env bash
# SPID, CIE and FICEP conformance: runs AgID's spid-sp-test (PyPI, pinned) against a
# real `polis-gateway serve` on a free loopback port: the SPID profile for every
# binding x level, the `cie-sp-public` profile on /metadata/cie and the
# `ficep-eidas-sp` profile on the SPID metadata (AttributeConsumingService 99/100).
#
#   scripts/conformance.sh                      all runs (six SPID, cie:metadata, ficep:metadata)
#   CONFORMANCE_RUNS="redirect:1 post:2" scripts/conformance.sh
#   CONFORMANCE_RUNS="cie:metadata ficep:metadata" scripts/conformance.sh
#
# Run entries: redirect:L / post:L (SPID login at level L: metadata, AuthnRequest and
# Response tests); cie:metadata, ficep:metadata (the metadata tests of those
# profiles); cie:BINDING:L, ficep:BINDING:L (login runs of those profiles against the
# fake IdP under its own entityID; they need CIE_IDP_OVERLAY / FICEP_IDP_OVERLAY).
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
RUNS="${CONFORMANCE_RUNS:-redirect:1 redirect:2 redirect:3 post:1 post:2 post:3 cie:metadata ficep:metadata cie:post:2 ficep:redirect:2}"
# spid-sp-test's fake IdP under other entityIDs, trusted as a CIE / FICEP IdP for the
# cie:BINDING:L and ficep:BINDING:L runs (same key; each its own metadata file).
CIE_IDP_ENTITYID="${CIE_IDP_ENTITYID:-https://localhost:8444}"
FICEP_IDP_ENTITYID="${FICEP_IDP_ENTITYID:-https://localhost:8445}"
# The gateway config (TOML, appended to the overlay) that trusts $TMP/idp-cie.xml as a
# CIE IdP and $TMP/idp-ficep.xml as FICEP (AttributeConsumingServiceIndex 99); @IDP_CIE@
# and @IDP_FICEP@ become those paths, a backslash-n a new line.
CIE_IDP_OVERLAY="${CIE_IDP_OVERLAY:-[[federation.idps]]\nfile = \"@IDP_CIE@\"\nprofile = \"cie\"\ntest = true}"
FICEP_IDP_OVERLAY="${FICEP_IDP_OVERLAY:-[[federation.idps]]\nfile = \"@IDP_FICEP@\"\nprofile = \"ficep\"\ntest = true}"
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
need_cie_idp=0
need_ficep_idp=0
for r in $RUNS; do
    [[ "$r" =~ ^((cie|ficep):)?(redirect|post):[123]$|^(cie|ficep):metadata$ ]] ||
        die "bad CONFORMANCE_RUNS entry '$r' (want [cie:|ficep:]binding:level, binding redirect|post, level 1|2|3; or cie:metadata, ficep:metadata)"
    [[ ! "$r" =~ ^cie:(redirect|post) ]] || need_cie_idp=1
    [[ ! "$r" =~ ^ficep:(redirect|post) ]] || need_ficep_idp=1
    runs+=("$r")
done
((need_cie_idp == 0)) || [[ -n "$CIE_IDP_OVERLAY" ]] ||
    die "cie login runs need CIE_IDP_OVERLAY (the gateway config of a CIE-profile IdP)"
((need_ficep_idp == 0)) || [[ -n "$FICEP_IDP_OVERLAY" ]] ||
    die "ficep login runs need FICEP_IDP_OVERLAY (the gateway config of the FICEP IdP)"
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
    for f in gateway.log overlay.toml idp.xml idp-cie.xml idp-ficep.xml; do
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
# The same fake IdP under the CIE / FICEP entityIDs, only when a login run needs it.
idp_overlay=""
if ((need_cie_idp)); then
    IDP_ENTITYID="$CIE_IDP_ENTITYID" "$SST" --idp-metadata >"$TMP/idp-cie.xml" 2>>"$TMP/idp-metadata.err" ||
        die "spid_sp_test --idp-metadata (CIE entityID) failed"
    idp_overlay+="$(printf '%b' "${CIE_IDP_OVERLAY//@IDP_CIE@/$TMP/idp-cie.xml}")"$'\n'
fi
if ((need_ficep_idp)); then
    IDP_ENTITYID="$FICEP_IDP_ENTITYID" "$SST" --idp-metadata >"$TMP/idp-ficep.xml" 2>>"$TMP/idp-metadata.err" ||
        die "spid_sp_test --idp-metadata (FICEP entityID) failed"
    idp_overlay+="$(printf '%b' "${FICEP_IDP_OVERLAY//@IDP_FICEP@/$TMP/idp-ficep.xml}")"$'\n'
fi

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
[[ -z "$idp_overlay" ]] || printf '\n%s' "$idp_overlay" >>"$TMP/overlay.toml"

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

# ---- 4. the runs -----------------------------------------------------------------
q() { "$VPY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
IDP_Q="$(q "$IDP_ENTITYID")"
expect_all=1
((${#extra_args[@]} == 0)) || expect_all=0

# Lists the failed checks of one JSON report; exit 1 on failures or an incomplete run.
# Report layout: {"test": {"sp": {CATEGORY: {CHECK_CLASS: [
#   {"test_id", "test", "value", "references", "method", "result": success|warning|failure}]}}}}
# with CATEGORY in metadata_{strict,extra}, authnrequest_{strict,extra}, response.
# check_report REPORT STAGES SKIPPED: STAGES the categories the run must have
# ("metadata" or "metadata authnrequest response"); SKIPPED how many Response tests
# the profile leaves out (cie-sp-public: 70 and 71, the Issuer Format ones).
check_report() {
    "$VPY" - "$1" "$expect_all" "$2" "$3" <<'PY'
import json, sys
path, expect_all = sys.argv[1], sys.argv[2] == "1"
stages, skipped = sys.argv[3].split(), int(sys.argv[4])
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
for stage in stages:
    if not any(k.startswith(stage) for k in sp):
        print(f"    INCOMPLETE: no {stage} results (an earlier stage aborted: see the log)")
        bad += 1
if expect_all and "response" in stages and "response" in sp:
    from spid_sp_test.responses.settings import RESPONSE_TESTS
    ran = sum(len(v) for v in sp["response"].values())
    want = len(RESPONSE_TESTS) - skipped
    if ran < want:
        print(f"    INCOMPLETE: {ran} of {want} Response tests ran (see the log)")
        bad += 1
sys.exit(1 if bad else 0)
PY
}

declare -A R_RC R_EXEC R_FAIL R_WARN R_RESULT R_SECS
failed_runs=0
total_exec=0
total_fail=0
crashed_runs=0 # failed runs whose own count shows no failure (crash, incomplete)

# run_sst NAME STAGES SKIPPED SPID_SP_TEST_ARGS...: one spid_sp_test run against the
# gateway, its report in $OUT/NAME.json, judged by check_report, kept for the summary.
run_sst() {
    local name="$1" stages="$2" skipped="$3"
    shift 3
    local report="$OUT/$name.json" log="$OUT/$name.log" t0=$SECONDS
    rm -rf "$report" "$log" "$OUT/$name-html"

    if ! kill -0 "$GW_PID" 2>/dev/null; then
        say "[$name] skipped: the gateway is no longer running"
        R_RC[$name]=-; R_EXEC[$name]=-; R_FAIL[$name]=-; R_WARN[$name]=-; R_SECS[$name]=-
        R_RESULT[$name]=SKIPPED
        failed_runs=$((failed_runs + 1))
        crashed_runs=$((crashed_runs + 1))
        return
    fi

    local rc=0
    # In the background + wait, so that INT/TERM reach the cleanup trap at once.
    "$SST" "$@" -rf json -o "$report" >"$log" 2>&1 &
    SST_PID=$!
    wait "$SST_PID" || rc=$?
    SST_PID=""

    local summary exec_n=- fail_n=- warn_n=-
    summary="$(grep -E '^Spid QA: executed' "$log" | tail -n 1 || true)"
    if [[ "$summary" =~ executed\ ([0-9]+)\ tests,\ ([0-9]+)\ failed\.\ ([0-9]+)\ warnings ]]; then
        exec_n="${BASH_REMATCH[1]}" fail_n="${BASH_REMATCH[2]}" warn_n="${BASH_REMATCH[3]}"
        total_exec=$((total_exec + exec_n))
        total_fail=$((total_fail + fail_n))
    else
        summary="(no 'Spid QA' summary line: spid_sp_test crashed, see ${log#"$ROOT"/})"
    fi
    R_SECS[$name]=$((SECONDS - t0))
    say "[$name] $summary (${R_SECS[$name]} s)"

    local ok=1 details
    ((rc == 0)) || ok=0
    [[ "$fail_n" == 0 ]] || ok=0
    details="$(check_report "$report" "$stages" "$skipped")" || ok=0
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
}

names=()
LOGIN="metadata authnrequest response"
for run in "${runs[@]}"; do
    case "$run" in
    cie:metadata)
        names+=(cie-metadata)
        run_sst cie-metadata metadata 0 \
            --metadata-url "$BASE_URL/metadata/cie" -pr cie-sp-public --extra
        ;;
    ficep:metadata)
        names+=(ficep-metadata)
        run_sst ficep-metadata metadata 0 \
            --metadata-url "$BASE_URL/metadata" -pr ficep-eidas-sp --extra
        ;;
    cie:*)
        # The CIE metadata, the gateway's CIE AuthnRequest to the fake IdP under its CIE
        # entityID, the Responses without tests 70 and 71 (Issuer Format).
        b="${run#cie:}"; binding="${b%%:*}"; level="${b##*:}"; name="cie-$binding-L$level"
        names+=("$name")
        IDP_ENTITYID="$CIE_IDP_ENTITYID" run_sst "$name" "$LOGIN" 2 \
            --metadata-url "$BASE_URL/metadata/cie" \
            --authn-url "$BASE_URL/login?idp=$(q "$CIE_IDP_ENTITYID")&level=$level&binding=$binding" \
            -pr cie-sp-public --extra -tr --response-html-dumps "$OUT/$name-html" "${extra_args[@]}"
        ;;
    ficep:*)
        b="${run#ficep:}"; binding="${b%%:*}"; level="${b##*:}"; name="ficep-$binding-L$level"
        names+=("$name")
        # FICEP delivers the eIDAS PersonIdentifier in spidCode (CC/CC/id), not a SPID
        # code: the fake IdP's user gets one (the rest of its attributes unchanged).
        if [[ ! -f "$TMP/ficep-attrs.json" ]]; then
            "$SST" -pas 2>/dev/null | "$VPY" -c 'import json, sys; a = json.load(sys.stdin); a["spidCode"] = "ES/IT/02635542Y"; json.dump(a, sys.stdout)' >"$TMP/ficep-attrs.json" ||
                die "cannot write the FICEP test person's attributes"
        fi
        IDP_ENTITYID="$FICEP_IDP_ENTITYID" run_sst "$name" "$LOGIN" 0 \
            -aj "$TMP/ficep-attrs.json" \
            --metadata-url "$BASE_URL/metadata" \
            --authn-url "$BASE_URL/login?idp=$(q "$FICEP_IDP_ENTITYID")&level=$level&binding=$binding" \
            -pr ficep-eidas-sp --extra -tr --response-html-dumps "$OUT/$name-html" "${extra_args[@]}"
        ;;
    *)
        binding="${run%%:*}"; level="${run##*:}"; name="$binding-L$level"
        names+=("$name")
        run_sst "$name" "$LOGIN" 0 \
            --metadata-url "$BASE_URL/metadata" \
            --authn-url "$BASE_URL/login?idp=$IDP_Q&level=$level&binding=$binding" \
            -pr spid-sp-public --extra -tr --response-html-dumps "$OUT/$name-html" "${extra_args[@]}"
        ;;
    esac
done

# ---- 5. summary ------------------------------------------------------------------
echo
say "summary (reports in ${OUT#"$ROOT"/}/)"
printf '  %-16s %4s %9s %7s %9s %5s  %s\n' run exit executed failed warnings secs result
for name in "${names[@]}"; do
    printf '  %-16s %4s %9s %7s %9s %5s  %s\n' "$name" "${R_RC[$name]}" "${R_EXEC[$name]}" \
        "${R_FAIL[$name]}" "${R_WARN[$name]}" "${R_SECS[$name]}" "${R_RESULT[$name]}"
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
