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
cargo test --workspace
