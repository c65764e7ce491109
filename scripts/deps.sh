#!/usr/bin/env bash
# Installs what building and testing rbox needs on Debian 12 (idempotent; run as root).
set -euo pipefail

packages=(
  libseccomp-dev pkg-config   # libcontainer's seccomp support links -lseccomp
  iptables iproute2 kmod      # firewall rules; `ip`/`bridge` only in tests, never in rbox
  nftables                    # the nftables firewall backend (`nft -f -`)
  busybox-static nginx-light  # the offline image recipes
  curl wget procps util-linux psmisc  # clients and tools the tests use (curl, script, ps)
  socat                       # UDP client of the published-port tests
  docker-registry skopeo python3 openssl  # pull tests: registry, pusher, tiny test servers, TLS
  dnsmasq-base                # the upstream DNS server the resolver tests run themselves
  etcd-server etcd-client iperf3  # overlay tests: the cluster store (etcdctl for its keys); bench/overlay.sh
  docker-compose python3-docker  # Engine API tests: compose 1.29 and docker-py (Debian's; a PyPI docker-py 7 on python3's path is used first)
  containernetworking-plugins # CNI tests: Debian's reference plugins in /usr/lib/cni (bridge, host-local, portmap, firewall, macvlan)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Overlay rootfs and bridged traffic; both may be built in or unavailable as modules.
modprobe overlay 2>/dev/null || true
modprobe br_netfilter 2>/dev/null || true
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
