#!/usr/bin/env bash
# Re-download the third-party assets the pages ship and copy what we serve into
# static/vendor/ (see static/vendor/README.md). Pinned: change a version or commit
# below, run this script, then update the paths in src/httpkit.rs and the templates.
#
#   scripts/refresh-vendor-assets.sh
#
# Needs npm (for `npm pack`, the npm registry) and curl (raw files from GitHub).
set -euo pipefail

BI_VERSION=2.18.3
SPID_BUTTON_COMMIT=d6e92e78c185eb6cb5f97d0f89fd4d0becfb1082   # italia/spid-sp-access-button
CIE_GRAPHICS_COMMIT=3b34d1384e75b8184bb67f00b129706fc93d0e51   # italia/cie-graphics
EIDAS_NODE_COMMIT=52d78de683ffb4cc8261a97d33ca221386a40cd1     # AgID/eidas-italian-node

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/static/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Bootstrap Italia: the minified CSS and the Titillium Web fonts it uses (woff2).
(cd "$tmp" && npm pack --silent "bootstrap-italia@$BI_VERSION" >/dev/null && tar xzf "bootstrap-italia-$BI_VERSION.tgz")
bi="$out/bootstrap-italia/$BI_VERSION"
rm -rf "$out/bootstrap-italia"
mkdir -p "$bi/css" "$bi/fonts/Titillium_Web"
cp "$tmp/package/dist/css/bootstrap-italia.min.css" "$bi/css/"
cp "$tmp/package/LICENSE" "$bi/LICENSE"
cp "$tmp/package/dist/fonts/Titillium_Web/OFL.txt" "$bi/fonts/Titillium_Web/OFL.txt"
for w in 300 regular 600 700 italic; do
    cp "$tmp/package/dist/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-$w.woff2" "$bi/fonts/Titillium_Web/"
done
# The source map comment points at a file we do not ship.
sed -i '/sourceMappingURL/d' "$bi/css/bootstrap-italia.min.css"

fetch() { # repo commit path dest
    curl -fsSL --retry 3 -o "$4" "https://raw.githubusercontent.com/$1/$2/$3"
}

# SPID: the official button's mark and the IdP logos (SVG).
spid="$out/spid-sp-access-button"
rm -rf "$spid" && mkdir -p "$spid/img"
fetch italia/spid-sp-access-button "$SPID_BUTTON_COMMIT" LICENSE.md "$spid/LICENSE.md"
fetch italia/spid-sp-access-button "$SPID_BUTTON_COMMIT" src/production/img/spid-ico-circle-bb.svg "$spid/img/spid-ico-circle-bb.svg"
for idp in arubaid etnaid infocamereid infocertid intesaid intesigroupspid lepidaid namirialid posteid sielteid spiditalia teamsystemid timid; do
    fetch italia/spid-sp-access-button "$SPID_BUTTON_COMMIT" "src/production/img/spid-idp-$idp.svg" "$spid/img/spid-idp-$idp.svg"
done

# CIE: the official «Entra con CIE» button (no licence file in the repository: see README).
cie="$out/cie-graphics"
rm -rf "$cie" && mkdir -p "$cie"
fetch italia/cie-graphics "$CIE_GRAPHICS_COMMIT" SVG/entra_con_cie.svg "$cie/entra_con_cie.svg"
fetch italia/cie-graphics "$CIE_GRAPHICS_COMMIT" README.md "$cie/README.md"

# eIDAS: AgID's «Login with eIDAS» button mark (EUPL 1.2).
eidas="$out/eidas-button"
rm -rf "$eidas" && mkdir -p "$eidas"
fetch AgID/eidas-italian-node "$EIDAS_NODE_COMMIT" LICENSE "$eidas/LICENSE"
fetch AgID/eidas-italian-node "$EIDAS_NODE_COMMIT" eidas-button/src/production/img/ficep-it-eidas-ybw.svg "$eidas/ficep-it-eidas-ybw.svg"

echo "refresh-vendor-assets: done; review 'git status static/vendor' and update src/httpkit.rs if names changed"
