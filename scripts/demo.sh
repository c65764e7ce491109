#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: build rbox, make the offline busybox and
# nginx images, then the user's own example — nginx on a user bridge network with port 8080
# published — answering on 127.0.0.1:8080, and a busybox container reaching it by name.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --release
rbox=$PWD/target/release/rbox
export RBOX_ROOT=${RBOX_ROOT:-/var/lib/rbox}

RBOX=$rbox images/recipes/busybox.sh --import
RBOX=$rbox images/recipes/nginx.sh --import

cleanup() {
  "$rbox" rm -f web >/dev/null 2>&1 || true
  "$rbox" network rm mybridge >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

set -x
"$rbox" run --rm busybox echo hello from busybox
"$rbox" network create mybridge
"$rbox" run -d --name web --network mybridge -p 8080:80 nginx
"$rbox" ps
curl -sS --retry 10 --retry-connrefused --retry-delay 1 http://127.0.0.1:8080/
"$rbox" run --rm --network mybridge busybox wget -qO- http://web/
