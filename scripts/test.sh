#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (idempotent),
# checks formatting and lints, builds every binary, and runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -E 'test(/broker/)'   # extra arguments go to cargo nextest (filters, …)
#
# Peers used by the tests (scripts/install-peers.sh installs them): Mosquitto and Chromium from
# Debian's packages, OctoPrint and Moonraker from PyPI in venvs under .peers/. A missing peer
# fails the run; it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "test peers (Mosquitto, Chromium, OctoPrint, Moonraker; installed when missing)"
scripts/install-peers.sh

say "format"
cargo fmt --all -- --check

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "build (the end-to-end tests run the real binaries)"
cargo build --workspace --bins --tests --locked

say "tests"
if cargo nextest --version >/dev/null 2>&1; then
  # Each test in its own process; the end-to-end tests start their own controllers, agents and brokers.
  cargo nextest run --workspace --locked --no-fail-fast --test-threads 4 "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
