#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root: dependencies, build, the
# offline images the tests use, then unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --workspace
images/recipes/busybox.sh
images/recipes/nginx.sh
# Integration tests each use their own --root, bridge and subnets, so they may run in parallel.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (cargo prints one result line per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "Tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
