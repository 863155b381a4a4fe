#!/usr/bin/env bash
# Checks which VRRPv3-over-IPv4 checksum form keepalived accepts; the result is recorded in
# keepalived_v3_ipv4_checksum_forms.txt. NOT run by the tests (needs root and keepalived).
# keepalived runs as a BACKUP (priority 100, VRID 61) in one namespace; a raw socket in a
# second namespace, across a veth, sends priority-200 adverts: 8 s in the message-only form
# (RFC 9568 5.2.8), then 8 s with the IPv4 pseudo-header. Read keepalived's log afterwards.
set -u
na=vrrpintA$$; nb=vrrpintB$$; kpid=""; work=$(mktemp -d /tmp/vrrpint.XXXXXX)
cleanup() {
  if [ -n "$kpid" ]; then
    kill "$kpid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$kpid" 2>/dev/null
  fi
  ip netns del "$na" 2>/dev/null; ip netns del "$nb" 2>/dev/null; rm -rf "$work"; true; }
trap cleanup EXIT
cat >"$work/k.conf" <<'CONF'
vrrp_instance VI_T {
    version 3
    state BACKUP
    interface vk0
    virtual_router_id 61
    priority 100
    advert_int 0.5
    virtual_ipaddress {
        198.51.100.160/24
    }
}
CONF
cat >"$work/send.py" <<'PY'
import socket, struct, time
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
src, dst = socket.inet_aton('198.51.100.2'), socket.inet_aton('224.0.0.18')
def pkt(pseudo):
    body = bytes([0x31, 61, 200, 1, 0x00, 50, 0, 0]) + socket.inet_aton('198.51.100.160')
    ph = src + dst + bytes([0, 112]) + struct.pack('!H', len(body)) if pseudo else b''
    return body[:6] + struct.pack('!H', csum(ph + body)) + body[8:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, src)
for phase, pseudo in (('message-only (RFC 9568)', False), ('with pseudo-header', True)):
    print(time.strftime('%H:%M:%S'), 'phase', phase, pkt(pseudo).hex(), flush=True)
    for _ in range(16):
        s.sendto(pkt(pseudo), ('224.0.0.18', 0))
        time.sleep(0.5)
PY
ip netns add $na; ip netns add $nb
ip netns exec $na ip link add vk0 type veth peer name vk1 netns $nb
ip netns exec $na ip addr add 198.51.100.1/24 dev vk0
ip netns exec $nb ip addr add 198.51.100.2/24 dev vk1
ip netns exec $na ip link set vk0 up; ip netns exec $nb ip link set vk1 up
sleep 1
ip netns exec $na keepalived -n -l -D -P -f "$work/k.conf" -p "$work/k.pid" -r "$work/kv.pid" \
    >"$work/k.log" 2>&1 &
kpid=$!
sleep 1
ip netns exec $nb timeout 30 python3 "$work/send.py"
sleep 1
grep -E 'Invalid|STATE|higher priority' "$work/k.log"
