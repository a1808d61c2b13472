#!/usr/bin/env bash
# Installs the real peers the test suite runs against, idempotently:
#   Debian: mosquitto (external-broker tests), chromium (dashboard test)
#   PyPI:   OctoPrint 1.11.8 (its REST/push API and its Virtual Printer, also bridged to a pty
#           as a serial printer) and Moonraker 0.11.0, each in its own venv under .peers/
#   PyPI:   pybgcode-jneilliii 0.2.1 (libbgcode's Python binding, a cp311 manylinux wheel: the
#           reference .gcode <-> .bgcode converter protocol/tests/bgcode.rs checks us against)
#
#   scripts/install-peers.sh          # install what is missing; print where it is
#
# A venv is reused when its marker file names the same version; delete .peers/ to start over.
# Override the location with FARM_PEERS_DIR (the tests read the same variable).
set -euo pipefail
cd "$(dirname "$0")/.."

OCTOPRINT_VERSION=1.11.8
MOONRAKER_VERSION=0.11.0
PYBGCODE_VERSION=0.2.1
PEERS="${FARM_PEERS_DIR:-$PWD/.peers}"

say() { printf '== %s\n' "$*"; }

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# venv NAME PACKAGE==VERSION [EXTRA...]: a venv at $PEERS/NAME/venv holding exactly that version.
venv() {
  local name=$1 spec=$2; shift 2
  local dir="$PEERS/$name/venv" marker="$PEERS/$name/venv/.farm-installed"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$spec $*" ] && [ -x "$dir/bin/python" ]; then
    say "$name: $spec already in $dir"
    return
  fi
  say "$name: installing $spec into $dir"
  rm -rf "$dir"
  mkdir -p "$PEERS/$name"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$spec" "$@"
  echo "$spec $*" >"$marker"
}

venv octoprint "octoprint==$OCTOPRINT_VERSION"
venv moonraker "moonraker==$MOONRAKER_VERSION"
venv bgcode "pybgcode-jneilliii==$PYBGCODE_VERSION"
say "peers ready in $PEERS"
