#!/bin/sh
# Throughput of a published port: iperf3 server in a container published with -p, client on
# the host, SECS seconds each via 127.0.0.1:port, via the host's own address (the bridge
# gateway) and directly to the container IP, plus host loopback as the ceiling. Prints Gbit/s
# and the ratios the issue asks for (127.0.0.1 path >= 95% of the container-IP path).
#
#   bench/ports.sh [SECS] [ROUNDS]   (root; iperf3 installed; cargo build --release first)
#
# Each round measures the four paths in a rotated order; the medians over the rounds are
# reported, so load from other work on the machine hits every path alike.
#
# Uses `rbox run -d -p` when this rbox has it; otherwise the same kernel path through the
# hidden `rbox network sandbox` hook (a bare netns with iperf3 run inside it by nsenter).
set -eu
SECS=${1:-5}
ROUNDS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RBOX=${RBOX_BIN:-$HERE/target/release/rbox}
[ -x "$RBOX" ] || RBOX=$HERE/target/debug/rbox
command -v iperf3 >/dev/null || { echo "iperf3 is required (apt-get install iperf3)" >&2; exit 1; }
TAR=$HERE/target/images/iperf3.tar
export RBOX_DEFAULT_BRIDGE=rbb-ports RBOX_DEFAULT_SUBNET=10.205.250.0/24
GW=10.205.250.1
HPORT=15201
WORK=$(mktemp -d /tmp/rbox-bench-ports.XXXXXX)
R="$RBOX --root $WORK/root"
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    $R rm -f perf >/dev/null 2>&1 || true
    $R network sandbox release benchports01 >/dev/null 2>&1 || true
    $R system prune -f >/dev/null 2>&1 || true
    $R network teardown >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if $R run --help 2>/dev/null | grep -q -- '--publish'; then
    MODE=container
    [ -f "$TAR" ] || sh "$HERE/images/recipes/iperf3.sh" >/dev/null
    $R import --change 'CMD ["iperf3","-s"]' --change 'EXPOSE 5201' "$TAR" iperf3:latest >/dev/null
    $R run -d --name perf -p "$HPORT:5201" iperf3 >/dev/null
    CIP=$($R inspect --format '{{.NetworkSettings.IPAddress}}' perf)
else
    MODE=sandbox
    $R network sandbox create benchports01 >/dev/null
    CIP=$($R network sandbox connect bridge benchports01 | sed 's/.*"IPAddress":"\([^"]*\)".*/\1/')
    nsenter --net="$WORK/root/netns/benchports01" iperf3 -s >/dev/null 2>&1 &
    PIDS="$PIDS $!"
    mkfifo "$WORK/hold"
    $R network sandbox publish -p "$HPORT:5201" benchports01 < "$WORK/hold" >/dev/null &
    PIDS="$PIDS $!"
    exec 3>"$WORK/hold"
fi
iperf3 -s -p 15299 -B 127.0.0.1 >/dev/null 2>&1 &
PIDS="$PIDS $!"

# Waits until the server answers, then measures; prints Gbit/s received.
gbps() {
    i=0
    until iperf3 -c "$1" -p "$2" -t 1 >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -lt 50 ] || { echo "no iperf3 server at $1:$2" >&2; exit 1; }
        sleep 0.1
    done
    # The server takes one test at a time and may still be finishing the last one: retry.
    for _ in 1 2 3 4 5; do
        if iperf3 -c "$1" -p "$2" -t "$SECS" -J > "$WORK/out.json" 2>/dev/null &&
            python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))' "$WORK/out.json" 2>/dev/null; then
            return
        fi
        sleep 0.5
    done
    echo "iperf3 to $1:$2 kept failing" >&2
    exit 1
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
L= VL= VG= D=
r=0
while [ $r -lt "$ROUNDS" ]; do
    for k in $(seq 0 3 | awk -v r=$r '{print ($1 + r) % 4}'); do
        case $k in
            0) L="$L $(gbps 127.0.0.1 15299)" ;;
            1) VL="$VL $(gbps 127.0.0.1 $HPORT)" ;;
            2) VG="$VG $(gbps $GW $HPORT)" ;;
            3) D="$D $(gbps "$CIP" 5201)" ;;
        esac
    done
    r=$((r + 1))
done
LO=$(echo "$L" | median); VIA_LO=$(echo "$VL" | median); VIA_GW=$(echo "$VG" | median)
DIRECT=$(echo "$D" | median)
echo "mode: $MODE, $ROUNDS rounds x $SECS s, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
echo "samples (Gbit/s): loopback[$L ] 127.0.0.1[$VL ] host-address[$VG ] direct[$D ]"
printf '%-36s %8s Gbit/s\n' "host loopback (ceiling)" "$LO" \
    "127.0.0.1:$HPORT -> container" "$VIA_LO" \
    "$GW:$HPORT (host address)" "$VIA_GW" \
    "container IP $CIP:5201 (direct)" "$DIRECT"
python3 - "$VIA_LO" "$VIA_GW" "$DIRECT" "$LO" <<'PY'
import sys
lo, gw, direct, ceil = map(float, sys.argv[1:])
print(f"127.0.0.1 path / direct: {lo/direct*100:.1f}%  (goal >= 95%)")
print(f"host address path / direct: {gw/direct*100:.1f}%")
print(f"direct / host loopback: {direct/ceil*100:.1f}%")
PY
