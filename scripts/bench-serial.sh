#!/usr/bin/env bash
# Serial streaming benchmark (see scripts/bench-serial.py): builds the release binaries, makes
# sure the OctoPrint peer is installed, and runs the A/B comparison and the footprint sample.
#   scripts/bench-serial.sh [--rounds 5] [--moves 20000] [--footprint 30]
set -euo pipefail
cd "$(dirname "$0")/.."
peers="${FARM_PEERS_DIR:-$PWD/.peers}"
[ -x "$peers/octoprint/venv/bin/python" ] || scripts/install-peers.sh
cargo build --release -p farm-agent -p farm-controller --bins
exec "$peers/octoprint/venv/bin/python" scripts/bench-serial.py "$@"
