#!/bin/sh
# What the default bridge adds to `run --rm busybox true`: bridge minus --network none, with
# hyperfine when installed (else a plain loop), side by side with docker/podman when present,
# and (when /usr/lib/cni has the plugins) the same on a CNI network of the bridge plugin with
# host-local (driver cni) in the same run. Then per-container setup time as one bridge fills
# up to 250 containers (must stay flat).
# Usage: bench/net.sh [runs] [containers]    (as root; uses its own root, bridge and subnet)
set -eu
RUNS=${1:-20}
FILL=${2:-250}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
[ -x "$RBOX" ] || RBOX=$HERE/target/debug/rbox
ROOT=$(mktemp -d /tmp/rbox-bench-net.XXXXXX)
export RBOX_DEFAULT_BRIDGE=rbt-bench RBOX_DEFAULT_SUBNET=10.201.250.0/23
R="$RBOX --root $ROOT"
# A CNI list beside rbox's own bridge: no gateway or masquerade, so the plugin changes no
# sysctl or host rule; its bridge is deleted at the end.
CNI_BRIDGE=rbt-kbench
export RBOX_CNI_CONF_DIR=$ROOT/cni-conf
mkdir -p "$RBOX_CNI_CONF_DIR"
cat >"$RBOX_CNI_CONF_DIR/10-bench.conflist" <<EOF
{"cniVersion":"1.0.0","name":"cnibench","plugins":[{"type":"bridge","bridge":"$CNI_BRIDGE",
 "ipam":{"type":"host-local","dataDir":"$ROOT/cni-ipam","ranges":[[{"subnet":"10.187.250.0/24"}]]}}]}
EOF
cleanup() {
    $R ps -aq 2>/dev/null | xargs -r $R rm -f >/dev/null 2>&1 || true
    $R network teardown >/dev/null 2>&1 || true
    ip link del "$CNI_BRIDGE" 2>/dev/null || true
    $R system prune -f >/dev/null 2>&1 || true
    grep " $ROOT" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT INT TERM
$R import --change 'CMD ["sh"]' "$HERE/target/images/busybox.tar" busybox:latest >/dev/null
$R run --rm busybox true # creates the default bridge and its rules once

median_ms() { # command...: median wall time in ms over $RUNS runs
    i=0
    while [ $i -lt "$RUNS" ]; do
        s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
        echo $(((e - s) / 1000))
        i=$((i + 1))
    done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

compare() { # name none-cmd bridge-cmd [cni-cmd]
    if command -v hyperfine >/dev/null 2>&1; then
        if [ $# -gt 3 ]; then
            hyperfine -N -w 3 -r "$RUNS" -n "$1 none" "$2" -n "$1 bridge" "$3" -n "$1 cni bridge" "$4"
        else
            hyperfine -N -w 3 -r "$RUNS" -n "$1 none" "$2" -n "$1 bridge" "$3"
        fi
    else
        none=$(median_ms sh -c "$2"); bridge=$(median_ms sh -c "$3")
        echo "$1: none ${none} ms, bridge ${bridge} ms, bridge adds $(echo "$bridge - $none" | bc) ms (median of $RUNS)"
        if [ $# -gt 3 ]; then
            cni=$(median_ms sh -c "$4")
            echo "$1: cni bridge ${cni} ms, adds $(echo "$cni - $none" | bc) ms (median of $RUNS)"
        fi
    fi
}

if [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ]; then
    compare rbox "$R run --rm --network none busybox true" "$R run --rm busybox true" \
        "$R run --rm --network cnibench busybox true"
else
    compare rbox "$R run --rm --network none busybox true" "$R run --rm busybox true"
fi
command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 &&
    compare docker "docker run --rm --network none busybox true" "docker run --rm busybox true"
command -v podman >/dev/null 2>&1 &&
    compare podman "podman run --rm --network none busybox true" "podman run --rm busybox true"

echo "per-container setup while filling one bridge with $FILL containers (ms):"
i=1
while [ $i -le "$FILL" ]; do
    s=$(date +%s%N); $R run -d busybox sleep 3600 >/dev/null; e=$(date +%s%N)
    [ $((i % 25)) -eq 0 ] || [ $i -eq 1 ] && echo "  container $i: $(((e - s) / 1000000)) ms"
    i=$((i + 1))
done
