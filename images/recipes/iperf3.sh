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
mkdir -p "$R/usr/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root"
cp "$IPERF" "$R/usr/bin/iperf3"

# The libraries (and the dynamic loader) at the paths the binary looks for them.
for lib in $(ldd "$IPERF" | awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}'); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done
# Debian is merged-/usr: /lib and /lib64 are links into /usr.
for d in lib lib64; do
    if [ -L "/$d" ] && [ -d "$R/$d" ]; then
        mkdir -p "$R/usr/$d"
        cp -a "$R/$d/." "$R/usr/$d/"
        rm -rf "${R:?}/$d"
        ln -s "usr/$d" "$R/$d"
    fi
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"
chmod 1777 "$R/tmp"
chmod 700 "$R/root"

tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$R" -cf "$WORK/iperf3.tar" .
mv "$WORK/iperf3.tar" "$OUT/iperf3.tar"
echo "$OUT/iperf3.tar"

if [ -n "$IMPORT" ]; then
    RBOX=${RBOX:-$WS/target/debug/rbox}
    "$RBOX" import --change 'CMD ["iperf3","-s"]' --change 'EXPOSE 5201' \
        "$OUT/iperf3.tar" iperf3:latest
fi
