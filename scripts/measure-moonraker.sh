#!/usr/bin/env bash
# Footprint of the agent while it prints through the Moonraker back end at 1 Hz status:
# RSS and CPU % of one core over 20 s of a replayed real Klipper print (capture
# b-print-complete, played in real time), beside a real Moonraker 0.11's idle RSS.
# Release build, as deployed. Prints one FOOTPRINT line.
#
#   scripts/measure-moonraker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export FARM_PEERS_DIR="${FARM_PEERS_DIR:-$PWD/.peers}"
[ -x "$FARM_PEERS_DIR/moonraker/venv/bin/python" ] || scripts/install-peers.sh
cargo build --release -p farm-agent -p farm-controller --bins
cargo test --release -p farm-e2e --test moonraker_footprint -- --ignored --exact footprint_while_printing --nocapture 2>&1 \
  | grep -E '^FOOTPRINT|panicked|^error' || true
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -srm)"
