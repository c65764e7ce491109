#!/usr/bin/env bash
# Boots the rbox lab of vagrant/Vagrantfile on this machine as real KVM virtual machines, offline,
# runs the cross-VM demo (vagrant/demo.sh) and removes every VM, tap, bridge and rule it made, also
# when it fails. Exit 0 only when every stage of the demo that rbox supports worked.
#
# How: Vagrant cannot work offline here (no box can be downloaded, and vagrant-libvirt needs a
# system libvirtd whose Debian package starts a NAT network to the outside), so the same lab is
# run with qemu directly, from the same provisioning:
#   - the disk image is built once from Debian 12 packages (vagrant/image.sh, mmdebstrap) with
#     everything the nodes need, and cached under $RBOX_LAB_CACHE (default /var/cache/rbox-lab);
#     the nodes boot Debian's kernel directly (-kernel/-initrd) from the read-only image
#     (snapshot=on: each VM's writes live in qemu's unlinked temporary file, gone with the VM);
#   - the project tree is shared read-only at /vagrant (9p), as Vagrant syncs it, and each node is
#     provisioned by vagrant/provision.sh exactly as `vagrant up` does;
#   - the nodes' only network is a test-made bridge (rbvlab0, 10.183.0.0/24: host .1, node i .1i)
#     with one tap per node (rbvtN); the nodes get no gateway and no DNS; the host forwards nothing
#     to or from that bridge and accepts from it only replies to its own ssh connections.
#
# Environment: RBOX_LAB_NODES (3), RBOX_LAB_MEMORY (MiB, 512), RBOX_LAB_EDGE_MEMORY (MiB of the
# last node, the edge story's, 256), RBOX_BIN (the rbox binary; default: `cargo build -p rbox`'s
# target/debug/rbox, or target/release/rbox with RBOX_LAB_RELEASE=1), RBOX_LAB_CACHE,
# RBOX_LAB_KEEP_LOGS (the VMs' consoles stay in $RBOX_LAB_CACHE/logs either way).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ws=$(cd "$here/.." && pwd)
cache=${RBOX_LAB_CACHE:-/var/cache/rbox-lab}
nodes=${RBOX_LAB_NODES:-3}
memory=${RBOX_LAB_MEMORY:-512}
edge_memory=${RBOX_LAB_EDGE_MEMORY:-256}
net=10.183.0
bridge=rbvlab0
run=$cache/run
logs=$cache/logs
key=$cache/ssh/id_ed25519
t0=$SECONDS

node_ip() { echo "$net.$((10 + $1))"; }
tap_of() { echo "rbvt$1"; }
elapsed() { echo "$((SECONDS - t0))s"; }
step() { printf '\n== %s  [%s]\n' "$*" "$(elapsed)"; }
die() {
    echo "lab: FAILED: $*" >&2
    exit 1
}

# Without a usable /dev/kvm the lab does not run (RBOX_LAB_ACCEL=tcg runs it anyway, slowly).
if [ -z "${RBOX_LAB_ACCEL:-}" ] && { [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; }; then
    [ "${1:-}" = --estimate ] && { echo "no usable /dev/kvm on this machine"; exit 2; }
    die "no usable /dev/kvm on this machine"
fi
accel_note=
# KVM when it runs a stock kernel; on a host whose /dev/kvm is PVM (kvm_pvm: nested
# virtualisation without VMX/SVM, as on this project's machines) only PVM guest kernels boot and
# Debian's hangs right after "Probing EDD", so the same VMs run under qemu's TCG there.
accel=${RBOX_LAB_ACCEL:-}
if [ -z "$accel" ]; then
    if [ -e /sys/module/kvm_pvm ] || ! grep -qw -E 'vmx|svm' /proc/cpuinfo; then
        accel=tcg
        accel_note="/dev/kvm here is not hardware KVM (kvm_pvm, no vmx/svm): Debian's kernel cannot boot on it, so the VMs run under TCG (software emulation)"
    else
        accel=kvm
    fi
fi
# shellcheck disable=SC2054 # the commas belong to qemu's option values
case $accel in
    kvm) accel_args=(-machine q35,accel=kvm -cpu host) wait_s=180 ;;
    tcg) accel_args=(-machine q35 -accel tcg,tb-size=256 -cpu max) wait_s=600 ;;
    *) die "RBOX_LAB_ACCEL must be kvm or tcg" ;;
esac

# --estimate: the minutes a run takes here (measured on this project's 2-core machines while other
# builds ran: under TCG 4-5.5 min with the image cached, +1.5-3.5 min to build it; KVM is an
# estimate), for .ci/run's budget. Exit 2 (with the reason) when the lab cannot run here.
if [ "${1:-}" = --estimate ]; then
    cached=0
    "$here/image.sh" --cached >/dev/null && cached=1
    case $accel:$cached in
        tcg:1) echo "7 tcg, image cached" ;;
        tcg:0) echo "11 tcg, image to build" ;;
        kvm:1) echo "3 kvm, image cached" ;;
        *) echo "6 kvm, image to build" ;;
    esac
    exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (it makes a bridge, taps and firewall rules)"
if [ "$nodes" -lt 2 ] || [ "$nodes" -gt 9 ]; then die "RBOX_LAB_NODES must be 2..9"; fi

# Host tools: qemu, mmdebstrap (image.sh), ssh, objcopy, vagrant (for `vagrant validate`).
host_deps() {
    local missing=() p
    for p in qemu-system-x86:qemu-system-x86_64 mmdebstrap:mmdebstrap openssh-client:ssh \
        binutils:objcopy vagrant:vagrant vagrant-libvirt:- e2fsprogs:mke2fs; do
        if [ "${p#*:}" = - ]; then
            dpkg-query -W -f='${Status}' "${p%%:*}" 2>/dev/null | grep -q "install ok installed" ||
                missing+=("${p%%:*}")
        else
            command -v "${p#*:}" >/dev/null || missing+=("${p%%:*}")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "lab: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # qemu-system-x86 needs the qemu-utils of its own release: this project's machine image has a
    # newer one from backports, which is replaced by the release's (qemu-img keeps working).
    if [[ " ${missing[*]} " == *" qemu-system-x86 "* ]]; then
        . /etc/os-release
        missing+=("qemu-utils/$VERSION_CODENAME")
    fi
    apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" >/dev/null
}

# Everything this script makes, by name, so that cleanup (and the next run after a kill -9)
# removes exactly that. The FORWARD/INPUT rules carry the comment "rbox-lab".
fw_rules() {
    echo "FORWARD -i $bridge -o $bridge -j ACCEPT"
    echo "FORWARD -i $bridge -j DROP"
    echo "FORWARD -o $bridge -j DROP"
    echo "INPUT -i $bridge -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    echo "INPUT -i $bridge -j DROP"
}
teardown() {
    local pidfile pid i rule
    for pidfile in "$run"/node*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        # Only a qemu of this lab: the pid could have been reused since a crashed run.
        if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "qemu-system-x86_64 -name rbox-lab-node"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
    for i in $(seq 9); do
        ip link show "$(tap_of "$i")" >/dev/null 2>&1 && ip link del "$(tap_of "$i")"
    done
    ip link show "$bridge" >/dev/null 2>&1 && ip link del "$bridge"
    while read -r rule; do
        # shellcheck disable=SC2086 # the rule is words
        while iptables -w -C ${rule%% *} ${rule#* } -m comment --comment rbox-lab 2>/dev/null; do
            iptables -w -D ${rule%% *} ${rule#* } -m comment --comment rbox-lab
        done
    done < <(fw_rules)
    rm -rf "$run"
}

host_deps
mkdir -p "$cache" "$logs"
exec 9>"$cache/lock"
flock -n 9 || { echo "lab: another run holds $cache/lock; waiting"; flock 9; }
teardown # what a killed run left
# shellcheck disable=SC2154 # status is assigned in the trap itself
trap 'status=$?; teardown; exit $status' EXIT
trap 'exit 130' INT TERM

step "vagrant validate (Vagrantfile, libvirt provider)"
mkdir -p "$run"
(cd "$here" && VAGRANT_HOME=$cache/vagrant.d VAGRANT_DOTFILE_PATH=$run/vagrant \
    VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate) || die "vagrant validate failed"

step "base image (vagrant/image.sh; cached in $cache)"
image=$("$here/image.sh")
echo "$image"

step "rbox binary"
lab=$run/lab
mkdir -p "$lab"
chmod 755 "$run" "$lab"
bin=${RBOX_BIN:-}
if [ -z "$bin" ]; then
    if [ "${RBOX_LAB_RELEASE:-}" = 1 ]; then
        (cd "$ws" && cargo build -q --release -p rbox -p rbox-shim)
        bin=$ws/target/release/rbox
    else
        (cd "$ws" && cargo build -q -p rbox -p rbox-shim)
        bin=$ws/target/debug/rbox
    fi
fi
# Debug info is most of a debug binary; the 256 MiB node need not page it in from 9p.
objcopy --strip-debug "$bin" "$lab/rbox"
[ ! -x "$(dirname "$bin")/rbox-shim" ] || objcopy --strip-debug "$(dirname "$bin")/rbox-shim" "$lab/rbox-shim"
echo "$bin ($(du -h "$lab/rbox" | cut -f1) stripped)"

if [ ! -f "$key" ]; then
    mkdir -p "$(dirname "$key")"
    ssh-keygen -q -t ed25519 -N '' -C rbox-lab -f "$key"
fi
install -m 0644 "$key.pub" "$lab/authorized_keys"

step "network: bridge $bridge ($net.1/24), taps, isolation rules"
if ip -4 route show | grep -q "^$net\."; then die "a route into $net.0/24 exists already: $(ip -4 route show | grep "^$net\.")"; fi
ip link add "$bridge" type bridge
echo 1 >"/proc/sys/net/ipv6/conf/$bridge/disable_ipv6"
ip addr add "$net.1/24" dev "$bridge"
ip link set "$bridge" up
while read -r rule; do
    # shellcheck disable=SC2086
    iptables -w -I ${rule%% *} 1 ${rule#* } -m comment --comment rbox-lab
done < <(fw_rules | tac)
for i in $(seq "$nodes"); do
    ip tuntap add dev "$(tap_of "$i")" mode tap
    echo 1 >"/proc/sys/net/ipv6/conf/$(tap_of "$i")/disable_ipv6"
    ip link set "$(tap_of "$i")" master "$bridge" up
done

[ -n "$accel_note" ] && echo "lab: $accel_note"
step "boot $nodes VMs ($accel; node $nodes: ${edge_memory} MiB, others ${memory} MiB)"
for i in $(seq "$nodes"); do
    mem=$memory
    [ "$i" = "$nodes" ] && mem=$edge_memory
    : >"$logs/node$i.console"
    qemu-system-x86_64 -name "rbox-lab-node$i" "${accel_args[@]}" -smp 1 -m "$mem" \
        -nodefaults -no-user-config -display none -serial "file:$logs/node$i.console" \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 quiet systemd.hostname=node$i rbox_lab.ip=$(node_ip "$i")/24" \
        -drive "file=$image/disk.raw,format=raw,if=virtio,snapshot=on,cache=unsafe" \
        -netdev "tap,id=n0,ifname=$(tap_of "$i"),script=no,downscript=no" \
        -device "virtio-net-pci,netdev=n0,mac=52:54:00:b7:00:0$i" \
        -virtfs "local,path=$ws,mount_tag=vagrant,security_model=none,readonly=on,id=fs0" \
        -virtfs "local,path=$lab,mount_tag=lab,security_model=none,readonly=on,id=fs1" \
        -device virtio-rng-pci </dev/null >"$logs/node$i.qemu" 2>&1 9>&- &
    echo $! >"$run/node$i.pid"
done

# on N 'commands': runs the commands as root on node N (bash -e), echoing them first.
ssh_opts=(-i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=6)
on() {
    local i=$1
    shift
    printf '[node%s]$ %s\n' "$i" "$*" | sed '2,$s/^/    /'
    ssh "${ssh_opts[@]}" "root@$(node_ip "$i")" bash -euo pipefail -s <<<"$*" 2>&1 | sed "s/^/  node$i| /"
    return "${PIPESTATUS[0]}"
}
quiet_on() { ssh "${ssh_opts[@]}" "root@$(node_ip "$1")" bash -euo pipefail -s <<<"$2"; }
# wait_ssh N [OLD_BOOT_ID]: until node N answers ssh (from a boot other than OLD_BOOT_ID).
wait_ssh() {
    local i=$1 old=${2:-} id deadline=$((SECONDS + wait_s))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$(cat "$run/node$i.pid")" 2>/dev/null || {
            tail -n 20 "$logs/node$i.qemu" "$logs/node$i.console" >&2
            die "node$i's qemu exited"
        }
        id=$(quiet_on "$i" 'cat /proc/sys/kernel/random/boot_id' 2>/dev/null) && [ "$id" != "$old" ] && return 0
        sleep 1
    done
    tail -n 30 "$logs/node$i.console" >&2
    die "node$i did not answer ssh within $wait_s s"
}
boot_id() { quiet_on "$1" 'cat /proc/sys/kernel/random/boot_id'; }

for i in $(seq "$nodes"); do
    wait_ssh "$i"
    echo "node$i answers ssh [$(elapsed)]: $(quiet_on "$i" 'systemd-analyze 2>/dev/null | head -1' || true)"
done

step "provision (vagrant/provision.sh on every node, as the Vagrantfile runs it)"
pids=()
for i in $(seq "$nodes"); do
    on "$i" "RBOX_LAB_NODE=$i RBOX_LAB_IP=$(node_ip "$i") RBOX_LAB_ETCD_IP=$(node_ip 1)" \
        "RBOX_SRC=/vagrant RBOX_BINARY=/lab/rbox /vagrant/vagrant/provision.sh" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "provisioning failed"; done

# shellcheck source-path=SCRIPTDIR source=demo.sh
. "$here/demo.sh"
demo
