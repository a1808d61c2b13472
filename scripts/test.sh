#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (idempotent),
# checks formatting and lints, builds every binary, and runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -E 'test(/broker/)'   # extra arguments go to cargo nextest (filters, …)
#
# Peers used by the tests: Mosquitto (external-broker tests) and Chromium (dashboard test),
# both from Debian's packages. With CI=true a missing peer fails the run; it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  say "installing test peers: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

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
