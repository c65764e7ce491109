#!/bin/sh
# Overlay networks (issue 13), in one run on a lab of network namespaces: three hosts on an
# underlay bridge with etcd in a fourth namespace, each host its own rbox root.
#  1. Throughput: iperf3 between containers on two hosts over an overlay, against iperf3
#     between the same two hosts over the underlay (goal: overlay >= 0.8 of the underlay).
#  2. Start cost: `rbox run -d` on an overlay against on a bridge, on a host of a 3-host
#     cluster (goal: the overlay adds <= 10 ms). hyperfine, interleaved rounds.
#
#   bench/overlay.sh [SECS] [ROUNDS] [RUNS]   (root; iperf3, etcd-server, hyperfine;
#                                             cargo build --release first)
#
# Names: namespaces rbt-ob-*, links rbo-b*, underlay 10.186.90.0/24, overlay 10.185.0.0/16;
# etcd listens only inside the lab namespace. Everything is removed on exit.
set -eu
SECS=${1:-5}
ROUNDS=${2:-3}
RUNS=${3:-20}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
[ -x "$RBOX" ] || RBOX=$HERE/target/debug/rbox
for t in iperf3 etcd hyperfine python3; do
    command -v $t >/dev/null || { echo "$t is required (scripts/deps.sh)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/rbt-ob.XXXXXX)
LAB=rbt-ob-lab
STORE=10.186.90.10:23790
ETCD=
PIDS=
h() { echo "rbt-ob-h$1"; }
# rb N ARGS: rbox of host N.
rb() {
    n=$1; shift
    RBOX_CLUSTER_STORE=etcd://$STORE RBOX_DEFAULT_BRIDGE=rbo-bdflt RBOX_DEFAULT_SUBNET=10.186.250.0/24 \
        RBOX_PULL=never nsenter --net=/run/netns/"$(h "$n")" "$RBOX" --root "$WORK/root$n" "$@"
}
cleanup() {
    set +e
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for n in 1 2 3; do
        [ -d "$WORK/root$n" ] || continue
        for c in $(rb "$n" ps -aq 2>/dev/null); do rb "$n" rm -f "$c" >/dev/null 2>&1; done
        rb "$n" system prune -f >/dev/null 2>&1
    done
    rb 1 network rm ovb >/dev/null 2>&1
    for n in 1 2 3; do
        p=$(cat "$WORK/root$n/cluster/agent.pid" 2>/dev/null) && kill -9 "$p" 2>/dev/null
        grep " $WORK/root$n" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l 2>/dev/null
    done
    [ -n "$ETCD" ] && kill "$ETCD" 2>/dev/null && wait "$ETCD" 2>/dev/null
    for n in 1 2 3; do ip netns del "$(h "$n")" 2>/dev/null; done
    ip netns del $LAB 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns add $LAB
ip netns exec $LAB ip link set lo up
ip netns exec $LAB ip link add rbo-bul type bridge
ip netns exec $LAB ip addr add 10.186.90.1/24 dev rbo-bul
ip netns exec $LAB ip addr add 10.186.90.10/24 dev rbo-bul
ip netns exec $LAB ip link set rbo-bul up
for n in 1 2 3; do
    ip netns add "$(h "$n")"
    ip netns exec "$(h "$n")" ip link set lo up
    ip link add rbo-b$n netns $LAB type veth peer name eth0 netns "$(h "$n")"
    ip netns exec $LAB ip link set rbo-b$n master rbo-bul up
    ip netns exec "$(h "$n")" ip addr add 10.186.90.1$n/24 dev eth0
    ip netns exec "$(h "$n")" ip link set eth0 up
    ip netns exec "$(h "$n")" ip route add default via 10.186.90.1
done
ip netns exec $LAB etcd --data-dir "$WORK/etcd" --listen-client-urls "http://$STORE" \
    --advertise-client-urls "http://$STORE" --listen-peer-urls http://127.0.0.1:23791 \
    --initial-advertise-peer-urls http://127.0.0.1:23791 \
    --initial-cluster default=http://127.0.0.1:23791 >"$WORK/etcd.log" 2>&1 &
ETCD=$!
i=0
until ip netns exec $LAB curl -fs -X POST "http://$STORE/v3/kv/range" -d '{"key":"AA=="}' >/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "etcd did not start" >&2; exit 1; }
    sleep 0.1
done

TAR=$HERE/target/images/iperf3.tar
[ -f "$TAR" ] || sh "$HERE/images/recipes/iperf3.sh" >/dev/null
for n in 1 2 3; do
    mkdir -p "$WORK/root$n"
    rb "$n" import --change 'CMD ["sh"]' "$HERE/target/images/busybox.tar" busybox:latest >/dev/null
    rb "$n" import --change 'CMD ["iperf3","-s"]' "$TAR" iperf3:latest >/dev/null
done
rb 1 network create -d overlay --subnet 10.185.0.0/16 ovb >/dev/null
rb 1 run -d --name srv --network ovb iperf3 >/dev/null
SRV=$(rb 1 inspect -f '{{(index .NetworkSettings.Networks "ovb").IPAddress}}' srv)
rb 2 run -d --name cli --network ovb iperf3 >/dev/null
rb 3 run -d --name third --network ovb busybox sleep 100000 >/dev/null
ip netns exec "$(h 1)" iperf3 -s -p 5202 >/dev/null 2>&1 &
PIDS="$PIDS $!"
MTU_O=$(ip netns exec "$(h 1)" cat /sys/class/net/rbox-vx4096/mtu)

# gbps WHERE ADDR PORT: Gbit/s of SECS seconds from host 2 (in container cli, or the host).
gbps() {
    for _ in 1 2 3 4 5; do
        if [ "$1" = overlay ]; then
            rb 2 exec cli iperf3 -c "$2" -p "$3" -t "$SECS" -J >"$WORK/out.json" 2>/dev/null || { sleep 0.5; continue; }
        else
            ip netns exec "$(h 2)" iperf3 -c "$2" -p "$3" -t "$SECS" -J >"$WORK/out.json" 2>/dev/null || { sleep 0.5; continue; }
        fi
        python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))' "$WORK/out.json" && return
    done
    echo "iperf3 ($1) kept failing" >&2
    exit 1
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
O= U=
r=0
while [ $r -lt "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 0 ]; then
        O="$O $(gbps overlay "$SRV" 5201)"; U="$U $(gbps underlay 10.186.90.11 5202)"
    else
        U="$U $(gbps underlay 10.186.90.11 5202)"; O="$O $(gbps overlay "$SRV" 5201)"
    fi
    r=$((r + 1))
done
OV=$(echo "$O" | median); UN=$(echo "$U" | median)

# Start cost on host 1 (a 3-host cluster): run -d then rm -f outside the measurement.
cat >"$WORK/run.sh" <<EOF
#!/bin/sh
exec env RBOX_CLUSTER_STORE=etcd://$STORE RBOX_DEFAULT_BRIDGE=rbo-bdflt RBOX_DEFAULT_SUBNET=10.186.250.0/24 \
    RBOX_PULL=never nsenter --net=/run/netns/$(h 1) "$RBOX" --root "$WORK/root1" "\$@"
EOF
chmod +x "$WORK/run.sh"
hyperfine -N -w 3 -r "$RUNS" \
    --prepare "$WORK/run.sh rm -f bench-c" \
    -n bridge "$WORK/run.sh run -d --name bench-c busybox sleep 1000" \
    -n overlay "$WORK/run.sh run -d --name bench-c --network ovb busybox sleep 1000" \
    -n bridge2 "$WORK/run.sh run -d --name bench-c busybox sleep 1000" \
    -n overlay2 "$WORK/run.sh run -d --name bench-c --network ovb busybox sleep 1000" \
    --export-json "$WORK/start.json" >/dev/null 2>&1
"$WORK/run.sh" rm -f bench-c >/dev/null 2>&1 || true

echo "overlay.sh: $ROUNDS rounds x $SECS s, $RUNS runs, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), overlay MTU $MTU_O"
echo "samples (Gbit/s): overlay[$O ] underlay[$U ]"
python3 - "$OV" "$UN" "$WORK/start.json" <<'PY'
import json, sys
ov, un = float(sys.argv[1]), float(sys.argv[2])
print(f"iperf3 host 2 -> host 1: overlay (container to container) {ov:.2f} Gbit/s, "
      f"underlay (host to host) {un:.2f} Gbit/s: {ov/un:.2f} of the underlay (goal >= 0.8)")
res = {r["command"]: r for r in json.load(open(sys.argv[3]))["results"]}
med = {k: sorted(v["times"])[len(v["times"]) // 2] * 1000 for k, v in res.items()}
b = sorted([med["bridge"], med["bridge2"]])[0]
o = sorted([med["overlay"], med["overlay2"]])[0]
for k in ("bridge", "overlay", "bridge2", "overlay2"):
    print(f"run -d --network {k.rstrip('2')} (set {2 if k.endswith('2') else 1}): median {med[k]:.1f} ms")
print(f"run -d: overlay adds {o - b:+.1f} ms over a bridge (better set of each; goal <= 10 ms)")
PY
