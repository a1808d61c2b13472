#!/usr/bin/env bash
# Order intake throughput and latency with durable commits, measured with wrk.
#   scripts/bench-orders.sh [duration_s] [connections]
# Builds the release controller, starts it on a fresh state dir (no printers: this measures
# intake, not printing), uploads one file with a shop token, then runs wrk with
# scripts/bench-orders.lua (a unique Idempotency-Key per request). Needs `wrk` (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-15}
CONNS=${2:-64}
cargo build --release -p farm-controller --bin farm-controller >/dev/null
BIN=target/release/farm-controller
DIR=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
PORT=$((20000 + RANDOM % 20000))
cat >"$DIR/c.toml" <<TOML
state_dir = "$DIR/state"
http_listen = "127.0.0.1:$PORT"
mqtt_listen = "127.0.0.1:$((PORT + 1))"
TOML
export TOKEN=$($BIN token add --role shop --name bench --config "$DIR/c.toml")
RUST_LOG=warn $BIN serve --config "$DIR/c.toml" >"$DIR/log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null && break; sleep 0.1; done
export SHA=$(curl -sf -H "Authorization: Bearer $TOKEN" --data-binary @tests/data/short-print.gcode \
  "http://127.0.0.1:$PORT/api/v1/files?name=clip.gcode" | sed 's/.*"sha256":"\([0-9a-f]*\)".*/\1/')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s scripts/bench-orders.lua "http://127.0.0.1:$PORT"
echo "orders stored: $(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/orders?limit=1" >/dev/null && echo ok)"
