#!/bin/sh
# `run -d` cost as containers accumulate: starts COUNT detached `sleep` containers one after
# another on one root and prints the wall time of every STEP-th start plus the medians of the
# first, middle and last ten, and their ratios to the first ten. The containers keep running
# until the end, so every start sees all the earlier ones (their mounts, cgroups, records,
# leases). Needs root and a release build (cargo build --release).
#
#   bench/scale.sh [COUNT] [STEP]        COUNT=600 STEP=50
#
# Environment: RBOX_BIN (default target/release/rbox), NET (default `none`; `bridge` puts
# them all on the default bridge; `user` on a user network with names, bridge rbs-scale,
# subnet USER_SUBNET, default 10.233.0.0/20), RBOX_BASE_BIN (another build, measured the same way on its
# own root after this one, for before/after figures; SETTLE seconds between the two).
set -eu
COUNT=${1:-600}
STEP=${2:-50}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
TAR=${BUSYBOX_TAR:-$HERE/target/images/busybox.tar}
NET=${NET:-none}
[ -x "$RBOX" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f "$TAR" ] || { echo "missing $TAR: run images/recipes/busybox.sh" >&2; exit 1; }

WORK=$(mktemp -d /tmp/rbox-scale.XXXXXX)
ROOTS=""
cleanup() {
    for r in $ROOTS; do
        bin=${r%%=*}
        root=${r#*=}
        "$bin" --root "$root" ps -aq --no-trunc 2>/dev/null | xargs -r -n 50 "$bin" --root "$root" rm -f >/dev/null 2>&1 || true
        "$bin" --root "$root" system prune -f >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Microseconds: the medians compare starts of 15-30 ms, where whole milliseconds are coarse.
now_us() { date +%s%N | cut -c1-16; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

series() {
    bin=$1
    label=$2
    root=$WORK/root-$label
    ROOTS="$ROOTS $bin=$root"
    "$bin" --root "$root" import --change 'CMD ["sh"]' "$TAR" busybox:latest >/dev/null
    net=$NET
    if [ "$NET" = user ]; then
        net=scale
        "$bin" --root "$root" network create --subnet "${USER_SUBNET:-10.233.0.0/20}" \
            -o com.docker.network.bridge.name=rbs-scale "$net" >/dev/null
    fi
    times=$WORK/times-$label
    : >"$times"
    echo "== $label: $bin, --network $NET, load $(cut -d' ' -f1-3 /proc/loadavg)"
    i=1
    while [ "$i" -le "$COUNT" ]; do
        t0=$(now_us)
        "$bin" --root "$root" run -d --network "$net" busybox sleep 36000 >/dev/null
        t1=$(now_us)
        us=$((t1 - t0))
        echo "$i $((us / 1000)).$((us % 1000 / 100))" >>"$times"
        if [ $((i % STEP)) -eq 0 ] || [ "$i" -eq 1 ]; then
            echo "  run -d #$i: $((us / 1000)).$((us % 1000 / 100)) ms"
        fi
        i=$((i + 1))
    done
    mid=$((COUNT / 2))
    first=$(awk '$1 <= 10 {print $2}' "$times" | median)
    middle=$(awk -v m="$mid" '$1 > m - 5 && $1 <= m + 5 {print $2}' "$times" | median)
    last=$(awk -v c="$COUNT" '$1 > c - 10 {print $2}' "$times" | median)
    echo "  median of 1-10: $first ms, around #$mid: $middle ms, last 10: $last ms"
    awk -v f="$first" -v m="$middle" -v l="$last" 'BEGIN {printf "  ratio middle/first %.2fx, last/first %.2fx\n", m/f, l/f}'
    echo "  host mounts now: $(wc -l </proc/self/mountinfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$bin" --root "$root" ps -aq --no-trunc | xargs -r -n 50 "$bin" --root "$root" rm -f >/dev/null
    if [ "$NET" = user ]; then
        "$bin" --root "$root" network rm "$net" >/dev/null
    fi
}

echo "host mounts before: $(wc -l </proc/self/mountinfo)"
series "$RBOX" new
if [ -n "${RBOX_BASE_BIN:-}" ]; then
    # The kernel frees the removed containers' network namespaces in the background: a series
    # started right after the previous one's removal ran at load ~9 and grew 1.64x instead of
    # 1.28x. SETTLE seconds (default 60) of quiet first.
    sleep "${SETTLE:-60}"
    series "$RBOX_BASE_BIN" base
fi
