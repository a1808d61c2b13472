#!/usr/bin/env bash
# Our analyzer against OctoPrint's own (octoprint.util.gcodeInterpreter), same files, same run.
#   scripts/compare-analyzer.sh [FILE.gcode ...]   (default: the largest real slicer fixtures)
# Installs OctoPrint from PyPI into .peers/octoprint-venv on first use; builds farm-agent (release).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.peers/octoprint-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "octoprint==1.11.*"
fi
cargo build -q --release -p farm-agent
cargo build -q --release -p farm-protocol --example analyze_speed
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for f in slic3r-1.2.9-benchy-4extruder-m83 bambustudio-01.08.04-eline-4filament-m83 prusaslicer-2.6.1-benchy-m83; do
    zcat "protocol/tests/data/slicers/$f.gcode.gz" > "$tmp/$f.gcode"; files+=("$tmp/$f.gcode")
  done
fi
printf '%-45s %7s %10s %8s %14s %8s %8s %9s %9s %8s %9s %8s\n' file MB OctoPrint analyzer "(ratio)" "whole CLI" "(ratio)" "OP cpu" "CLI cpu" "(ratio)" "pass cpu" "(ratio)"
for f in "${files[@]}"; do
  ours=$(target/release/farm-agent analyze --json "$f" >/dev/null; \
         best=0; for i in 1 2 3; do
           t0=$(date +%s.%N); target/release/farm-agent analyze --json "$f" >/dev/null; t1=$(date +%s.%N)
           best=$(python3 -c "print(max($best, $(stat -c %s "$f")/1e6/($t1-$t0)))"); done; echo "$best")
  # The analysis pass alone, as the CLI's table reports it ("analysed in … (N MB/s)").
  core=$(for i in 1 2 3 4 5; do target/release/farm-agent analyze "$f" | sed -n 's/.*(\([0-9]*\) MB\/s)/\1/p'; done | sort -n | tail -1)
  # CPU time as well as wall time: on a shared, loaded machine wall time mostly measures the
  # other processes; CPU seconds are what one core spent on the file (best of 5 / 2).
  ours_cpu=$(python3 - "$f" <<'PY'
import resource, subprocess, sys
best = 1e9
for _ in range(5):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["target/release/farm-agent", "analyze", "--json", sys.argv[1]], stdout=subprocess.DEVNULL, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    best = min(best, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
print(best)
PY
)
  # The analysis pass alone in CPU time: 10 analyses in one process, from memory.
  core_cpu=$(python3 - "$f" <<'PY'
import os, resource, subprocess, sys
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
subprocess.run(["target/release/examples/analyze_speed", sys.argv[1], "10"], stdout=subprocess.DEVNULL, check=True)
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
print(os.path.getsize(sys.argv[1]) * 10 / 1e6 / (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime))
PY
)
  read -r theirs theirs_cpu < <("$venv/bin/python" - "$f" <<'PY'
import sys, time, os
from octoprint.util.gcodeInterpreter import gcode
path = sys.argv[1]
best, best_cpu = 1e9, 1e9
for _ in range(2):
    t0, c0 = time.perf_counter(), time.process_time()
    g = gcode()
    g.load(path)
    best = min(best, time.perf_counter() - t0)
    best_cpu = min(best_cpu, time.process_time() - c0)
print(os.path.getsize(path) / 1e6 / best, best_cpu)
PY
)
  printf '%-45s %7.2f %10.2f %8.0f %13.0fx %8.0f %7.0fx %8.2fs %8.3fs %7.0fx %9.0f %7.0fx\n' "$(basename "$f")" "$(python3 -c "print($(stat -c %s "$f")/1e6)")" \
    "$theirs" "$core" "$(python3 -c "print($core/$theirs)")" "$ours" "$(python3 -c "print($ours/$theirs)")" \
    "$theirs_cpu" "$ours_cpu" "$(python3 -c "print($theirs_cpu/max($ours_cpu, 0.001))")" \
    "$core_cpu" "$(python3 -c "print($core_cpu*$theirs_cpu/($(stat -c %s "$f")/1e6))")"
done
echo "(MB/s. analyzer: the analysis pass alone, best of 5; whole CLI: 'farm-agent analyze --json' incl. process start, metadata, thumbnails, best of 3; OctoPrint: gcode().load() in-process, best of 2; cpu: user+sys seconds, OctoPrint's load() vs the whole CLI process; pass cpu: MB/s of CPU time of the analysis alone, 10 runs in one process, and its ratio to OctoPrint's CPU MB/s)"
uptime
