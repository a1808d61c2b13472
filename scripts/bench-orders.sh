#!/usr/bin/env bash
# Order intake throughput and latency with durable commits, measured with wrk.
#   scripts/bench-orders.sh [duration_s] [connections] [printers]
# Builds the release controller, starts it on a fresh state dir, uploads one file with a shop
# token, then runs wrk with scripts/bench-orders.lua (a unique Idempotency-Key per request).
# printers = 0 (default): no printers, the queue only grows. printers = N: N printers enrolled
# with `farm-controller printer add` (offline: this measures intake, not printing), even ones
# declaring PLA black on a 0.4 mm nozzle (what the orders ask for), odd ones PETG white, so
# every order is checked against all of them and the plan has real candidates.
# Needs `wrk` (apt-get install wrk). BIN=path overrides the controller binary (to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-15}
CONNS=${2:-64}
PRINTERS=${3:-0}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p farm-controller --bin farm-controller >/dev/null
  BIN=target/release/farm-controller
fi
DIR=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
PORT=$((20000 + RANDOM % 20000))
cat >"$DIR/c.toml" <<TOML
state_dir = "$DIR/state"
http_listen = "127.0.0.1:$PORT"
mqtt_listen = "127.0.0.1:$((PORT + 1))"
TOML
export TOKEN=$($BIN token add --role shop --name bench --config "$DIR/c.toml")
ADMIN=$($BIN token add --role admin --name bench-admin --config "$DIR/c.toml")
for i in $(seq "$PRINTERS"); do
  $BIN printer add "p-$i" --config "$DIR/c.toml" >/dev/null
done
RUST_LOG=warn $BIN serve --config "$DIR/c.toml" >"$DIR/log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/v1/health" >/dev/null && break; sleep 0.1; done
export SHA=$(curl -sf -H "Authorization: Bearer $TOKEN" --data-binary @tests/data/short-print.gcode \
  "http://127.0.0.1:$PORT/api/v1/files?name=clip.gcode" | sed 's/.*"sha256":"\([0-9a-f]*\)".*/\1/')
for i in $(seq "$PRINTERS"); do
  if [ $((i % 2)) -eq 0 ]; then m=PLA c=black; else m=PETG c=white; fi
  curl -sf -X PATCH -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d "{\"tools\":[{\"nozzle_mm\":0.4,\"material\":\"$m\",\"colour\":\"$c\"}],\"build_volume_mm\":[250,210,210]}" \
    "http://127.0.0.1:$PORT/api/v1/printers/p-$i/profile" >/dev/null
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load average: $(cut -d' ' -f1-3 /proc/loadavg); printers: $PRINTERS"
T0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s scripts/bench-orders.lua "http://127.0.0.1:$PORT"
T1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
echo "controller CPU during the run: $(( (T1 - T0) * 100 / $(getconf CLK_TCK) / DUR ))% of one core; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "last plan: $(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/api/v1/queue" |
  grep -o '"plan_took_us":[0-9]*\|"planned_jobs":[0-9]*' | tr '\n' ' ')"
echo "orders stored: $(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/orders?limit=1" >/dev/null && echo ok)"
