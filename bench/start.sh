#!/bin/sh
# Start + run + remove `true`: rbox vs crun, plus runc, podman and docker when they are
# installed and working. Rounds alternate the order, so all see the same machine load; prints
# medians and the ratios to crun. Needs root and hyperfine.
#
# Commands timed:
#   rbox               rbox run --rm --network none busybox true
#   rbox-nosec         the same with --security-opt seccomp=unconfined (seccomp's share)
#   crun               crun run of the busybox rootfs with the plain `crun spec` config
#                      (no seccomp, 3 capabilities, no masked paths, fewer mounts)
#   crun-rboxcfg       crun run of the config.json rbox generates for that container (Docker's
#                      caps, masked/readonly paths, cgroup mount, /etc bind mounts, rlimits)
#                      plus rbox's compiled seccomp filter (Docker's profile), which crun loads
#                      precompiled as rbox does; only the rootfs (plain directory, no overlay),
#                      the cgroup path and the network namespace (a new one instead of rbox's
#                      pre-made one) are changed so crun can run it
#   crun-rboxcfg-nosec the same without the seccomp filter
#
#   rbox-base          (only with RBOX_BASE_BIN=path) another rbox build on its own root, for
#                      before/after figures in one run
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
    [ -z "${RBOX_BASE_BIN:-}" ] || "$RBOX_BASE_BIN" --root "$WORK/root-base" system prune -f >/dev/null 2>&1 || true
    umount "$NSDIR/mnt" 2>/dev/null || true
    umount "$NSDIR" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

"$RBOX" --root "$WORK/root" import --change 'CMD ["sh"]' "$TAR" busybox:latest >/dev/null

# The same rootfs as an OCI bundle for crun/runc.
mkdir -p "$WORK/bundle/rootfs"
tar -xf "$TAR" -C "$WORK/bundle/rootfs"
(cd "$WORK/bundle" && crun spec && sed -i 's/"sh"/"true"/; s/"terminal": true/"terminal": false/' config.json)

# rbox's own spec for the same container: a kept (no --rm) run leaves its config.json and the
# /etc files it bind-mounts in the container's directory.
"$RBOX" --root "$WORK/root" run --name speccfg --network none busybox true
CDIR=$WORK/root/containers/$("$RBOX" --root "$WORK/root" inspect --format '{{.Id}}' speccfg)
mkdir -p "$WORK/bundle-rbox" "$WORK/bundle-rbox-nosec"
python3 - "$CDIR/config.json" "$WORK/bundle/rootfs" "$WORK/bundle-rbox" "$WORK/bundle-rbox-nosec" "$WORK/root/seccomp" <<'PY'
import base64, glob, json, sys
src, rootfs, out, out_nosec, cache = sys.argv[1:6]
c = json.load(open(src))
c["root"] = {"path": rootfs, "readonly": c["root"].get("readonly", False)}
c["linux"]["cgroupsPath"] = "/rbox-bench-crun"
# rbox joins the namespace it made and bind-mounted beforehand; crun makes a fresh one.
c["linux"]["namespaces"] = [{"type": n["type"]} for n in c["linux"]["namespaces"]]
nosec = json.loads(json.dumps(c))
nosec["linux"].pop("seccomp", None)
# rbox loads Docker's profile precompiled (BPF cached under --root) right before execve
# instead of putting it in config.json: hand crun the very same program, which crun also
# loads as is (annotation run.oci.seccomp_bpf_data) instead of compiling a profile.
bpf = glob.glob(cache + "/*.bpf")
if "seccomp" not in c["linux"]:
    if len(bpf) != 1:
        sys.exit(f"expected one cached seccomp filter in {cache}, found {len(bpf)}")
    c.setdefault("annotations", {})["run.oci.seccomp_bpf_data"] = \
        base64.b64encode(open(bpf[0], "rb").read()).decode()
json.dump(c, open(out + "/config.json", "w"), indent=1)
json.dump(nosec, open(out_nosec + "/config.json", "w"), indent=1)
PY

# crun 1.8 refuses this hybrid cgroup layout (a non-empty cgroup2 at /sys/fs/cgroup/unified):
# run it in a private mount namespace without that mount; the host's mounts stay untouched.
mkdir -p "$NSDIR"
mount --bind "$NSDIR" "$NSDIR"
mount --make-private "$NSDIR"
touch "$NSDIR/mnt"
unshare --mount="$NSDIR/mnt" --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null || true'
CRUN="nsenter --mount=$NSDIR/mnt crun --root $WORK/crun run"

set -- \
    "rbox" "$RBOX --root $WORK/root run --rm --network none busybox true" \
    "crun" "$CRUN -b $WORK/bundle rbox-bench" \
    "crun-rboxcfg" "$CRUN -b $WORK/bundle-rbox rbox-bench"
# Seccomp's share, when this rbox knows --security-opt seccomp=unconfined.
NOSEC="$RBOX --root $WORK/root run --rm --network none --security-opt seccomp=unconfined busybox true"
if $NOSEC >/dev/null 2>&1; then
    set -- "$@" "rbox-nosec" "$NOSEC" "crun-rboxcfg-nosec" "$CRUN -b $WORK/bundle-rbox-nosec rbox-bench"
fi
if [ -n "${RBOX_BASE_BIN:-}" ]; then
    # Its own root: state directories carry what the build under test set up.
    "$RBOX_BASE_BIN" --root "$WORK/root-base" import --change 'CMD ["sh"]' "$TAR" busybox:latest >/dev/null
    set -- "$@" "rbox-base" "$RBOX_BASE_BIN --root $WORK/root-base run --rm --network none busybox true"
fi
for b in bundle bundle-rbox; do
    $CRUN -b "$WORK/$b" rbox-bench-check || { echo "crun failed on $b" >&2; exit 1; }
done
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

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
times = {}
for r in range(1, rounds + 1):
    for res in json.load(open(f"{work}/round{r}.json"))["results"]:
        times.setdefault(res["command"], []).extend(t * 1000 for t in res["times"])
med = {name: statistics.median(t) for name, t in times.items()}
crun, cfg = med["crun"], med.get("crun-rboxcfg")
print(f"{'command':19} {'median':>7} {'min':>7} {'max':>7} {'/crun':>7} {'/crun-rboxcfg':>14}"
      f"   ({rounds} rounds, ms)")
for name, t in times.items():
    vs_cfg = f"{med[name] / cfg:13.2f}x" if cfg else ""
    print(f"{name:19} {med[name]:7.1f} {min(t):7.1f} {max(t):7.1f} {med[name] / crun:6.2f}x {vs_cfg}")
if "rbox-nosec" in med and "crun-rboxcfg-nosec" in med:
    print(f"seccomp share (median with - without): rbox {med['rbox'] - med['rbox-nosec']:.1f} ms, "
          f"crun {med['crun-rboxcfg'] - med['crun-rboxcfg-nosec']:.1f} ms")
PY
