#!/usr/bin/env python3
"""One failover trial, run inside the client namespace (`ip netns exec CLIENT trial.py ...`).

1. warm-up: GET http://VIP/ every PERIOD_MS (open loop: each request is its own task with a
   TIMEOUT_MS deadline, a new TCP connection each, so every request follows the VIP's current
   ARP entry) until WARM_OK answers in a row came from "lb1" (bounded by --warm-max seconds;
   otherwise prints {"status": "notready"} and exits 3);
2. a further --steady seconds of the same load, then the same until the next VRRP advert from
   lb1 (seen by the sniffer below) plus --phase × --interval: the kill falls at a chosen phase of
   the advert interval;
3. the kill, on this process's clock: SIGSTOP --stop-pid (keepalived's parent, so it cannot
   respawn its VRRP child or see it die), then SIGKILL every --kill-pid (t_kill = just before the
   first SIGKILL), then `ip -n LB1_NS addr del VIP/PREFIX dev IFACE` (the stale VIP, which a
   SIGKILLed VRRP daemon leaves behind: this trial measures the VRRP takeover, not ARP confusion);
4. the load goes on until the first answer from "lb2" plus --tail seconds, bounded by --max-wait
   seconds after the kill.

Meanwhile AF_PACKET sockets on IFACE record, with the kernel's receive timestamps, every ARP
packet whose sender IP is the VIP (gratuitous ARP: the new master announcing it) and every VRRP
advert (multicast, so the bridge floods it to the client too).

Prints one JSON object: times in ms relative to the kill:
  last_lb1_ms   completion of the last answer from lb1
  first_lb2_ms  completion of the first answer from lb2 (the outage)
  first_lb2_sent_ms  when that request was sent
  garp_ms       first gratuitous ARP for the VIP from LB2_MAC
  vip_del_ms    when the stale VIP was gone from lb1
  last_advert_ms  the last VRRP advert from lb1 before the kill (negative)
  takeover_after_advert_ms  first GARP − that advert: the backup's Master_Down_Interval as
                measured, without the random phase of the kill
  lb1_adverts_after_kill  [ms, priority] of adverts from lb1 after the kill (should be none)
plus counters (requests after the kill: ok from lb1, ok from lb2, failed; pre-kill failures).
"""
import argparse
import asyncio
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ETH_P_ARP = 0x0806


def now():
    return time.time()


# classic BPF for "ip proto 112" (VRRP) on an ETH_P_IP packet socket:
#   ldh [12]; jeq #0x800 jt 0 jf 3; ldb [23]; jeq #112 jt 0 jf 1; ret #65535; ret #0
VRRP_BPF = [(0x28, 0, 0, 12), (0x15, 0, 3, 0x0800), (0x30, 0, 0, 23), (0x15, 0, 1, 112),
            (0x06, 0, 0, 65535), (0x06, 0, 0, 0)]
SO_ATTACH_FILTER = 26
_BPF_KEEP = []


def packet_socket(iface, proto, bpf=None):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    if bpf:
        import ctypes
        prog = b"".join(struct.pack("HBBI", *ins) for ins in bpf)
        buf = ctypes.create_string_buffer(prog)
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                     struct.pack("HL", len(bpf), ctypes.addressof(buf)))
        _BPF_KEEP.append(buf)  # the kernel copies it; kept anyway until exit
    s.bind((iface, proto))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setblocking(False)
    return s


class Sniffer(threading.Thread):
    """Records, with the kernel's receive timestamps, ARP packets whose sender IP is the VIP
    (ts, eth source MAC, ARP op) and VRRP adverts (ts, source IP, priority)."""

    def __init__(self, iface, vip):
        super().__init__(daemon=True)
        self.vip = socket.inet_aton(vip)
        self.seen = []
        self.adverts = []
        self.stop = False
        self.arp = packet_socket(iface, ETH_P_ARP)
        self.ip = packet_socket(iface, 0x0800, VRRP_BPF)

    @staticmethod
    def stamp(anc):
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = struct.unpack("qq", cdata[:16])
                return sec + nsec / 1e9
        return now()

    def run(self):
        import select
        while not self.stop:
            r, _w, _x = select.select([self.arp, self.ip], [], [], 0.2)
            for sock in r:
                try:
                    data, anc, _flags, _addr = sock.recvmsg(2048, 64)
                except OSError:
                    continue
                ts = self.stamp(anc)
                if sock is self.arp:
                    # Ethernet (14) + ARP: htype ptype hlen plen op(20:22) sha(22:28) spa(28:32)
                    if len(data) >= 42 and data[28:32] == self.vip:
                        src = ":".join("%02x" % b for b in data[6:12])
                        self.seen.append((ts, src, struct.unpack("!H", data[20:22])[0]))
                elif len(data) >= 34 and data[23] == 112:
                    ihl = (data[14] & 0x0F) * 4
                    if len(data) >= 14 + ihl + 4:
                        prio = data[14 + ihl + 2]
                        self.adverts.append((ts, socket.inet_ntoa(data[26:30]), prio))


async def get(vip, port, timeout):
    """(ok, body or error, t_sent, t_done)."""
    t0 = now()
    try:
        async def go():
            r, w = await asyncio.open_connection(vip, port)
            try:
                w.write(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
                data = await r.read()   # HTTP/1.0: the server closes after the response
            finally:
                w.close()
            return data
        data = await asyncio.wait_for(go(), timeout)
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            return False, "status: %r" % head[:40], t0, now()
        return True, body.decode(errors="replace").strip(), t0, now()
    except asyncio.TimeoutError:
        return False, "timeout", t0, now()
    except OSError as e:
        return False, "%s" % (e.strerror or e), t0, now()


async def main(a):
    sniffer = Sniffer(a.iface, a.vip)
    sniffer.start()
    period = a.period_ms / 1000.0
    timeout = a.timeout_ms / 1000.0
    results = []          # (ok, body, t_sent, t_done)
    tasks = set()
    state = {"streak": 0, "t_kill": None, "first_lb2": None}

    def launch():
        t = asyncio.ensure_future(get(a.vip, a.port, timeout))
        tasks.add(t)

        def done(f):
            tasks.discard(f)
            r = f.result()
            results.append(r)
            state["streak"] = state["streak"] + 1 if (r[0] and r[1] == "lb1") else 0
            if (r[0] and r[1] == "lb2" and state["t_kill"] is not None
                    and r[3] >= state["t_kill"] and state["first_lb2"] is None):
                state["first_lb2"] = r
        t.add_done_callback(done)

    loop = asyncio.get_running_loop()
    next_at = loop.time()

    async def tick():
        nonlocal next_at
        launch()
        next_at += period
        delay = next_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:  # behind schedule (a busy machine): do not burst to catch up
            next_at = loop.time()
            await asyncio.sleep(0)

    # 1. warm-up: WARM_OK consecutive answers from lb1, bounded
    t_start = now()
    while True:
        await tick()
        if state["streak"] >= a.warm_ok and now() - t_start >= 0.3:
            break
        if now() - t_start > a.warm_max:
            for t in list(tasks):
                t.cancel()
            bad = [r[1] for r in results[-5:]]
            print(json.dumps({"status": "notready", "last": bad}))
            sniffer.stop = True
            return 3
    # 2. steady load from lb1, then the kill at the wanted phase of lb1's adverts: PHASE ×
    #    interval after the next advert from lb1 (bounded: 3 intervals to see one)
    t_steady = now()
    while now() - t_steady < a.steady:
        await tick()
    t_look = now()
    target = None
    while target is None and now() - t_look < 3 * a.interval + 1:
        await tick()
        adv = [ts for ts, src, _p in sniffer.adverts if src == a.lb1_ip and ts >= t_look]
        if adv:
            target = adv[0] + a.phase * a.interval
    if target is None:
        print(json.dumps({"status": "no_adverts_seen"}))
        sniffer.stop = True
        return 5
    while target - now() > period:
        await tick()
    if target > now():
        await asyncio.sleep(target - now())
    # 3. the kill
    if a.stop_pid:
        os.kill(a.stop_pid, signal.SIGSTOP)
    t_kill = now()
    state["t_kill"] = t_kill
    for pid in a.kill_pid:
        os.kill(pid, signal.SIGKILL)
    if a.stop_pid:
        os.kill(a.stop_pid, signal.SIGKILL)   # a stopped process dies on SIGKILL too
    proc = await asyncio.create_subprocess_exec(
        "ip", "-n", a.lb1_ns, "addr", "del", "%s/%d" % (a.vip, a.prefix), "dev", a.iface,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    vip_del = {"t": None, "err": ""}

    async def reap():
        _o, err = await proc.communicate()
        vip_del["t"] = now()
        if proc.returncode != 0:
            vip_del["err"] = err.decode(errors="replace").strip()
    reaper = asyncio.ensure_future(reap())
    # 4. load until the first lb2 answer + tail, bounded
    while True:
        await tick()
        first_lb2 = state["first_lb2"]
        if first_lb2 is not None and now() - first_lb2[3] >= a.tail:
            break
        if now() - t_kill > a.max_wait:
            break
    if tasks:
        await asyncio.wait(list(tasks), timeout=timeout + 1)
    await asyncio.wait_for(reaper, 5)
    sniffer.stop = True

    def ms(t):
        return None if t is None else round((t - t_kill) * 1000.0, 2)
    before = [r for r in results if r[2] < t_kill]
    after = [r for r in results if r[2] >= t_kill]
    lb1_done = [r[3] for r in results if r[0] and r[1] == "lb1"]
    lb1_adv = sorted(ts for ts, src, _p in sniffer.adverts if src == a.lb1_ip and ts < t_kill)
    lb1_adv_after = [(ts, p) for ts, src, p in sniffer.adverts if src == a.lb1_ip and ts >= t_kill]
    garps = sorted(ts for ts, src, _op in sniffer.seen if src == a.lb2_mac.lower() and ts >= t_kill)
    errors = {}
    for r in after:
        if not r[0]:
            errors[r[1]] = errors.get(r[1], 0) + 1
    out = {
        "status": "ok" if first_lb2 is not None else "no_takeover",
        "last_lb1_ms": ms(max(lb1_done)) if lb1_done else None,
        "first_lb2_ms": ms(first_lb2[3]) if first_lb2 else None,
        "first_lb2_sent_ms": ms(first_lb2[2]) if first_lb2 else None,
        "garp_ms": ms(garps[0]) if garps else None,
        "garps": len(garps),
        "last_advert_ms": ms(lb1_adv[-1]) if lb1_adv else None,
        "takeover_after_advert_ms": (round((garps[0] - lb1_adv[-1]) * 1000.0, 2)
                                     if garps and lb1_adv else None),
        "lb1_adverts_after_kill": [[ms(ts), p] for ts, p in lb1_adv_after],
        "vip_del_ms": ms(vip_del["t"]),
        "vip_del_err": vip_del["err"],
        "pre_requests": len(before),
        "pre_failed": sum(1 for r in before if not (r[0] and r[1] == "lb1")),
        "post_requests": len(after),
        "post_lb1": sum(1 for r in after if r[0] and r[1] == "lb1"),
        "post_lb2": sum(1 for r in after if r[0] and r[1] == "lb2"),
        "post_failed": sum(1 for r in after if not r[0]),
        "post_errors": errors,
        "warm_s": round(t_steady - t_start, 3),
    }
    print(json.dumps(out))
    return 0 if first_lb2 is not None else 4


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vip", required=True)
    p.add_argument("--prefix", type=int, required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--lb1-ns", required=True)
    p.add_argument("--lb2-mac", required=True)
    p.add_argument("--lb1-ip", required=True, help="lb1's own address (the source of its adverts)")
    p.add_argument("--kill-pid", type=int, action="append", required=True)
    p.add_argument("--stop-pid", type=int, default=0)
    p.add_argument("--period-ms", type=float, default=5)
    p.add_argument("--timeout-ms", type=float, default=200)
    p.add_argument("--warm-ok", type=int, default=40)
    p.add_argument("--warm-max", type=float, default=15)
    p.add_argument("--steady", type=float, default=0.3)
    p.add_argument("--interval", type=float, required=True, help="advert interval, seconds")
    p.add_argument("--phase", type=float, default=None,
                   help="kill this fraction (0..1) of the advert interval after an advert from lb1 "
                        "(default: uniform random)")
    p.add_argument("--tail", type=float, default=0.2)
    p.add_argument("--max-wait", type=float, default=10)
    args = p.parse_args()
    if args.phase is None:
        args.phase = random.random()
    sys.exit(asyncio.run(main(args)))
