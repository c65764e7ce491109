#!/bin/sh
# Builds a small iperf3 rootfs tarball from Debian's iperf3, offline: the binary and the shared
# libraries `ldd` names (for bench/ports.sh).
#   ${OUT:-target/images}/iperf3.tar   (OUT relative to the workspace root)
# With RBOX=/path/to/rbox in the environment, or --import, it is also imported as iperf3:latest
# with CMD ["iperf3","-s"] and EXPOSE 5201.
set -eu

WS=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-target/images}
case $OUT in /*) ;; *) OUT=$WS/$OUT ;; esac
IMPORT=
[ "${1:-}" = "--import" ] && IMPORT=1
[ -n "${RBOX:-}" ] && IMPORT=1

if [ ! -x /usr/bin/iperf3 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3 >/dev/null
fi
IPERF=/usr/bin/iperf3

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/.iperf3-rootfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/rootfs
. "$WS/images/recipes/common.sh"
mkdir -p "$R/usr/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root"
copy_binary "$IPERF" /usr/bin/iperf3
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"
finish iperf3 --change 'CMD ["iperf3","-s"]' --change 'EXPOSE 5201'
