#!/bin/sh
# What publishing costs `run`, and whether it grows with what is already published, for each
# firewall backend side by side (iptables, nftables).
#
#   bench/ports-scale.sh [ROUNDS] [RUNS] [CONTAINERS] [PORTS] [SANDBOXES]
#                                      (root, hyperfine; cargo build --release first)
#
# It re-runs itself in a private network and mount namespace (sysfs remounted for it, cgroups
# kept), so neither backend touches the host's firewall; each backend has its own root, default
# bridge and host ports there, and the two alternate step by step so load hits both alike.
# 1. `run -d busybox sleep` with and without `-p`, per backend: ROUNDS hyperfine runs of RUNS
#    runs of the four commands (order rotated every round; each timed run is preceded by an
#    untimed `rm -f`); medians over all runs.
# 2. CONTAINERS containers (default 50) with PORTS published ports each (default 4), started one
#    after another, the backends alternating container by container: each `run -d`'s time, the
#    last tenth's against the first tenth's (goal: within 1.2x), and the same series without
#    `-p` as the baseline of what a growing number of containers costs by itself.
# 3. The publishing step alone as the number of published ports grows: SANDBOXES sandboxes
#    (default 200) per backend, then `network sandbox publish` of PORTS ports into each in turn
#    (the hidden hook that runs exactly what a container's monitor runs to publish), the
#    backends alternating; the 200th's cost against the 1st's (medians of the last and first
#    tenth; goal: <= 1.2x on both).
set -eu
ROUNDS=${1:-4}
RUNS=${2:-10}
N=${3:-50}
P=${4:-4}
S=${5:-200}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
TAR=${BUSYBOX_TAR:-$HERE/target/images/busybox.tar}
[ -x "$RBOX" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f "$TAR" ] || { echo "missing $TAR: run images/recipes/busybox.sh" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is required" >&2; exit 1; }
command -v nft >/dev/null || { echo "nft is required (scripts/deps.sh)" >&2; exit 1; }
if [ -z "${RBOX_BENCH_NS:-}" ]; then
    export RBOX_BENCH_NS=1
    exec unshare --mount --net --propagation private sh -c '
        set -e; ip link set lo up; cg=$(mktemp -d /tmp/rbox-bench-cg.XXXXXX)
        mount --rbind /sys/fs/cgroup "$cg"; mount -t sysfs sysfs /sys
        mount --move "$cg" /sys/fs/cgroup; rmdir "$cg"; exec "$0" "$@"' "$0" "$@"
fi
WORK=$(mktemp -d /tmp/rbox-bench-pscale.XXXXXX)
BACKENDS="iptables nftables"
# The rbox command line of backend $1 (own root, bridge, subnet), as one string.
rcmd() {
    case $1 in
    iptables) echo "env RBOX_FIREWALL=iptables RBOX_DEFAULT_BRIDGE=rbb-psi RBOX_DEFAULT_SUBNET=10.213.50.0/24 $RBOX --root $WORK/iptables" ;;
    nftables) echo "env RBOX_FIREWALL=nftables RBOX_DEFAULT_BRIDGE=rbb-psn RBOX_DEFAULT_SUBNET=10.213.51.0/24 $RBOX --root $WORK/nftables" ;;
    esac
}
# Runs rbox of backend $1 with the other arguments.
r() {
    b=$1
    shift
    $(rcmd "$b") "$@"
}
# Host port base of backend $1.
base() { [ "$1" = iptables ] && echo 30000 || echo 40000; }
cleanup() {
    for b in $BACKENDS; do
        r "$b" rm -f $(r "$b" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
        for s in $(seq 0 $((S - 1))); do
            r "$b" network sandbox release "$(printf 'bb%010d' "$s")" >/dev/null 2>&1 || true
        done
        r "$b" system prune -f >/dev/null 2>&1 || true
        r "$b" network teardown >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
for b in $BACKENDS; do
    r "$b" import --change 'CMD ["sh"]' "$TAR" busybox:latest >/dev/null
done
echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(iptables --version), $(nft --version)"

echo "== 1. run -d with and without one published port ($ROUNDS rounds x $RUNS runs)"
round=1
while [ "$round" -le "$ROUNDS" ]; do
    # Rotated: iptables first on odd rounds, nftables first on even ones.
    if [ $((round % 2)) -eq 1 ]; then order="iptables nftables"; else order="nftables iptables"; fi
    set --
    for b in $order; do
        R=$(rcmd "$b")
        RM="$R rm -f pc >/dev/null 2>&1 || true"
        set -- "$@" -n "$b no -p" -p "$RM" "$R run -d --name pc busybox sleep 600"
        set -- "$@" -n "$b with -p" -p "$RM" \
            "$R run -d --name pc -p $(($(base "$b") + 9999)):80 busybox sleep 600"
    done
    hyperfine -w 2 -r "$RUNS" --export-json "$WORK/h$round.json" "$@" >/dev/null
    round=$((round + 1))
done
for b in $BACKENDS; do r "$b" rm -f pc >/dev/null 2>&1 || true; done
python3 - "$WORK"/h*.json <<'PY'
import json, statistics, sys
t = {}
for f in sys.argv[1:]:
    for x in json.load(open(f))["results"]:
        t.setdefault(x["command"], []).extend(x["times"])
for b in ("iptables", "nftables"):
    a, p = statistics.median(t[f"{b} no -p"]) * 1e3, statistics.median(t[f"{b} with -p"]) * 1e3
    print(f"  {b:8}: no -p median {a:6.1f} ms, with -p {p:6.1f} ms: publishing one port adds {p - a:+.1f} ms ({len(t[b + ' no -p'])} runs each)")
PY

# Prints the times (ms) in files $WORK/t.<backend>: first, last, medians of the first and last
# tenth, their ratio.
report() {
    python3 - "$1" "$WORK" $BACKENDS <<'PY'
import statistics, sys
what, work = sys.argv[1], sys.argv[2]
for b in sys.argv[3:]:
    t = [int(x) / 1000 for x in open(f"{work}/t.{b}")]
    k = max(1, len(t) // 10)
    first, last = statistics.median(t[:k]), statistics.median(t[-k:])
    print(f"  {b:8} {what}: first {t[0]:.1f} ms, last {t[-1]:.1f} ms; median of first {k} {first:.1f} ms, "
          f"of last {k} {last:.1f} ms: last/first = {last/first:.2f}")
PY
}

# " -p B+i*P:80 -p ...": backend $1's container/sandbox $2's $3 port flags.
ports() {
    k=0
    while [ $k -lt "$3" ]; do
        printf ' -p %d:%d' $(($(base "$1") + $2 * P + k)) $((80 + k))
        k=$((k + 1))
    done
}

# Appends the time (us) of `r $1 ...` to $WORK/t.$1.
timed() {
    b=$1
    shift
    t0=$(date +%s%N)
    r "$b" "$@" </dev/null >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) >> "$WORK/t.$b"
}

# $N containers per backend with $1 ports each, the backends alternating.
series() {
    for b in $BACKENDS; do : > "$WORK/t.$b"; done
    i=0
    while [ $i -lt "$N" ]; do
        for b in $BACKENDS; do
            timed "$b" run -d --name "s$i" $(ports "$b" $i "$1") busybox sleep 600
        done
        i=$((i + 1))
    done
    for b in $BACKENDS; do r "$b" rm -f $(r "$b" ps -aq) >/dev/null; done
}

if [ "$N" -gt 0 ]; then
    echo "== 2. $N containers per backend started one after another"
    series "$P"
    report "$P ports each"
    series 0
    report "no ports (baseline)"
fi

echo "== 3. publishing alone: $S sandboxes x $P ports per backend, published one after another"
for b in $BACKENDS; do
    i=0
    while [ $i -lt "$S" ]; do
        id=$(printf 'bb%010d' $i)
        r "$b" network sandbox create "$id" >/dev/null
        r "$b" network sandbox connect bridge "$id" >/dev/null
        i=$((i + 1))
    done
    : > "$WORK/t.$b"
done
i=0
while [ $i -lt "$S" ]; do
    id=$(printf 'bb%010d' $i)
    for b in $BACKENDS; do
        # stdin closed: the reservation ends at once, the rules and the record stay.
        timed "$b" network sandbox publish $(ports "$b" $i "$P") "$id"
    done
    i=$((i + 1))
done
report "publish of $P ports"
echo "  rules in the kernel now: iptables $(iptables-save | grep -c 'RBOX-P'), nftables $(nft list table inet rbox | grep -c 'dnat ip')"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
