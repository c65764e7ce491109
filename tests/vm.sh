#!/bin/sh
# Runs integration test binaries in a throw-away VM on Debian's own kernel, for what the host's
# kernel cannot do (a minimal VM kernel without ipvlan, 802.1q or dummy links, say).
#
#   tests/vm.sh [TEST_BINARY [FILTER]]      (as root; default: the macvlan tests)
#
# qemu (TCG, no KVM needed) boots linux-image-amd64's kernel (fetched once with apt-get
# download into $RBOX_VM_DIR, default /tmp/rbox-vm) with an initramfs that mounts the host's /
# read-only over 9p under a RAM overlay, loads the network modules and runs the binary there:
# the VM writes nothing to the host, and its networks (veths, bridges, macvlans) exist only in
# it. Slow (emulated): the macvlan tests take ~5 minutes.
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
DIR=${RBOX_VM_DIR:-/tmp/rbox-vm}
TEST=${1:-}
FILTER=${2:-}
if [ -z "$TEST" ]; then
    TEST=$HERE/$(cd "$HERE" && cargo test -p rbox-tests --test macvlan --no-run 2>&1 |
        grep -o 'target/debug/deps/macvlan-[0-9a-f]*' | tail -n1)
fi
mkdir -p "$DIR"
cd "$DIR"
if [ ! -d k ]; then
    PKG=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[^ ]*\)/\1/p' | head -n1)
    apt-get download "$PKG"
    dpkg -x "$PKG"_*.deb k
fi
KVER=$(ls k/lib/modules | head -n1)
[ -f "k/lib/modules/$KVER/modules.dep" ] || depmod -b k "$KVER"
M=k/lib/modules/$KVER/kernel

rm -rf initrd && mkdir -p initrd/bin initrd/proc initrd/sys initrd/dev initrd/newroot initrd/mods
cp "$(command -v busybox)" initrd/bin/busybox
for a in sh mount umount insmod mkdir cp cat grep tr switch_root poweroff; do ln -sf busybox initrd/bin/$a; done
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev \
    drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci fs/netfs/netfs fs/fscache/fscache \
    net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay; do
    cp "$M/$m.ko" initrd/mods/
done
cat >initrd/init <<EOF
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay; do insmod /mods/\$m.ko; done
mkdir -p /lower /rw
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || poweroff -f
mount -t tmpfs -o size=2g tmpfs /rw; mkdir -p /rw/up /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/up,workdir=/rw/work overlay /newroot || poweroff -f
mkdir -p /newroot/usr/lib/modules/$KVER /newroot/.lower /newroot/.rw
mount --bind /lower$DIR/k/lib/modules/$KVER /newroot/usr/lib/modules/$KVER
mount -t tmpfs tmpfs /newroot/run
cp /lower$DIR/stage2.sh /newroot/run/stage2.sh
cat /proc/cmdline | tr ' ' '\n' | grep '^rbt_' > /newroot/run/test.env
mount -t tmpfs tmpfs /newroot/tmp
# The layers stay reachable from the new root: executables' paths resolve through them.
mount --move /lower /newroot/.lower; mount --move /rw /newroot/.rw
umount /proc /sys /dev
exec switch_root /newroot /bin/sh /run/stage2.sh
EOF
chmod +x initrd/init
(cd initrd && find . | ./bin/busybox cpio -o -H newc 2>/dev/null | gzip >../initrd.gz)
cat >stage2.sh <<EOF
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
T=\$(sed -n 's/^rbt_test=//p' /run/test.env); F=\$(sed -n 's/^rbt_filter=//p' /run/test.env)
for m in veth bridge macvlan ipvlan 8021q dummy nf_tables nft_chain_nat nf_nat nf_conntrack overlay \
    ip_tables iptable_nat iptable_filter xt_conntrack xt_addrtype xt_comment xt_MASQUERADE ipv6; do
    modprobe \$m 2>/dev/null
done
ip link set lo up
echo "VM: \$(uname -r); \$T \$F"
cd $HERE/tests
RBOX_BIN=$HERE/target/debug/rbox RBOX_IMAGES_DIR=$HERE/target/images "\$T" --test-threads=2 \$F 2>&1
echo "VM-TEST-EXIT \$?"
echo o >/proc/sysrq-trigger
sleep 30
EOF
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 4096 -smp 2 -nographic -no-reboot \
    -kernel k/boot/vmlinuz-"$KVER" -initrd initrd.gz \
    -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
    -append "console=ttyS0 panic=-1 quiet rbt_test=$TEST rbt_filter=$FILTER" 2>&1 |
    tee "$DIR/vm.log" | grep -a -v '^\[ *[0-9.]*\]  '
grep -aq 'VM-TEST-EXIT 0' "$DIR/vm.log"
