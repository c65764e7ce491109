#!/bin/sh
# Builds a busybox rootfs tarball from Debian's busybox-static, offline:
#   ${OUT:-target/images}/busybox.tar   (OUT relative to the workspace root)
# With RBOX=/path/to/rbox in the environment, or --import, it is also imported as
# busybox:latest with CMD ["sh"] (into $RBOX_ROOT or rbox's default root).
set -eu

WS=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-target/images}
case $OUT in /*) ;; *) OUT=$WS/$OUT ;; esac
IMPORT=
[ "${1:-}" = "--import" ] && IMPORT=1
[ -n "${RBOX:-}" ] && IMPORT=1

if [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/.busybox-rootfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/rootfs
. "$WS/images/recipes/common.sh"
mkdir -p "$R/bin" "$R/sbin" "$R/usr/bin" "$R/usr/sbin" "$R/etc" "$R/root" "$R/proc" "$R/sys" \
    "$R/dev" "$R/tmp" "$R/var/log" "$R/home"
cp /bin/busybox "$R/bin/busybox"
# One link per applet at its full path, pointing at /bin/busybox: busybox makes them itself (one
# exec instead of a fork per applet, which matters on the slow VMs of vagrant/test.sh).
chroot "$R" /bin/busybox --install -s
[ -e "$R/bin/sh" ] || ln -s /bin/busybox "$R/bin/sh"
cat > "$R/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$R/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
finish busybox --change 'CMD ["sh"]'
