# shellcheck shell=bash disable=SC2154 # $nodes and the helpers come from test.sh
# The rbox lab's cross-VM demo, in stages; sourced by vagrant/test.sh, which provides `on N CMDS`
# (run and show commands on node N), `quiet_on`, `node_ip`, `wait_ssh`, `boot_id`, `step` and
# $nodes. A stage whose rbox feature has not landed yet is detected and reported as skipped:
#   0. no node has a route off the lab network; etcd on node 1 answers every node; rbox's
#      cluster settings are there
#   1. now: on every node a bridge network with nginx and a published port, found by name on the
#      user network; node 1's port answered on its private address from every other node
#   2. overlay (issue 13: `rbox network create -d overlay`): one network across the nodes, nginx
#      on node 1 reached by name from every other node
#   3. the edge node (the last, 256 MiB): nginx + 5 containers; `reboot`, after which the node
#      has its containers (down: no restart policy) and `run` works; then (issue 12: `rbox system
#      boot`, `--restart`, contrib/systemd/rbox-boot.service) a `--restart always` nginx that is
#      back after the reboot and answers node 1
# Ends with the line "lab: N passed, N failed, N skipped"; demo returns non-zero on a failure.

passed=0 failed=0 skipped=0
results=()
pass() { passed=$((passed + 1)) && results+=("PASS  $*") && echo "ok: $*"; }
fail() { failed=$((failed + 1)) && results+=("FAIL  $*") && echo "FAILED: $*"; }
skip() { skipped=$((skipped + 1)) && results+=("SKIP  $*") && echo "skipped: $*"; }
# check NAME N CMDS: CMDS on node N decide NAME.
check() {
    local name=$1 n=$2
    shift 2
    if on "$n" "$*"; then pass "$name"; else fail "$name"; fi
}

demo_store() {
    local i ip1
    ip1=$(node_ip 1)
    step "stage 0: the cluster store (etcd on node1) and rbox's cluster settings"
    for i in $(seq "$nodes"); do
        check "node$i: no route off the lab network; etcd on node1 answers; RBOX_CLUSTER_* set" "$i" "
ip -4 route
test -z \"\$(ip route show default)\"
curl -fsS --retry 60 --retry-connrefused --retry-delay 1 http://$ip1:2379/health; echo
echo RBOX_CLUSTER_STORE=\$RBOX_CLUSTER_STORE RBOX_CLUSTER_ADVERTISE=\$RBOX_CLUSTER_ADVERTISE
test \"\$RBOX_CLUSTER_STORE\" = etcd://$ip1:2379 && test \"\$RBOX_CLUSTER_ADVERTISE\" = $(node_ip "$i")"
    done
}

demo_bridge() {
    local i ip1
    ip1=$(node_ip 1)
    step "stage 1: bridge network, nginx and a published port on every node"
    for i in $(seq "$nodes"); do
        check "node$i: nginx on a user bridge network, -p 8080:80, reached by name" "$i" "
mkdir -p /srv/www && echo 'hello from node$i' > /srv/www/index.html
rbox network create labnet
rbox run -d --name web --network labnet -p 8080:80 -v /srv/www:/usr/share/nginx/html:ro nginx
rbox ps
rbox run --rm --network labnet busybox wget -qO- http://web/ | grep -x 'hello from node$i'"
    done
    for i in $(seq 2 "$nodes"); do
        check "node$i -> $ip1:8080 (node1's published port on its private address)" "$i" "
curl -fsS --retry 10 --retry-connrefused --retry-delay 1 http://$ip1:8080/ | grep -x 'hello from node1'"
    done
    check "a container on node2 -> $ip1:8080 (outbound NAT on node2, DNAT on node1)" 2 "
rbox run --rm busybox wget -qO- http://$ip1:8080/ | grep -x 'hello from node1'"
}

demo_overlay() {
    local i out
    step "stage 2: an overlay network across the nodes"
    if ! quiet_on 1 'rbox --help' | grep -q -- '--cluster-store'; then
        skip "overlay: this rbox has no --cluster-store (multi-host overlay networks, issue 13)"
        return 0
    fi
    if ! out=$(quiet_on 1 'rbox network create -d overlay --subnet 10.183.64.0/24 ov1' 2>&1); then
        if grep -q 'plugin not found' <<<"$out"; then
            skip "overlay: this rbox has no overlay driver ($out)"
        else
            fail "overlay: network create -d overlay on node1: $out"
        fi
        return 0
    fi
    pass "node1: network create -d overlay --subnet 10.183.64.0/24 ov1"
    for i in $(seq "$nodes"); do
        check "node$i: network ls lists ov1 (scope global)" "$i" "
rbox network ls --filter scope=global --format '{{.Name}} {{.Driver}} {{.Scope}}' | grep -x 'ov1 overlay global'"
    done
    check "node1: nginx on ov1" 1 "
rbox run -d --name ovweb --network ov1 -v /srv/www:/usr/share/nginx/html:ro nginx"
    for i in $(seq 2 "$nodes"); do
        check "node$i -> ovweb on node1 by name over ov1" "$i" "
rbox run --rm --network ov1 busybox wget -qO- http://ovweb/ | grep -x 'hello from node1'"
    done
    check "node2: inspect ov1 shows ovweb on node1" 2 "
rbox network inspect -f '{{range \$k, \$v := .Containers}}{{\$v.Name}}@{{\$v.Host}} {{end}}' ov1 | grep -w 'ovweb@$(node_ip 1)'"
    check "node1: rm ovweb, network rm ov1" 1 "rbox rm -f ovweb && rbox network rm ov1"
    check "node2: ov1 gone" 2 "! rbox network ls | grep -w ov1"
}

demo_edge() {
    local e=$nodes old
    step "stage 3: the edge node (node$e, $(quiet_on "$e" "free -m | awk '/^Mem:/{print \$2}'") MiB usable)"
    check "node$e: nginx + 5 containers" "$e" "
for k in 1 2 3 4 5; do rbox run -d --name edge\$k busybox sleep 1000000 >/dev/null; done
rbox ps
test \$(rbox ps -q | wc -l) -ge 6
free -m"
    # The reboot runs either way: the node must come back with rbox's state intact. Only the
    # restart policy's part needs `rbox system boot` and its unit.
    local why=
    if ! quiet_on "$e" 'rbox system boot --help' >/dev/null 2>&1; then
        why="this rbox has no 'rbox system boot' (boot after reboot, issue 12 part 2)"
    elif ! quiet_on "$e" 'rbox run --help' | grep -q -- '--restart'; then
        why="this rbox has no 'run --restart' (restart policies, issue 12 part 1)"
    elif ! quiet_on "$e" 'systemctl is-enabled -q rbox-boot.service'; then
        why="the tree has no contrib/systemd/rbox-boot.service"
    fi
    if [ -z "$why" ]; then
        check "node$e: a --restart always nginx on port 8081" "$e" "
rbox run -d --name keeper --restart always -p 8081:80 -v /srv/www:/usr/share/nginx/html:ro nginx"
    fi
    # A sleep as a container's PID 1 ignores SIGTERM, and nothing stops containers before
    # systemd-shutdown's final SIGTERM: it would wait its 90 s for them (and their monitors)
    # before SIGKILL. Killed first, so the reboot is not 90 s longer.
    old=$(boot_id "$e")
    on "$e" "rbox kill edge1 edge2 edge3 edge4 edge5 >/dev/null; systemctl reboot --no-block" || true
    wait_ssh "$e" "$old"
    pass "node$e rebooted"
    check "node$e after the reboot: containers without a policy are down, run works" "$e" "
rbox ps -a
for c in web edge1 edge5; do test \"\$(rbox inspect --format '{{.State.Running}}' \$c)\" = false; done
rbox run --rm --network labnet busybox echo run works after the reboot"
    if [ -n "$why" ]; then
        skip "--restart always container back after reboot: $why"
        return 0
    fi
    check "node$e: keeper runs again after the reboot (rbox-boot.service)" "$e" "
for s in \$(seq 180); do
    [ \"\$(rbox inspect --format '{{.State.Running}}' keeper 2>/dev/null)\" = true ] && break
    sleep 1
done
systemctl status --no-pager rbox-boot.service | head -5
test \"\$(rbox inspect --format '{{.State.Running}}' keeper)\" = true"
    check "node1 -> node$e:8081 after the reboot" 1 "
curl -fsS --retry 10 --retry-connrefused --retry-delay 1 http://$(node_ip "$e"):8081/ | grep -x 'hello from node$e'"
}

demo() {
    demo_store
    demo_bridge
    demo_overlay
    demo_edge
    step "summary"
    printf '%s\n' "${results[@]}"
    echo "lab: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" = 0 ]
}
