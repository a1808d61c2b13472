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
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for f in slic3r-1.2.9-benchy-4extruder-m83 bambustudio-01.08.04-eline-4filament-m83 prusaslicer-2.6.1-benchy-m83; do
    zcat "protocol/tests/data/slicers/$f.gcode.gz" > "$tmp/$f.gcode"; files+=("$tmp/$f.gcode")
  done
fi
printf '%-45s %7s %10s %8s %14s %8s %8s\n' file MB OctoPrint analyzer "(ratio)" "whole CLI" "(ratio)"
for f in "${files[@]}"; do
  ours=$(target/release/farm-agent analyze --json "$f" >/dev/null; \
         best=0; for i in 1 2 3; do
           t0=$(date +%s.%N); target/release/farm-agent analyze --json "$f" >/dev/null; t1=$(date +%s.%N)
           best=$(python3 -c "print(max($best, $(stat -c %s "$f")/1e6/($t1-$t0)))"); done; echo "$best")
  # The analysis pass alone, as the CLI's table reports it ("analysed in … (N MB/s)").
  core=$(for i in 1 2 3 4 5; do target/release/farm-agent analyze "$f" | sed -n 's/.*(\([0-9]*\) MB\/s)/\1/p'; done | sort -n | tail -1)
  theirs=$("$venv/bin/python" - "$f" <<'PY'
import sys, time, os
from octoprint.util.gcodeInterpreter import gcode
path = sys.argv[1]
t0 = time.perf_counter()
g = gcode()
g.load(path)
dt = time.perf_counter() - t0
print(os.path.getsize(path) / 1e6 / dt)
PY
)
  printf '%-45s %7.2f %10.2f %8.0f %13.0fx %8.0f %7.0fx\n' "$(basename "$f")" "$(python3 -c "print($(stat -c %s "$f")/1e6)")" \
    "$theirs" "$core" "$(python3 -c "print($core/$theirs)")" "$ours" "$(python3 -c "print($ours/$theirs)")"
done
echo "(MB/s. analyzer: the analysis pass alone, best of 5; whole CLI: 'farm-agent analyze --json' incl. process start, metadata, thumbnails, best of 3; OctoPrint: gcode().load() in-process)"
