#!/bin/sh
# What publishing costs `run`, and whether it grows with what is already published.
#
#   bench/ports-scale.sh [ROUNDS] [RUNS] [CONTAINERS] [PORTS]
#                                      (root, hyperfine; cargo build --release first)
#
# 1. `run -d busybox sleep` with and without `-p 38900:80`: ROUNDS hyperfine runs of RUNS runs
#    each, the order of the two swapped every round (each timed run is preceded by an untimed
#    `rm -f` of the previous container); medians over all runs.
# 2. CONTAINERS containers (default 50) with PORTS published ports each (default 4), started one
#    after another: each `run -d`'s time, the last ones' against the first ones' (goal: within
#    1.2x), and the same series without `-p` as the baseline of what a growing number of
#    containers costs by itself.
# 3. The publishing step alone as the number of published ports grows: CONTAINERS sandboxes,
#    then `network sandbox publish` of PORTS ports for each in turn (the hidden hook that runs
#    exactly what a container's monitor runs to publish), timed.
set -eu
ROUNDS=${1:-4}
RUNS=${2:-10}
N=${3:-50}
P=${4:-4}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
TAR=${BUSYBOX_TAR:-$HERE/target/images/busybox.tar}
[ -x "$RBOX" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f "$TAR" ] || { echo "missing $TAR: run images/recipes/busybox.sh" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is required" >&2; exit 1; }
export RBOX_DEFAULT_BRIDGE=rbb-pscale RBOX_DEFAULT_SUBNET=10.213.50.0/24
WORK=$(mktemp -d /tmp/rbox-bench-pscale.XXXXXX)
R="$RBOX --root $WORK/root"
cleanup() {
    $R rm -f $($R ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    for s in $(seq 0 $((N - 1))); do
        $R network sandbox release "$(printf 'bb%010d' "$s")" >/dev/null 2>&1 || true
    done
    $R system prune -f >/dev/null 2>&1 || true
    $R network teardown >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
$R import --change 'CMD ["sh"]' "$TAR" busybox:latest >/dev/null
echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(iptables --version)"

echo "== 1. run -d with and without one published port ($ROUNDS rounds x $RUNS runs)"
RM="$R rm -f pc >/dev/null 2>&1 || true"
NOP="$R run -d --name pc busybox sleep 600"
WITHP="$R run -d --name pc -p 38900:80 busybox sleep 600"
round=1
while [ "$round" -le "$ROUNDS" ]; do
    if [ $((round % 2)) -eq 1 ]; then
        set -- -n "no -p" "$NOP" -n "with -p" "$WITHP"
    else
        set -- -n "with -p" "$WITHP" -n "no -p" "$NOP"
    fi
    hyperfine -w 2 -r "$RUNS" -p "$RM" -p "$RM" --export-json "$WORK/h$round.json" "$@" \
        >/dev/null
    round=$((round + 1))
done
$R rm -f pc >/dev/null
python3 - "$WORK"/h*.json <<'PY'
import json, statistics, sys
t = {}
for f in sys.argv[1:]:
    for x in json.load(open(f))["results"]:
        t.setdefault(x["command"], []).extend(x["times"])
a, b = statistics.median(t["no -p"]) * 1e3, statistics.median(t["with -p"]) * 1e3
for name in ("no -p", "with -p"):
    v = [x * 1e3 for x in t[name]]
    print(f"  {name:8} median {statistics.median(v):6.1f} ms  mean {statistics.mean(v):6.1f} ms  ({len(v)} runs)")
print(f"  publishing one port adds {b - a:+.1f} ms (median; goal <= 5 ms)")
PY
[ "$N" -gt 0 ] || exit 0

# Prints `$1` runs' times in ms (file $WORK/t): first, last, medians of the first and last tenth.
report() {
    python3 - "$WORK/t" "$1" <<'PY'
import statistics, sys
t = [int(x) / 1000 for x in open(sys.argv[1])]
k = max(1, len(t) // 10)
first, last = statistics.median(t[:k]), statistics.median(t[-k:])
print(f"  {sys.argv[2]}: first {t[0]:.1f} ms, last {t[-1]:.1f} ms; median of first {k} {first:.1f} ms, "
      f"of last {k} {last:.1f} ms: last/first = {last/first:.2f}")
print("    all (ms): " + " ".join(f"{x:.0f}" for x in t))
PY
}

# "-p 38000+i*P:80 -p ...": container/sandbox i's $1 port flags.
ports() {
    k=0
    while [ $k -lt "$1" ]; do
        printf ' -p %d:%d' $((38000 + $2 * P + k)) $((80 + k))
        k=$((k + 1))
    done
}

# Starts $N containers one after another with $1 ports each; times each `run -d`.
series() {
    i=0
    : > "$WORK/t"
    while [ $i -lt "$N" ]; do
        args=$(ports "$1" $i)
        t0=$(date +%s%N)
        $R run -d --name "s$i" $args busybox sleep 600 >/dev/null
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000)) >> "$WORK/t"
        i=$((i + 1))
    done
    $R rm -f $($R ps -aq) >/dev/null
}

echo "== 2. $N containers started one after another"
series "$P"
report "$P ports each"
series 0
report "no ports (baseline)"

echo "== 3. publishing alone: $N sandboxes x $P ports, published one after another"
i=0
while [ $i -lt "$N" ]; do
    id=$(printf 'bb%010d' $i)
    $R network sandbox create "$id" >/dev/null
    $R network sandbox connect bridge "$id" >/dev/null
    i=$((i + 1))
done
i=0
: > "$WORK/t"
while [ $i -lt "$N" ]; do
    id=$(printf 'bb%010d' $i)
    args=$(ports "$P" $i)
    # stdin closed: the reservation ends at once, the rules and the record stay.
    t0=$(date +%s%N)
    $R network sandbox publish $args "$id" </dev/null >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) >> "$WORK/t"
    i=$((i + 1))
done
report "publish of $P ports"
echo "  rules in the kernel now: $(iptables-save | grep -c 'RBOX-P')"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
