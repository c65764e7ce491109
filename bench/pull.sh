#!/bin/sh
# Pull + unpack of the offline nginx image from a loopback registry: `rbox pull` against
# `skopeo copy` to an OCI layout + `umoci unpack` (when umoci is installed); then the unpack
# throughput of rbox (import of the uncompressed layer tar: hash + store + unpack) against plain
# `tar -x` of the same tar. Medians of RUNS; prints ratios (rbox time / other time).
# Usage: bench/pull.sh [runs]   (as root; needs docker-registry, skopeo, python3; uses its own
# port, registry storage and --root under /tmp, all removed on exit)
set -eu
RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# The newer of the release and debug builds (a stale release binary may predate `pull`).
RBOX=${RBOX_BIN:-$(ls -t "$HERE/target/release/rbox" "$HERE/target/debug/rbox" 2>/dev/null | head -1)}
NGINX=$HERE/target/images/nginx.tar
[ -f "$NGINX" ] || sh "$HERE/images/recipes/nginx.sh" >/dev/null
WORK=$(mktemp -d /tmp/rbox-bench-pull.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=
cleanup() {
    [ -n "$REG" ] && kill "$REG" 2>/dev/null && wait "$REG" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG=$!
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 200 ] || { echo "registry did not start" >&2; exit 1; }
    sleep 0.05
done

"$RBOX" --root "$WORK/src" import --change 'CMD ["nginx","-g","daemon off;"]' --change 'EXPOSE 80' \
    "$NGINX" nginx:latest >/dev/null
"$RBOX" --root "$WORK/src" save -o "$WORK/nginx-archive.tar" nginx
skopeo copy -q --dest-tls-verify=false "docker-archive:$WORK/nginx-archive.tar" \
    "docker://127.0.0.1:$PORT/nginx:latest"
IMG=127.0.0.1:$PORT/nginx:latest

median_ms() { # setup-cmd cmd: median wall time of cmd in ms over $RUNS runs, setup untimed
    sh -c "$1" && sh -c "$2" >/dev/null || { echo "failed: $2" >&2; kill $$; }
    i=0
    while [ $i -lt "$RUNS" ]; do
        sh -c "$1"
        s=$(date +%s%N); sh -c "$2" >/dev/null; e=$(date +%s%N)
        echo $(((e - s) / 1000))
        i=$((i + 1))
    done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo "rbox: $RBOX; nginx image $(du -h "$NGINX" | cut -f1) uncompressed; $RUNS runs each (median)"
rbox_pull=$(median_ms "rm -rf $WORK/r" "$RBOX --root $WORK/r pull -q $IMG")
echo "rbox pull (download, verify, gunzip, unpack, register): ${rbox_pull} ms"
skopeo_ms=$(median_ms "rm -rf $WORK/oci" \
    "skopeo copy -q --src-tls-verify=false docker://$IMG oci:$WORK/oci:nginx")
echo "skopeo copy to an OCI layout (download, verify only): ${skopeo_ms} ms  rbox/skopeo $(ratio "$rbox_pull" "$skopeo_ms")"
if command -v umoci >/dev/null 2>&1; then
    both=$(median_ms "rm -rf $WORK/oci $WORK/bundle" \
        "skopeo copy -q --src-tls-verify=false docker://$IMG oci:$WORK/oci:nginx && umoci unpack --image $WORK/oci:nginx $WORK/bundle")
    echo "skopeo copy + umoci unpack: ${both} ms  rbox/(skopeo+umoci) $(ratio "$rbox_pull" "$both")"
else
    echo "umoci not installed: skopeo+umoci comparison skipped"
fi

# Unpack throughput: the same uncompressed layer tar.
LAYER=$WORK/layer.tar
cp "$NGINX" "$LAYER"
MB=$(awk -v b="$(stat -c %s "$LAYER")" 'BEGIN {printf "%.1f", b / 1e6}')
tar_ms=$(median_ms "rm -rf $WORK/x && mkdir $WORK/x" "tar -xf $LAYER -C $WORK/x")
imp_ms=$(median_ms "rm -rf $WORK/i" "$RBOX --root $WORK/i import $LAYER bench:latest")
echo "unpack ${MB} MB: tar -x ${tar_ms} ms ($(ratio "$MB" "$tar_ms" | awk '{printf "%.0f", $1 * 1000}') MB/s), rbox import ${imp_ms} ms ($(ratio "$MB" "$imp_ms" | awk '{printf "%.0f", $1 * 1000}') MB/s)  rbox/tar $(ratio "$imp_ms" "$tar_ms")"
