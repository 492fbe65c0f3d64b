#!/usr/bin/env bash
# Install the Debian packages polis-gateway needs, and only the missing ones.
#
#   scripts/install-deps.sh          build set (compile the gateway)
#   scripts/install-deps.sh --test   build set + what the tests and the
#                                    spid-sp-test conformance run need
#
# Idempotent: a package counts as present when
#   dpkg-query -W -f='${Status}' PKG  prints "install ok installed";
# when all are present it does nothing (no `apt-get update`).
# Not root: uses sudo. No apt (not Debian/Ubuntu): fails listing the packages.
set -euo pipefail

BUILD_PKGS=(build-essential pkg-config libssl-dev libxml2-dev libxmlsec1-dev libclang-dev)
TEST_PKGS=(redis-server postgresql xmlsec1 python3-venv python3-aiosmtpd poppler-utils openssl curl chromium nodejs npm)

usage() {
    echo "usage: $0 [--test]"
    echo "  build packages: ${BUILD_PKGS[*]}"
    echo "  test packages (--test): ${TEST_PKGS[*]}"
}

want=("${BUILD_PKGS[@]}")
for arg in "$@"; do
    case "$arg" in
        --test) want+=("${TEST_PKGS[@]}") ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install-deps: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: apt-get/dpkg-query not found: this script supports Debian/Ubuntu only." >&2
    echo "install-deps: install the equivalents of these Debian 12 packages by hand:" >&2
    echo "    ${want[*]}" >&2
    exit 1
fi

# Packages a machine may already have from elsewhere (NodeSource's `nodejs` bundles npm
# and conflicts with Debian's `npm`): the command on PATH is enough.
declare -A BY_COMMAND=([nodejs]=node [npm]=npm)

missing=()
for pkg in "${want[@]}"; do
    if [[ -n "${BY_COMMAND[$pkg]:-}" ]] && command -v "${BY_COMMAND[$pkg]}" >/dev/null 2>&1; then
        continue
    fi
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#want[@]} packages already installed"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: not root and sudo is not available; as root run:" >&2
        echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"

# Check again: apt can exit 0 with a package held back or half-configured.
still=()
for pkg in "${missing[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || still+=("$pkg")
done
if ((${#still[@]} > 0)); then
    echo "install-deps: still not installed after apt-get: ${still[*]}" >&2
    exit 1
fi
echo "install-deps: done"
