#!/usr/bin/env bash
# Fuzzes the G-code analyzer (and the envelope decoder) with cargo fuzz on the stable toolchain,
# then minimizes the corpus that is kept in the repository.
#
#   scripts/fuzz.sh                 # gcode target, 600 s
#   scripts/fuzz.sh envelope 120    # another target / duration (gcode, bgcode, envelope)
#
# A crash leaves its input in protocol/fuzz/artifacts/<target>/; copy it into
# protocol/fuzz/corpus/gcode/ once fixed so protocol/tests/fuzz_corpus.rs keeps checking it.
set -euo pipefail
cd "$(dirname "$0")/../protocol"
target=${1:-gcode}
seconds=${2:-600}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo fuzz passes -Z flags (sanitizer, coverage); RUSTC_BOOTSTRAP lets stable rustc take them.
export RUSTC_BOOTSTRAP=1
mkdir -p "fuzz/corpus/$target"
cargo fuzz run "$target" "fuzz/corpus/$target" -- \
  -max_total_time="$seconds" -rss_limit_mb=512 -max_len=65536
cargo fuzz cmin "$target" "fuzz/corpus/$target" -- -rss_limit_mb=512
