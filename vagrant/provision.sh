#!/usr/bin/env bash
# Provisions one rbox lab node, as root, from the synced project tree: installs what rbox needs
# at run time (nothing when the image has it all, as test.sh's offline image does), installs the
# rbox binary, imports the offline busybox and nginx images, configures the cluster store
# (etcd on node 1) and the boot unit. Idempotent: `vagrant provision` runs it again.
#
# Environment (the Vagrantfile and test.sh set it):
#   RBOX_LAB_NODE      this node's number, 1..N (node 1 runs etcd)
#   RBOX_LAB_IP        this node's address on the lab's private network
#   RBOX_LAB_ETCD_IP   node 1's address there
#   RBOX_SRC           the project tree (default /vagrant)
#   RBOX_BINARY        a prebuilt rbox to install (default: the tree's target/release/rbox, then
#                      target/debug/rbox; else `cargo build --release` in the node if it has cargo)
#
# rbox's cluster settings go to /etc/default/rbox (for units: EnvironmentFile=) and the same lines
# to /etc/environment (so ssh sessions and sudo get them), as the env variables rbox reads:
#   RBOX_CLUSTER_STORE=etcd://<node 1>:2379
#   RBOX_CLUSTER_ADVERTISE=<this node's address>
set -euo pipefail

node=${RBOX_LAB_NODE:?RBOX_LAB_NODE (1..N) is required}
ip=${RBOX_LAB_IP:?RBOX_LAB_IP is required}
etcd_ip=${RBOX_LAB_ETCD_IP:?RBOX_LAB_ETCD_IP is required}
src=${RBOX_SRC:-/vagrant}
say() { echo "provision[node$node] ${SECONDS}s: $*"; }

# Runtime deps. test.sh's image has them all (its VMs are offline); a Vagrant box gets them here.
need=(iptables iproute2 kmod libseccomp2 curl busybox-static nginx-light)
[ "$node" = 1 ] && need+=(etcd-server etcd-client)
installed=" $(dpkg-query -W -f='${db:Status-Abbrev}${Package} ' "${need[@]}" 2>/dev/null) "
missing=()
for p in "${need[@]}"; do
    [[ $installed == *" ii $p "* ]] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# disable_unit U: U neither enabled nor running (each systemctl disable reloads systemd: only when
# needed, it is slow on small VMs).
disable_unit() {
    if systemctl is-enabled -q "$1" 2>/dev/null || systemctl is-active -q "$1"; then
        systemctl disable -q --now "$1"
    fi
}
# nginx-light is only the image recipe's source: its own service would hold port 80.
disable_unit nginx.service

# The binary.
bin=${RBOX_BINARY:-}
if [ -z "$bin" ]; then
    for b in "$src/target/release/rbox" "$src/target/debug/rbox"; do
        if [ -x "$b" ] && "$b" --version >/dev/null 2>&1; then bin=$b; break; fi
    done
fi
if [ -z "$bin" ]; then
    command -v cargo >/dev/null || {
        echo "provision: no rbox binary in $src/target and no cargo in the node:" \
            "run 'cargo build --release' on the host (Linux x86_64) or install Rust in the node" >&2
        exit 1
    }
    say "building rbox (cargo build --release)"
    mkdir -p /var/cache/rbox-build
    (cd "$src" && CARGO_TARGET_DIR=/var/cache/rbox-build cargo build --release -q -p rbox -p rbox-shim)
    bin=/var/cache/rbox-build/release/rbox
fi
install -m 0755 "$bin" /usr/local/bin/rbox.new
mv /usr/local/bin/rbox.new /usr/local/bin/rbox
# The monitor's small mode, beside it (without it monitors stay the full binary).
if [ -x "$(dirname "$bin")/rbox-shim" ]; then
    install -m 0755 "$(dirname "$bin")/rbox-shim" /usr/local/bin/rbox-shim.new
    mv /usr/local/bin/rbox-shim.new /usr/local/bin/rbox-shim
fi
say "rbox $(/usr/local/bin/rbox --version 2>/dev/null | head -1) from $bin"

printf 'overlay\nbr_netfilter\n' > /etc/modules-load.d/rbox.conf
modprobe overlay 2>/dev/null || true
modprobe br_netfilter 2>/dev/null || true

# Cluster settings.
{
    echo "# rbox lab (vagrant/provision.sh): the cluster store and this node's address"
    echo "RBOX_CLUSTER_STORE=etcd://$etcd_ip:2379"
    echo "RBOX_CLUSTER_ADVERTISE=$ip"
} > /etc/default/rbox
touch /etc/environment
sed -i '/^RBOX_CLUSTER_\(STORE\|ADVERTISE\)=/d' /etc/environment
grep '^RBOX_' /etc/default/rbox >> /etc/environment

if [ "$node" = 1 ]; then
    cat > /etc/default/etcd <<E
# rbox lab: the cluster store, on the lab's private network only (no auth: a lab)
ETCD_NAME=node1
ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379,http://$ip:2379
ETCD_ADVERTISE_CLIENT_URLS=http://$ip:2379
E
    systemctl is-enabled -q etcd.service || systemctl enable -q etcd.service
    systemctl restart --no-block etcd.service
    say "etcd starting on $ip:2379"
else
    disable_unit etcd.service
fi

# The boot unit (contrib/, from the lifecycle issue) when the tree has it.
unit=$src/contrib/systemd/rbox-boot.service
if [ -f "$unit" ]; then
    install -m 0644 "$unit" /etc/systemd/system/rbox-boot.service
    exe=$(sed -n 's/^ExecStart=[-@+!]*\([^ ]*\).*/\1/p' "$unit" | head -1)
    [ -n "$exe" ] && [ "$exe" != /usr/local/bin/rbox ] && [ ! -e "$exe" ] &&
        ln -s /usr/local/bin/rbox "$exe"
    mkdir -p /etc/systemd/system/rbox-boot.service.d
    printf '[Service]\nEnvironmentFile=-/etc/default/rbox\n' \
        > /etc/systemd/system/rbox-boot.service.d/rbox-lab.conf
    systemctl daemon-reload
    systemctl enable -q rbox-boot.service
    say "rbox-boot.service enabled"
else
    say "no $unit in the tree: containers are not started at boot"
fi

# Offline images, built by the project's recipes from this node's Debian packages.
export RBOX=/usr/local/bin/rbox OUT=/var/cache/rbox-images
for img in busybox nginx; do
    if "$RBOX" image inspect "$img:latest" >/dev/null 2>&1; then continue; fi
    sh "$src/images/recipes/$img.sh" >/dev/null
    say "imported $img:latest"
done
say "done"
