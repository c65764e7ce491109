#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: build rbox, make the offline busybox
# image, run a web server container on a user bridge network and show it answering.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --release
rbox=$PWD/target/release/rbox
export RBOX_ROOT=${RBOX_ROOT:-/var/lib/rbox}

RBOX=$rbox images/recipes/busybox.sh --import

cleanup() {
  "$rbox" rm -f demo-web >/dev/null 2>&1 || true
  "$rbox" network rm demo-net >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

set -x
"$rbox" run --rm --network none busybox echo hello
"$rbox" network create demo-net
"$rbox" run -d --name demo-web --network demo-net busybox \
  sh -c 'mkdir -p /www && echo "hello from an rbox container" > /www/index.html && exec httpd -f -p 80 -h /www'
ip=$("$rbox" inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' demo-web)
"$rbox" ps
curl -s --retry 10 --retry-connrefused --retry-delay 1 "http://$ip/"
"$rbox" run --rm --network demo-net busybox wget -qO- "http://$ip/"
