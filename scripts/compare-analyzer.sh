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
printf '%-45s %9s %12s %12s %8s\n' file MB "ours MB/s" "OctoPrint" ratio
for f in "${files[@]}"; do
  ours=$(target/release/farm-agent analyze --json "$f" >/dev/null; \
         best=0; for i in 1 2 3; do
           t0=$(date +%s.%N); target/release/farm-agent analyze --json "$f" >/dev/null; t1=$(date +%s.%N)
           best=$(python3 -c "print(max($best, $(stat -c %s "$f")/1e6/($t1-$t0)))"); done; echo "$best")
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
  printf '%-45s %9.2f %12.1f %12.2f %7.0fx\n' "$(basename "$f")" "$(python3 -c "print($(stat -c %s "$f")/1e6)")" "$ours" "$theirs" "$(python3 -c "print($ours/$theirs)")"
done
echo "(ours: whole 'farm-agent analyze --json' process incl. start-up, metadata and thumbnails, best of 3; OctoPrint: gcode().load() in-process)"
