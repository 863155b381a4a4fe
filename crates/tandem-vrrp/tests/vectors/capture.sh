#!/usr/bin/env bash
# Regenerates the keepalived vectors in this directory. NOT run by the tests: it needs root,
# Debian's keepalived and tcpdump (apt-get install -y keepalived tcpdump), and it creates (and
# always removes) a private network namespace. Addresses are documentation ranges only
# (198.51.100.0/24, 2001:db8::/32) plus the link-local of a fixed MAC.
#
# Usage: sudo bash capture.sh OUTDIR
set -euo pipefail
out=${1:?usage: capture.sh OUTDIR}
mkdir -p "$out"
ns=vrrpcap$$
work=$(mktemp -d /tmp/vrrpcap.XXXXXX)
kpid=""
tpid=""

cleanup() {
    # End only what this script started, by PID; then remove the namespace and temp files.
    [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true
    if [ -n "$kpid" ]; then
        kill "$kpid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$kpid" 2>/dev/null || break; sleep 0.3; done
        kill -9 "$kpid" 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
nsx() { ip netns exec "$ns" "$@"; }
nsx sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
nsx ip link set lo up
# A veth pair with both ends inside the namespace: vk0 runs keepalived, vk1 is the "wire".
nsx ip link add vk0 address 02:00:00:00:00:01 type veth peer name vk1 address 02:00:00:00:00:02
nsx ip addr add 198.51.100.1/24 dev vk0
nsx ip addr add 2001:db8:1::1/64 dev vk0
nsx ip link set vk0 up
nsx ip link set vk1 up
sleep 1

# run NAME CONF: start keepalived with CONF, capture 3 VRRP packets on vk0, stop keepalived.
run() {
    local name=$1 conf=$2
    printf '%s\n' "$conf" >"$work/$name.conf"
    # `ip netns exec` execs its command, so $! is the PID of timeout/keepalived itself.
    ip netns exec "$ns" timeout 20 tcpdump -i vk0 -nn -c 3 -w "$work/$name.pcap" \
        'ip proto 112 or ip6 proto 112' 2>"$work/$name.tcpdump.log" &
    tpid=$!
    sleep 1
    ip netns exec "$ns" keepalived -n -l -D -P -f "$work/$name.conf" -p "$work/$name.pid" -r "$work/$name.vrrp.pid" \
        >"$work/$name.keepalived.log" 2>&1 &
    kpid=$!
    wait "$tpid" || true
    tpid=""
    kill "$kpid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$kpid" 2>/dev/null || break; sleep 0.3; done
    kill -9 "$kpid" 2>/dev/null || true
    wait "$kpid" 2>/dev/null || true
    # The VRRP child normally exits with its parent; make sure, by its recorded PID.
    if [ -s "$work/$name.vrrp.pid" ]; then kill "$(cat "$work/$name.vrrp.pid")" 2>/dev/null || true; fi
    kpid=""
    cp "$work/$name.pcap" "$work/$name.conf" "$work/$name.keepalived.log" "$out/" 
}

run v2_ipv4 'global_defs {
    router_id tandem_capture
}
vrrp_instance VI_V2 {
    version 2
    state MASTER
    interface vk0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        198.51.100.100/24
        198.51.100.101/24
    }
}'

run v2_ipv4_pass 'global_defs {
    router_id tandem_capture
}
vrrp_instance VI_V2P {
    version 2
    state MASTER
    interface vk0
    virtual_router_id 52
    priority 100
    advert_int 2
    authentication {
        auth_type PASS
        auth_pass tandem1
    }
    virtual_ipaddress {
        198.51.100.102/24
    }
}'

run v3_ipv4 'global_defs {
    router_id tandem_capture
}
vrrp_instance VI_V3 {
    version 3
    state MASTER
    interface vk0
    virtual_router_id 53
    priority 200
    advert_int 0.5
    virtual_ipaddress {
        198.51.100.110/24
        198.51.100.111/24
        198.51.100.112/24
    }
}'

run v3_ipv6 'global_defs {
    router_id tandem_capture
}
vrrp_instance VI_V3_6 {
    version 3
    state MASTER
    interface vk0
    virtual_router_id 54
    priority 120
    advert_int 1
    virtual_ipaddress {
        fe80::100/64
        2001:db8:1::100/64
    }
}'
echo "captured into $out"
