#!/bin/sh
# Builds a small nginx rootfs tarball from Debian's nginx-light, offline: the nginx binary, the
# shared libraries `ldd` names, a minimal config logging to stdout/stderr, an index.html.
#   ${OUT:-target/images}/nginx.tar   (OUT relative to the workspace root)
# With RBOX=/path/to/rbox in the environment, or --import, it is also imported as nginx:latest
# with CMD ["nginx","-g","daemon off;"] and EXPOSE 80.
set -eu

WS=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-target/images}
case $OUT in /*) ;; *) OUT=$WS/$OUT ;; esac
IMPORT=
[ "${1:-}" = "--import" ] && IMPORT=1
[ -n "${RBOX:-}" ] && IMPORT=1

if [ ! -x /usr/sbin/nginx ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
NGINX=/usr/sbin/nginx

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/.nginx-rootfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/rootfs
. "$WS/images/recipes/common.sh"
mkdir -p "$R/usr/sbin" "$R/etc/nginx" "$R/usr/share/nginx/html" "$R/var/log/nginx" \
    "$R/var/lib/nginx" "$R/run" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root"
copy_binary "$NGINX" /usr/sbin/nginx

cat > "$R/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
P
cat > "$R/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$R/etc/nsswitch.conf"

# `daemon off;` comes from the image's CMD (nginx refuses it twice).
cat > "$R/etc/nginx/nginx.conf" <<'C'
user nobody nogroup;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr notice;

events {
    worker_connections 512;
}

http {
    types {
        text/html html htm;
        text/plain txt;
        text/css css;
        application/javascript js;
        application/json json;
        image/png png;
    }
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;

    server {
        listen 80 default_server;
        root /usr/share/nginx/html;
        index index.html;
        location / {
            try_files $uri $uri/ =404;
        }
    }
}
C
cat > "$R/usr/share/nginx/html/index.html" <<'H'
<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>Served by nginx in an rbox container.</p>
</body>
</html>
H
# nginx opens its compiled-in log paths before reading the config.
ln -s /dev/stderr "$R/var/log/nginx/error.log"
ln -s /dev/stdout "$R/var/log/nginx/access.log"
finish nginx --change 'CMD ["nginx","-g","daemon off;"]' --change 'EXPOSE 80'
