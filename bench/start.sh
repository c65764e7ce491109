#!/bin/sh
# Start + run + remove `true`: rbox vs crun (same busybox rootfs as an OCI bundle), plus runc,
# podman and docker when they are installed and working. Rounds alternate the order, so both
# see the same machine load; prints medians and the ratio to crun. Needs root and hyperfine.
#
#   bench/start.sh [ROUNDS] [RUNS_PER_ROUND]      (release build: cargo build --release)
set -eu
ROUNDS=${1:-4}
RUNS=${2:-10}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
TAR=${BUSYBOX_TAR:-$HERE/target/images/busybox.tar}
[ -x "$RBOX" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f "$TAR" ] || { echo "missing $TAR: run images/recipes/busybox.sh" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is required" >&2; exit 1; }

WORK=$(mktemp -d /tmp/rbox-bench.XXXXXX)
NSDIR=$WORK/ns
cleanup() {
    "$RBOX" --root "$WORK/root" system prune -f >/dev/null 2>&1 || true
    umount "$NSDIR/mnt" 2>/dev/null || true
    umount "$NSDIR" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$RBOX" --root "$WORK/root" import --change 'CMD ["sh"]' "$TAR" busybox:latest >/dev/null

# The same rootfs as an OCI bundle for crun/runc.
mkdir -p "$WORK/bundle/rootfs"
tar -xf "$TAR" -C "$WORK/bundle/rootfs"
(cd "$WORK/bundle" && crun spec && sed -i 's/"sh"/"true"/; s/"terminal": true/"terminal": false/' config.json)

# crun 1.8 refuses this hybrid cgroup layout (a non-empty cgroup2 at /sys/fs/cgroup/unified):
# run it in a private mount namespace without that mount; the host's mounts stay untouched.
mkdir -p "$NSDIR"
mount --bind "$NSDIR" "$NSDIR"
mount --make-private "$NSDIR"
touch "$NSDIR/mnt"
unshare --mount="$NSDIR/mnt" --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null || true'

set -- \
    "rbox" "$RBOX --root $WORK/root run --rm --network none busybox true" \
    "crun" "nsenter --mount=$NSDIR/mnt crun --root $WORK/crun run -b $WORK/bundle rbox-bench"
if command -v runc >/dev/null; then
    set -- "$@" "runc" "runc --root $WORK/runc run -b $WORK/bundle rbox-bench"
fi
if command -v podman >/dev/null && podman image exists busybox 2>/dev/null; then
    set -- "$@" "podman" "podman run --rm --network none busybox true"
fi
if [ -x /usr/bin/docker ] && /usr/bin/docker image inspect busybox >/dev/null 2>&1; then
    set -- "$@" "docker" "/usr/bin/docker run --rm --network none busybox true"
fi

round=1
while [ "$round" -le "$ROUNDS" ]; do
    # Alternate the order every round.
    cmds=""
    n=$#
    j=1
    while [ $j -le $n ]; do
        eval "name=\${$j}"; eval "cmd=\${$((j + 1))}"
        if [ $((round % 2)) -eq 1 ]; then
            cmds="$cmds|$name|$cmd"
        else
            cmds="|$name|$cmd$cmds"
        fi
        j=$((j + 2))
    done
    printf '%s' "$cmds" | tr '|' '\n' | sed 1d > "$WORK/cmds"
    python3 - "$WORK/cmds" "$WORK/round$round.sh" "$RUNS" "$WORK/round$round.json" <<'PY'
import shlex, sys
lines = open(sys.argv[1]).read().split("\n")
pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
args = ["hyperfine", "-N", "-w", "3", "-r", sys.argv[3], "--export-json", sys.argv[4]]
for name, cmd in pairs:
    args += ["-n", name, cmd]
open(sys.argv[2], "w").write(" ".join(shlex.quote(a) for a in args) + " >/dev/null\n")
PY
    sh "$WORK/round$round.sh"
    round=$((round + 1))
done

python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
times = {}
for r in range(1, rounds + 1):
    for res in json.load(open(f"{work}/round{r}.json"))["results"]:
        times.setdefault(res["command"], []).extend(t * 1000 for t in res["times"])
crun = statistics.median(times["crun"])
print(f"{'command':8} {'median':>8} {'min':>8} {'max':>8} {'vs crun':>8}   ({rounds} rounds, ms)")
for name, t in times.items():
    m = statistics.median(t)
    print(f"{name:8} {m:8.1f} {min(t):8.1f} {max(t):8.1f} {m / crun:7.2f}x")
PY
