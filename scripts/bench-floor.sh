#!/usr/bin/env bash
# The controller at floor scale (issue 11): a release controller and farm-loadgen on this
# machine, at 1,000 / 5,000 / 10,000 printers (status at 1 Hz, one event per printer every
# 10 s, a reconnect storm half-way), then the offline storm (2,000 flapping beside 1,000 live).
# Figures go to BENCHMARKS.md ("Controller at floor scale").
#
#   scripts/bench-floor.sh                      # embedded broker, every size, then the offline storm
#   SIZES="1000 5000" scripts/bench-floor.sh    # some sizes only
#   BROKER=mosquitto scripts/bench-floor.sh     # Mosquitto (apt's) in front of the controller
#   BROKER=rmqtt scripts/bench-floor.sh         # standalone rmqtt (benches/rmqtt-broker) in front of it: the
#                                               # embedded engine, kept only to re-run the broker comparison
#   PERF=1 ...                                  # perf record the controller (perf.data beside)
#   OFFLINE=0 DURATION=60s STORM_AT=30s scripts/bench-floor.sh
#   SKIP_BUILD=1 ...                          # use the release binaries already in target/release
#   STORM_AT= ...                             # no reconnect storm
#   BIN=/tmp/before SKIP_BUILD=1 ...          # another build's binaries (before/after in one sitting)
#   CONTROLLER_TOML=$'[broker]\ncontroller_queue = 50000' TAG=-q50k ...  # appended to controller.toml, embedded only
#
# Beside the printers (BENCHMARKS.md "Order intake under load", "Dashboards on the stream",
# "Dispatch fan-out"): LOADGEN_ARGS adds farm-loadgen options to the size runs, TAG names
# their reports, PRISTINE=1 starts every run from the same freshly enrolled state:
#   PRISTINE=1 OFFLINE=0 SIZES=5000 STORM_AT= TAG=-orders LOADGEN_ARGS="--orders-per-s 2000" scripts/bench-floor.sh
#   PRISTINE=1 OFFLINE=0 SIZES=5000 STORM_AT= TAG=-dash50 LOADGEN_ARGS="--dashboards 50" scripts/bench-floor.sh
#   OFFLINE=0 SIZES=100 STORM_AT= TAG=-fanout LOADGEN_ARGS="--fanout-mb 20" scripts/bench-floor.sh
# A shop token for the orders is made with `farm-controller token add` before each serve.
#
# Each size keeps its controller state and enrolment file under $OUT (target/bench-floor), so
# a second run does not enrol thousands of printers again; FRESH=1 starts from nothing.
# Reports: $OUT/<broker>-<size>/report.{txt,json}; the controller's log beside them.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000 5000 10000"}
BROKER=${BROKER:-embedded}
DURATION=${DURATION:-60s}
STORM_AT=${STORM_AT-30s}
OFFLINE=${OFFLINE:-1}
OUT=${OUT:-target/bench-floor}
HTTP_PORT=${HTTP_PORT:-18080}
MQTT_PORT=${MQTT_PORT:-11883}

# 10,000 printers are 10,000 sockets in the controller (or broker) and in the load generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || true

[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release --locked -p farm-controller -p farm-loadgen
# BIN=dir with farm-controller and farm-loadgen: another build (e.g. the one before a change).
BIN=${BIN:-$PWD/target/release}
# rmqtt lives outside the workspace (its own Cargo.lock) so that CI never builds it.
RMQTT=$PWD/target/rmqtt-broker/release/rmqtt-bench-broker
if [[ $BROKER == rmqtt && ${SKIP_BUILD:-0} != 1 ]]; then
    (cd benches/rmqtt-broker && CARGO_TARGET_DIR=../../target/rmqtt-broker cargo build --release --locked)
fi
mkdir -p "$OUT"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# CPU seconds (user + system) a process has used so far.
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

wait_for() { # what, command...
    local what=$1
    shift
    for _ in $(seq 600); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    return 1
}

# run NAME LIVE FLAPPING [loadgen options...]
run() {
    local name=$1 live=$2 flapping=$3
    shift 3
    local dir=$OUT/$BROKER-$name
    [[ ${FRESH:-0} == 1 ]] && rm -rf "$dir"
    mkdir -p "$dir"
    local dir_abs
    dir_abs=$(cd "$dir" && pwd)
    local report=$dir/report${TAG:-}
    cat >"$dir/controller.toml" <<EOF
state_dir = "$dir_abs/state"
http_listen = "127.0.0.1:$HTTP_PORT"
mqtt_listen = "127.0.0.1:$MQTT_PORT"
status_stale_s = 30
${CONTROLLER_TOML:-}
EOF
    local mqpid= mq=$dir_abs/$BROKER
    if [[ $BROKER == rmqtt ]]; then
        mkdir -p "$mq"
        printf 'controller:controller-pass\n' >"$mq/passwd.plain"
        "$RMQTT" "127.0.0.1:$MQTT_PORT" "$mq/passwd.plain" controller >"$mq/rmqtt.log" 2>&1 &
        mqpid=$!
        PIDS+=("$mqpid")
        wait_for rmqtt bash -c "exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT"
        printf 'broker_url = "mqtt://controller:controller-pass@127.0.0.1:%s"\n' "$MQTT_PORT" >>"$dir/controller.toml"
    fi
    if [[ $BROKER == mosquitto ]]; then
        mkdir -p "$mq"
        cat >"$mq/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous false
password_file $mq/passwd
listener $MQTT_PORT 127.0.0.1
persistence false
max_connections -1
max_packet_size 1048576
set_tcp_nodelay true
log_dest file $mq/mosquitto.log
log_type error
log_type warning
user ${USER:-root}
EOF
        printf 'controller:controller-pass\n' >"$mq/passwd.plain"
        cp "$mq/passwd.plain" "$mq/passwd"
        mosquitto_passwd -U "$mq/passwd"
        /usr/sbin/mosquitto -c "$mq/mosquitto.conf" &
        mqpid=$!
        PIDS+=("$mqpid")
        wait_for mosquitto bash -c "exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT"
        printf 'broker_url = "mqtt://controller:controller-pass@127.0.0.1:%s"\n' "$MQTT_PORT" >>"$dir/controller.toml"
    fi
    local common=(--controller "http://127.0.0.1:$HTTP_PORT" --broker "127.0.0.1:$MQTT_PORT"
        --admin-token-file "$dir/state/admin-token" --printers "$live" --flapping "$flapping"
        --enrolment "$dir/enrolment.json" --enrol-concurrency 32)
    local pid
    serve() {
        RUST_LOG=warn "$BIN/farm-controller" serve --config "$dir/controller.toml" >>"$dir/controller.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_for "the controller" curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/health"
        wait_for "the admin token" test -s "$dir/state/admin-token"
    }
    if [[ ${PRISTINE:-0} == 1 ]]; then
        if [[ ! -d $dir/state.base ]]; then
            rm -rf "$dir/state" "$dir/enrolment.json"
            serve
            "$BIN/farm-loadgen" "${common[@]}" --enrol-only
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            cp -a "$dir/state" "$dir/state.base"
        fi
        rm -rf "$dir/state"
        cp -a "$dir/state.base" "$dir/state"
    fi
    mkdir -p "$dir/state"
    "$BIN/farm-controller" token add --role shop --name loadgen --config "$dir/controller.toml" >"$dir/shop-token"
    : >"$dir/controller.log"
    serve
    if [[ -n $mqpid ]]; then
        # The external broker learns the printers' logins from the enrolment file, then reloads.
        "$BIN/farm-loadgen" "${common[@]}" --enrol-only
        python3 - "$dir/enrolment.json" >>"$mq/passwd.plain" <<'EOF'
import json, sys
for p in json.load(open(sys.argv[1]))["printers"]:
    print(f'{p["id"]}:{p["token"]}')
EOF
        if [[ $BROKER == mosquitto ]]; then
            cp "$mq/passwd.plain" "$mq/passwd"
            mosquitto_passwd -U "$mq/passwd"
        fi
        kill -HUP "$mqpid"
        sleep 1
    fi
    local broker_cpu0= t0
    [[ -z $mqpid ]] || broker_cpu0=$(cpu_s "$mqpid")
    t0=$(date +%s.%N)
    echo "== $BROKER $name: $live live + $flapping flapping; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    local perfpid=
    if [[ ${PERF:-0} == 1 ]]; then # where the controller's CPU goes, per thread
        perf record -F 199 -g -p "$pid" -o "$dir/perf.data" >/dev/null 2>&1 &
        perfpid=$!
    fi
    # shellcheck disable=SC2086 # LOADGEN_ARGS is a list of options
    "$BIN/farm-loadgen" "${common[@]}" --controller-pid "$pid" --json "$report.json" \
        --shop-token-file "$dir/shop-token" "$@" ${LOADGEN_ARGS:-} |
        tee "$report.txt"
    [[ -z $perfpid ]] || { kill -INT "$perfpid"; wait "$perfpid" || true; }
    if [[ -n $mqpid ]]; then # the external broker's share, over the same run
        awk -v c0="$broker_cpu0" -v c1="$(cpu_s "$mqpid")" -v t0="$t0" -v t1="$(date +%s.%N)" \
            -v rss="$(awk '/VmRSS/ { print $2 }' "/proc/$mqpid/status")" \
            -v hwm="$(awk '/VmHWM/ { print $2 }' "/proc/$mqpid/status")" -v b="$BROKER" \
            'BEGIN { printf "broker (%s): CPU %.0f %% of a core, RSS %d MB (peak %d MB)\n", b, 100 * (c1 - c0) / (t1 - t0), rss / 1024, hwm / 1024 }' |
            tee -a "$report.txt"
    fi
    # The controller's own counters: what it received and dropped, by reason.
    curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" >"$dir/metrics.txt" || true
    grep -E '^farm_mqtt_(received|dropped)_total' "$dir/metrics.txt" | tee -a "$report.txt" || true
    echo "controller warnings/errors logged: $(grep -c -E 'WARN|ERROR' "$dir/controller.log" || true)" |
        tee -a "$report.txt"
    if ! kill -0 "$pid" 2>/dev/null; then echo "the controller died: see $dir/controller.log" | tee -a "$report.txt"; fi
    cleanup
    PIDS=()
    wait 2>/dev/null || true
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
for n in $SIZES; do
    storm=()
    [[ -n $STORM_AT ]] && storm=(--storm-at "$STORM_AT" --settle 120s)
    run "$n" "$n" 0 --duration "$DURATION" "${storm[@]}"
done
if [[ $OFFLINE == 1 ]]; then
    # Live printers' latency without, then with, 2,000 flapping beside them (no storm).
    run offline-base 1000 0 --duration "$DURATION"
    run offline-storm 1000 2000 --duration "$DURATION" --flap-period 2s
fi
