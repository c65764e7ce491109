#!/usr/bin/env bash
# Builds the rbox lab's VM disk image offline from Debian 12 packages (mmdebstrap), with every
# package the VMs need preinstalled, so that the VMs themselves never need a network beyond their
# private one. Prints the image directory, which holds:
#   disk.raw     ext4 root file system, no partition table (root=/dev/vda), booted read-only
#                through qemu's snapshot=on, so one cached image serves every VM and every run
#   vmlinuz      Debian's linux-image-amd64 kernel and
#   initrd.img   its initramfs (virtio + ext4 only), for qemu's direct kernel boot
# The image is cached under $RBOX_LAB_CACHE/image-<hash of this file> and rebuilt only when this
# recipe changes. Packages come from the host's own apt sources (RBOX_LAB_APT_SOURCES, default the
# host's debian.sources or sources.list), the only network the build uses.
#
# Inside the image (all configured from the kernel command line, so one image fits every node):
#   rbox_lab.ip=ADDR/LEN   the node's address on the lab network (no gateway, no DNS: offline)
#   systemd.hostname=NAME  its hostname
#   9p mounts: tag "vagrant" at /vagrant (the project tree, read-only, as Vagrant syncs it) and
#   tag "lab" at /lab (the run's files: rbox binary, authorized_keys), both read-only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${RBOX_LAB_CACHE:-/var/cache/rbox-lab}
hash=$(sha256sum "$here/image.sh" | cut -c1-12)
dir=$cache/image-$hash
# --cached: only tell whether the image is there (exit 1 if it is not).
if [ -f "$dir/ok" ]; then
    echo "$dir"
    exit 0
fi
[ "${1:-}" = --cached ] && exit 1

sources=${RBOX_LAB_APT_SOURCES:-}
if [ -z "$sources" ]; then
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        [ -s "$f" ] && { sources=$f; break; }
    done
fi
[ -n "$sources" ] || { echo "image.sh: no apt sources found (set RBOX_LAB_APT_SOURCES)" >&2; exit 1; }

if ! command -v mmdebstrap >/dev/null || ! command -v mke2fs >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap e2fsprogs >/dev/null
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.image-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

packages=(
    linux-image-amd64 initramfs-tools systemd-sysv udev dbus kmod  # boot
    openssh-server                       # how test.sh (and `vagrant ssh`) drive the node
    iproute2 iptables procps curl iputils-ping  # rbox's runtime deps and the demo's clients
    libseccomp2                          # rbox links it
    etcd-server etcd-client              # the cluster store on node 1 (disabled elsewhere)
    busybox-static nginx-light           # what images/recipes build the offline images from
)

# Runs inside the finished tree ($1) before it becomes a file system.
customize=$(cat <<'HOOK'
set -eu
r=$1
cat > "$r/etc/fstab" <<'F'
/dev/vda  /         ext4  rw,noatime  0 0
vagrant   /vagrant  9p    trans=virtio,version=9p2000.L,ro,nofail,msize=262144,x-systemd.automount  0 0
lab       /lab      9p    trans=virtio,version=9p2000.L,ro,nofail,msize=262144,x-systemd.automount  0 0
F
# automount: mounted at first use (sshd reading /lab/authorized_keys), and tried again at the
# next use if that failed. A boot-time mount failed now and then on the slow 256 MiB node
# ("9pnet_virtio: no channels available for device lab": the 9p device not probed yet), and
# with no authorized_keys that node never answered ssh.
mkdir -p "$r/vagrant" "$r/lab"
# The lab network from the kernel command line; the link is matched by driver so that networkd
# never touches the bridges and veths rbox makes, and leaves other routes and rules alone.
cat > "$r/usr/local/sbin/rbox-lab-net" <<'S'
#!/bin/sh
set -eu
ip=
for a in $(cat /proc/cmdline); do
    case $a in rbox_lab.ip=*) ip=${a#rbox_lab.ip=} ;; esac
done
[ -n "$ip" ] || exit 0
mkdir -p /run/systemd/network
cat > /run/systemd/network/10-rbox-lab.network <<N
[Match]
Driver=virtio_net

[Network]
Address=$ip
LinkLocalAddressing=no
IPv6AcceptRA=no
N
S
chmod 755 "$r/usr/local/sbin/rbox-lab-net"
cat > "$r/etc/systemd/system/rbox-lab-net.service" <<'U'
[Unit]
Description=rbox lab: network from the kernel command line
DefaultDependencies=no
Before=systemd-networkd.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/rbox-lab-net

[Install]
WantedBy=sysinit.target
U
mkdir -p "$r/etc/systemd/networkd.conf.d"
printf '[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n' \
    > "$r/etc/systemd/networkd.conf.d/rbox-lab.conf"
: > "$r/etc/resolv.conf"
printf 'rbox-lab\n' > "$r/etc/hostname"
printf '127.0.0.1 localhost\n' > "$r/etc/hosts"
cat > "$r/etc/ssh/sshd_config.d/rbox-lab.conf" <<'C'
AuthorizedKeysFile .ssh/authorized_keys /lab/authorized_keys
PasswordAuthentication no
UseDNS no
C
# A small initramfs: the disk is virtio and ext4, nothing else is needed before / is mounted.
printf 'MODULES=list\n' > "$r/etc/initramfs-tools/conf.d/rbox-lab"
printf 'virtio_pci\nvirtio_blk\next4\n' >> "$r/etc/initramfs-tools/modules"
chroot "$r" update-initramfs -u -k all >/dev/null
chroot "$r" systemctl enable -q rbox-lab-net.service systemd-networkd.service
chroot "$r" systemctl disable -q etcd.service nginx.service
# Units a lab node never needs: each costs seconds of boot under software emulation.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
         systemd-networkd-wait-online.service e2scrub_reap.service systemd-pstore.service \
         modprobe@drm.service modprobe@efi_pstore.service modprobe@dm_mod.service \
         modprobe@loop.service modprobe@fuse.service sys-kernel-debug.mount \
         sys-kernel-tracing.mount dev-hugepages.mount getty@tty1.service \
         systemd-update-utmp.service systemd-update-utmp-runlevel.service; do
    chroot "$r" systemctl mask -q "$u"
done
rm -rf "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"*_Packages
HOOK
)

echo "image.sh: building the Debian 12 lab image (mmdebstrap, from $sources)" >&2
mmdebstrap --quiet --variant=apt --include="$(IFS=,; echo "${packages[*]}")" \
    --customize-hook="$customize" bookworm "$work/root" "$sources" >&2

# One kernel is installed: linux-image-amd64's.
cp "$work"/root/boot/vmlinuz-* "$work/vmlinuz"
cp "$work"/root/boot/initrd.img-* "$work/initrd.img"
mke2fs -q -t ext4 -L rbox-lab -d "$work/root" "$work/disk.raw" 3G >&2
rm -rf "$work/root"
touch "$work/ok"
# Only one image is kept: older recipes' images are removed once this one is complete.
for old in "$cache"/image-*; do
    [ "$old" != "$dir" ] && [ -d "$old" ] && rm -rf "$old"
done
mv "$work" "$dir"
trap - EXIT
echo "$dir"
