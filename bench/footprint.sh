#!/bin/sh
# Memory of rbox's own processes while containers run: starts COUNT detached busybox
# containers with a restart policy, a healthcheck (when the build has one) and the default
# log settings, lets a few healthchecks and some log output happen, then reads
# /proc/PID/smaps_rollup of every process whose command line names this root (monitors,
# their small mode, the DNS resolver, port proxies; not the containers' own processes).
# Prints each process and the sums: RSS (counts shared pages in every process), PSS (shared
# pages split among their users: what the processes cost the machine together) and private
# dirty. Needs root and a release build (cargo build --release).
#
#   bench/footprint.sh [COUNT] [SETTLE_SECONDS]        COUNT=11 SETTLE=12
#
# Measured twice in one run: as built (monitors in their small mode, rbox-shim, when it is
# beside the binary) and with RBOX_SHIM=0 (the full rbox binary as every monitor, as before).
#
# Environment: RBOX_BIN (default target/release/rbox), NET (default `bridge`), NET_OPTS (when
# set, `network create $NET_OPTS $NET` first on each root, removed after), RBOX_BASE_BIN
# (another build, measured the same way on its own root, for before/after figures).
set -eu
COUNT=${1:-11}
SETTLE=${2:-12}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
TAR=${BUSYBOX_TAR:-$HERE/target/images/busybox.tar}
NET=${NET:-bridge}
[ -x "$RBOX" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f "$TAR" ] || { echo "missing $TAR: run images/recipes/busybox.sh" >&2; exit 1; }

WORK=$(mktemp -d /tmp/rbox-footprint.XXXXXX)
ROOTS=""
cleanup() {
    for r in $ROOTS; do
        bin=${r%%=*}
        root=${r#*=}
        "$bin" --root "$root" ps -aq --no-trunc 2>/dev/null | xargs -r "$bin" --root "$root" rm -f >/dev/null 2>&1 || true
        "$bin" --root "$root" system prune -f >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Processes whose argv contains ROOT as a whole argument.
pids_of_root() {
    for d in /proc/[0-9]*; do
        [ -r "$d/cmdline" ] || continue
        if tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qxF "$1"; then
            echo "${d#/proc/}"
        fi
    done
}

measure() {
    bin=$1
    label=$2
    shim=${3:-1}
    root=$WORK/root-$label
    ROOTS="$ROOTS $bin=$root"
    "$bin" --root "$root" import --change 'CMD ["sh"]' "$TAR" busybox:latest >/dev/null
    # shellcheck disable=SC2086
    [ -z "${NET_OPTS:-}" ] || "$bin" --root "$root" network create $NET_OPTS "$NET" >/dev/null
    health=""
    if "$bin" run --help 2>&1 | grep -q -- --health-cmd; then
        health="--health-cmd true --health-interval 2s"
    fi
    i=1
    while [ "$i" -le "$COUNT" ]; do
        # shellcheck disable=SC2086
        RBOX_SHIM=$shim "$bin" --root "$root" run -d --network "$NET" --restart always $health busybox \
            sh -c 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 1; done' >/dev/null
        i=$((i + 1))
    done
    sleep "$SETTLE"
    echo "== $label: $bin (RBOX_SHIM=$shim), $COUNT containers, --network $NET, ${health:-no healthcheck}"
    printf '%-8s %-40s %9s %9s %9s\n' PID COMMAND RSS_kB PSS_kB PRIV_DIRTY
    for p in $(pids_of_root "$root"); do
        cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-40)
        awk -v pid="$p" -v cmd="$cmd" '
            /^Rss:/ {rss=$2} /^Pss:/ {pss=$2} /^Private_Dirty:/ {pd=$2}
            END {printf "%-8s %-40s %9d %9d %9d\n", pid, cmd, rss, pss, pd}' "/proc/$p/smaps_rollup"
    done | tee "$WORK/rows-$label" | awk '{print $(NF-2), $0}' | sort -n | cut -d' ' -f2-
    awk '{n++; rss+=$(NF-2); pss+=$(NF-1); pd+=$NF}
        END {printf "  %d processes: RSS sum %.1f MB, PSS sum %.1f MiB, private dirty sum %.1f MB; per process RSS %.2f MB, private dirty %.2f MB\n",
            n, rss/1000, pss/1024, pd/1000, rss/n/1000, pd/n/1000}' "$WORK/rows-$label"
    "$bin" --root "$root" ps -aq --no-trunc | xargs -r "$bin" --root "$root" rm -f >/dev/null
    [ -z "${NET_OPTS:-}" ] || "$bin" --root "$root" network rm "$NET" >/dev/null
}

measure "$RBOX" new
measure "$RBOX" full-monitor 0
[ -z "${RBOX_BASE_BIN:-}" ] || measure "$RBOX_BASE_BIN" base
