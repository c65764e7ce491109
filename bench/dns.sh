#!/bin/sh
# Embedded DNS: latency of 10,000 sequential queries from inside a container's network namespace
# (p50/p99, one query in flight, measured by a small python3 client) for a container name
# (answered by the resolver) and the resolver's RSS; then the same against aardvark-dns (podman's
# resolver) serving the same name on its own bridge, when it is installed. The resolver is asked
# where containers ask it: 127.0.0.11 in the sandbox (rbox >= issue 11), else the gateway.
# Usage: bench/dns.sh [queries]    (as root; own root, bridges rbt-bdns*, subnets 10.207.24x.0/24)
set -eu
N=${1:-10000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
[ -x "$RBOX" ] || RBOX=$HERE/target/debug/rbox
ROOT=$(mktemp -d /tmp/rbox-bench-dns.XXXXXX)
export RBOX_DEFAULT_BRIDGE=rbt-bdns0 RBOX_DEFAULT_SUBNET=10.207.240.0/24
# Keep forwarded queries on this machine: nothing here is forwarded, but be safe.
printf 'nameserver 127.0.0.1\n' >"$ROOT/host-resolv.conf"
export RBOX_HOST_RESOLV_CONF=$ROOT/host-resolv.conf
R="$RBOX --root $ROOT"
AARD_DIR=""
AARD_PID=""
cleanup() {
    [ -n "$AARD_PID" ] && kill "$AARD_PID" 2>/dev/null || true
    [ -n "$AARD_DIR" ] && rm -rf "$AARD_DIR"
    ip link del rbt-bdns2 2>/dev/null || true
    ip netns del rbt-bdns-a 2>/dev/null || true
    $R network sandbox release bench-client >/dev/null 2>&1 || true
    $R network sandbox release bench-server >/dev/null 2>&1 || true
    $R network teardown >/dev/null 2>&1 || true
    grep " $ROOT" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT INT TERM

# The load tool: sequential A queries for one name, per-query wall time, p50/p99 in µs.
LOAD=$ROOT/load.py
cat >"$LOAD" <<'PY'
import socket, struct, sys, time
server, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((server, 53))
lat, fails = [], 0
for i in range(n + 200):
    q = struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname + b"\0\1\0\1"
    t = time.perf_counter_ns()
    s.send(q)
    try:
        r = s.recv(4096)
    except socket.timeout:
        fails += 1
        continue
    dt = time.perf_counter_ns() - t
    ok = r[:2] == q[:2] and (r[3] & 0xF) == 0 and struct.unpack(">H", r[6:8])[0] > 0
    if i >= 200:  # warm-up
        lat.append(dt) if ok else None
        fails += 0 if ok else 1
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] / 1000
print(f"{len(lat)} answers, {fails} failed: p50 {pct(0.50):.0f} us, p99 {pct(0.99):.0f} us")
PY

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$1/status"; }

$R network create --subnet 10.207.241.0/24 -o com.docker.network.bridge.name=rbt-bdns1 bench >/dev/null
$R network sandbox create bench-server >/dev/null
$R network sandbox create bench-client >/dev/null
$R network sandbox connect --alias web bench bench-server >/dev/null
$R network sandbox connect bench bench-client >/dev/null
PID=$(cat "$ROOT/dns/resolver.pid")
SERVER=10.207.241.1
if nsenter --net="$ROOT/netns/bench-client" python3 "$LOAD" 127.0.0.11 web 1 >/dev/null 2>&1; then
    SERVER=127.0.0.11
fi
echo "rbox resolver (pid $PID, $(readlink -f "$RBOX")) at $SERVER: RSS $(rss "$PID") at start"
nsenter --net="$ROOT/netns/bench-client" python3 "$LOAD" "$SERVER" web "$N" | sed 's/^/  rbox:         /'
echo "  RSS after:    $(rss "$PID"), threads $(awk '/Threads/ {print $2}' /proc/$PID/status)"

AARD=$(command -v aardvark-dns || true)
[ -z "$AARD" ] && [ -x /usr/lib/podman/aardvark-dns ] && AARD=/usr/lib/podman/aardvark-dns
if [ -n "$AARD" ]; then
    # aardvark-dns on its own bridge and gateway, one record "web", queried from a netns.
    AARD_DIR=$(mktemp -d /tmp/rbox-bench-aard.XXXXXX)
    ip link add rbt-bdns2 type bridge && ip addr add 10.207.242.1/24 dev rbt-bdns2 && ip link set rbt-bdns2 up
    ip netns add rbt-bdns-a
    ip link add rbt-bdns2v type veth peer name eth0 netns rbt-bdns-a
    ip link set rbt-bdns2v master rbt-bdns2 up
    ip -n rbt-bdns-a addr add 10.207.242.3/24 dev eth0
    ip -n rbt-bdns-a link set eth0 up
    ip -n rbt-bdns-a link set lo up
    mkdir -p "$AARD_DIR/config"
    printf '10.207.242.1 127.0.0.1\n1111111111111111111111111111111111111111111111111111111111111111 10.207.242.2  web,web\n' \
        >"$AARD_DIR/config/bench"
    "$AARD" --config "$AARD_DIR/config" -p 53 run >"$AARD_DIR/log" 2>&1 &
    AARD_PID=$!
    i=0
    while [ $i -lt 50 ] && ! ss -lun | grep -q '10.207.242.1:53'; do sleep 0.1; i=$((i + 1)); done
    # It daemonises: the listener's pid is the one to measure and stop.
    APID=$(ss -lunpH | awk '/10.207.242.1:53/' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
    [ -n "$APID" ] && AARD_PID=$APID
    echo "aardvark-dns ($AARD): RSS $(rss "$APID" 2>/dev/null || echo ?) at start"
    ip netns exec rbt-bdns-a python3 "$LOAD" 10.207.242.1 web "$N" | sed 's/^/  aardvark-dns: /'
    echo "  RSS after:    $(rss "$APID" 2>/dev/null || echo ?), threads $(awk '/Threads/ {print $2}' "/proc/$APID/status" 2>/dev/null || echo ?)"
else
    echo "aardvark-dns not installed: no comparison"
fi
