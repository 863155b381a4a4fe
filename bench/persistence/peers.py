#!/usr/bin/env python3
"""HAProxy's stick-table replication (`peers`), measured like tandem's replication example.

Run by bench/persistence.sh as the anchor of crates/tandem-cluster/examples/replication.rs;
prints one tab-separated line with the example's columns ('-' where a figure does not apply).

  peers.py --scenario rate:R|snapshot:N [--round R] [--duration S] [--warmup S] [--dir DIR]
           [--port-a P] [--port-b P] [--cpu-a CORE] [--cpu-b CORE] [--samples PER_S]
           [--poll-ms MS] [--timeout S] [--pidfile FILE] [--header]

Two HAProxy processes (`nbthread 1`, local peer names a and b, a `peers` section on
127.0.0.1), each with `stick-table type ip ... peers mesh store server_id`. HAProxy has no
API to bind a client from outside except its CLI, so node A's "data plane" is
`set table be key <ip> data.server_id <1|2>` commands streamed over one interactive CLI
connection (`prompt` mode); a local update is pushed to the peers as a client's would be.
Limits of that driver, stated in RESULTS.md: the CLI parses each command (~15 µs of A's CPU),
so A's CPU is not comparable to tandem's, and A takes at most ~60-75k commands/s, so a rate
scenario is marked `driver-limited` when A did not keep up.

- rate:R      both up, connected and past their start-up resync phase; R new keys/s for
              --duration s, the keys of the first
              --warmup s not sampled. B's `used` count (`show
              table`, O(1)) is polled every --poll-ms: keys reach B in update order, so key i is
              on B once used > i. Lag = A's CLI answer for the sampled key (A has bound it) ->
              seen on B; the lag from the CLI send (which adds A's CLI queue) is reported
              apart as lag_send_*. Each CLI
              poll costs B CPU (~70 µs); that cost, measured over 1 s of polling before the run,
              is subtracted from B's CPU.
- snapshot:N  N keys on A while B is down; then B starts: time until B holds N (HAProxy's full
              resync, "teaching", on connect).

Both processes are started by this script and stopped by PID (also on SIGTERM/SIGINT); their
PIDs are appended to --pidfile so the calling shell script can stop them if this one dies.
"""
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

COLUMNS = [
    "round", "scenario", "rate", "n", "status", "insert_s", "inserted_rps", "applied_rps",
    "drain_ms", "lag_p50_ms", "lag_p90_ms", "lag_p99_ms", "lag_max_ms", "lag_samples",
    "hb_lag_p50_ms", "hb_lag_max_ms", "max_lag_entries", "max_queued", "catchup_ms",
    "catchup_rps", "cpu_a_ms", "cpu_b_ms", "cpu_insert_ms", "cpu_poll_ms", "a_us_per_rec",
    "b_us_per_rec", "ckpt_ms", "ckpt_mib", "rss_mib", "b_snapshots", "b_resumes", "echo_records",
    "lag_send_p50_ms", "lag_send_p99_ms",
]

CHILDREN = []


def stop_children(*_):
    for p in CHILDREN:
        if p.poll() is None:
            p.terminate()
    for p in CHILDREN:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    CHILDREN.clear()


def on_signal(signum, _frame):
    stop_children()
    sys.exit(128 + signum)


def parse_args(argv):
    o = {
        "scenario": None, "round": "1", "duration": 10.0, "dir": None, "port_a": 18951,
        "port_b": 18952, "cpu_a": None, "cpu_b": None, "samples": 100, "poll_ms": 1.0,
        "timeout": 120.0, "pidfile": None, "header": False, "warmup": 1.0,
    }
    it = iter(argv)
    for a in it:
        if a == "--header":
            o["header"] = True
            continue
        key = a[2:].replace("-", "_")
        if not a.startswith("--") or key not in o:
            raise SystemExit(__doc__)
        v = next(it, None)
        if v is None:
            raise SystemExit(__doc__)
        o[key] = v
    if not o["scenario"] or ":" not in o["scenario"] or not o["dir"]:
        raise SystemExit(__doc__)
    kind, n = o["scenario"].split(":", 1)
    if kind not in ("rate", "snapshot"):
        raise SystemExit("peers.py: scenario %r not supported for HAProxy (rate, snapshot)" % kind)
    o["kind"], o["n"] = kind, int(n)
    for k in ("duration", "poll_ms", "timeout", "warmup"):
        o[k] = float(o[k])
    for k in ("port_a", "port_b", "samples"):
        o[k] = int(o[k])
    return o


# ---------------------------------------------------------------------------- HAProxy

def write_cfg(o, name, size):
    d = o["dir"]
    path = os.path.join(d, "%s.cfg" % name)
    with open(path, "w") as f:
        f.write("""global
    nbthread 1
    stats socket %(d)s/%(n)s.sock mode 600 level admin
    stats timeout 10m
peers mesh
    peer a 127.0.0.1:%(pa)d
    peer b 127.0.0.1:%(pb)d
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
backend be
    stick-table type ip size %(size)d expire 1h peers mesh store server_id
    server s1 127.0.0.1:18301
    server s2 127.0.0.1:18302
""" % {"d": d, "n": name, "pa": o["port_a"], "pb": o["port_b"], "size": size})
    return path


def start(o, name, size):
    cfg = write_cfg(o, name, size)
    cpu = o["cpu_a"] if name == "a" else o["cpu_b"]
    cmd = ["haproxy", "-db", "-f", cfg, "-L", name]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    log = open(os.path.join(o["dir"], "%s.log" % name), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    CHILDREN.append(p)
    if o["pidfile"]:
        with open(o["pidfile"], "a") as f:
            f.write("%d\n" % p.pid)
    sock = os.path.join(o["dir"], "%s.sock" % name)
    deadline = time.monotonic() + 10
    while True:
        if p.poll() is not None:
            raise SystemExit("peers.py: haproxy %s exited at start; see %s.log" % (name, name))
        try:
            cli(sock, "show info")
            return p, sock
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("peers.py: haproxy %s: no CLI after 10 s" % name)
            time.sleep(0.02)


def cli(sock, cmd):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(10)
        s.connect(sock)
        s.sendall((cmd + "\n").encode())
        out = []
        while True:
            d = s.recv(65536)
            if not d:
                break
            out.append(d)
        return b"".join(out).decode(errors="replace")
    finally:
        s.close()


USED = re.compile(r"# table: be, .*used:(\d+)")


def used(sock):
    m = USED.search(cli(sock, "show table"))
    if not m:
        raise OSError("no table 'be' in 'show table'")
    return int(m.group(1))


def cpu_ns(pid):
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def hwm_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def command(i):
    a = 0x0A000000 + i   # 10.0.0.0 + i, as in the tandem example
    return b"set table be key %d.%d.%d.%d data.server_id %d\n" % (
        a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255, 1 + (i & 1))


class Inserter:
    """One interactive CLI connection to A; a reader thread counts the answers."""

    def __init__(self, sock, marks=()):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(sock)
        self.done = 0
        self.last = None
        self.want = None
        self.cond = threading.Condition()
        # When A answered the command of each key in `marks` (sorted): A has bound it then.
        self.marks = list(marks)
        self.answered = {}
        self.s.sendall(b"prompt\n")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        first = True
        m = 0
        while True:
            try:
                d = self.s.recv(1 << 20)
            except OSError:
                return
            if not d:
                return
            now = time.monotonic()
            k = d.count(b"> ")
            if first and k:
                k -= 1   # the prompt after the 'prompt' command itself
                first = False
            with self.cond:
                self.done += k
                while m < len(self.marks) and self.marks[m] < self.done:
                    self.answered[self.marks[m]] = now
                    m += 1
                if self.want is not None and self.done >= self.want and self.last is None:
                    self.last = time.monotonic()
                self.cond.notify_all()

    def wait(self, n, timeout):
        with self.cond:
            self.want = n
            if self.done >= n and self.last is None:
                self.last = time.monotonic()
            end = time.monotonic() + timeout
            while self.done < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def send(self, data):
        self.s.sendall(data)


def percentile(vals, q):
    if not vals:
        return None
    k = max(0, min(len(vals) - 1, int(-(-q * len(vals) // 100)) - 1))
    return vals[k]


def fmt(v, d):
    return "-" if v is None else "%.*f" % (d, v)


# ---------------------------------------------------------------------------- scenarios

def run_rate(o, row):
    rate, n = o["n"], int(o["n"] * o["duration"])
    size = max(2 * n, 100000) + 16
    pa, sa = start(o, "a", size)
    pb, sb = start(o, "b", size)
    # Wait for the peer session: a probe key must reach B.
    cli(sa, "set table be key 9.255.255.254 data.server_id 1")
    deadline = time.monotonic() + 15
    while used(sb) < 1:
        if time.monotonic() > deadline:
            raise SystemExit("peers.py: the peers did not connect within 15 s")
        time.sleep(0.01)
    # Then for the end of the start-up resync phase (HAProxy's resync_timeout, 5 s, shown as
    # <PAST> once over): until then the two sessions collide and reconnect, and a push can
    # wait a few hundred ms. tandem has no such phase (its nodes are measured once connected).
    deadline = time.monotonic() + 20
    while not all("resync_timeout=<PAST>" in cli(x, "show peers").split("\n", 1)[0] for x in (sa, sb)):
        if time.monotonic() > deadline:
            print("peers.py: warning: the peers' start-up resync did not end within 20 s", file=sys.stderr)
            break
        time.sleep(0.1)
    offset = used(sb)
    poll = o["poll_ms"] / 1000.0
    # What a CLI poll costs B: poll for 1 s with nothing else going on.
    c0, k, t = cpu_ns(pb.pid), 0, time.monotonic()
    while time.monotonic() - t < 1.0:
        used(sb)
        k += 1
        time.sleep(poll)
    per_poll_ns = (cpu_ns(pb.pid) - c0) / max(1, k)

    every = max(1, rate // o["samples"])
    rnd = random.Random(1)
    # Keys of the first --warmup seconds are not sampled (start-up transients).
    sample_idx, nxt = [], min(n - 1, int(rate * o["warmup"]))
    while nxt < n:
        sample_idx.append(nxt)
        nxt += rnd.randint(1, 2 * every - 1) if every > 1 else 1
    if sample_idx[-1] != n - 1:
        sample_idx.append(n - 1)
    sent_at = {}
    chunk = max(1, rate // 1000)   # ~1 ms of keys per send
    # Built beforehand, so the sender only sends (and holds the GIL as little as possible).
    chunks = [b"".join(command(i) for i in range(lo, min(n, lo + chunk))) for lo in range(0, n, chunk)]
    ins = Inserter(sa, sample_idx)
    lock = threading.Lock()
    t_start = [None]

    def sender():
        si = 0
        t0 = time.monotonic()
        t_start[0] = t0
        for c0_, data in zip(range(0, n, chunk), chunks):
            due = t0 + c0_ / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            hi = min(n, c0_ + chunk)
            now = time.monotonic()
            with lock:
                while si < len(sample_idx) and sample_idx[si] < hi:
                    sent_at[sample_idx[si]] = now
                    si += 1
            ins.send(data)

    ca0, cb0 = cpu_ns(pa.pid), cpu_ns(pb.pid)
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    seen_at, polls, last_seen = {}, 0, None
    pos = 0
    deadline = None
    while pos < len(sample_idx):
        u = used(sb) - offset
        polls += 1
        now = time.monotonic()
        with lock:
            while pos < len(sample_idx) and sample_idx[pos] < u and sample_idx[pos] in sent_at:
                seen_at[sample_idx[pos]] = now
                last_seen = now
                pos += 1
        if not th.is_alive() and deadline is None:
            deadline = now + o["timeout"]
        if deadline is not None and now > deadline:
            break
        time.sleep(poll)
    th.join()
    ins.wait(n, o["timeout"])
    ca1, cb1 = cpu_ns(pa.pid), cpu_ns(pb.pid)
    missing = len(sample_idx) - pos
    t0 = t_start[0]
    ins_s = (ins.last or time.monotonic()) - t0
    row.update(rate=str(rate), n=str(n), insert_s=fmt(ins_s, 3), inserted_rps=fmt(n / ins_s, 0))
    status = "ok" if missing == 0 else "missing-%d" % missing
    if status == "ok" and n / ins_s < 0.95 * rate:
        status = "driver-limited"
    row["status"] = status
    if missing == 0 and last_seen:
        row["applied_rps"] = fmt(n / (last_seen - t0), 0)
        row["drain_ms"] = fmt(max(0.0, last_seen - (ins.last or last_seen)) * 1e3, 1)
    # Lag as for tandem: from A having bound the key (its CLI answer) to B holding it. The
    # CLI queue on A (send -> answer) is the driver's, reported apart (lag_send_*). An answer
    # read after B already had the key counts as 0 (the reader thread was late).
    with ins.cond:
        answered = dict(ins.answered)
    lags = [max(0.0, seen_at[i] - answered.get(i, sent_at[i])) * 1e3 for i in sample_idx if i in seen_at]
    sends = sorted((seen_at[i] - sent_at[i]) * 1e3 for i in sample_idx if i in seen_at)
    row["lag_send_p50_ms"] = fmt(percentile(sends, 50), 2)
    row["lag_send_p99_ms"] = fmt(percentile(sends, 99), 2)
    if os.environ.get("PEERS_LAG_DUMP"):
        with open(os.environ["PEERS_LAG_DUMP"], "w") as f:
            f.write("".join("%.3f\n" % x for x in lags))
    lags.sort()
    for q, col in ((50, "lag_p50_ms"), (90, "lag_p90_ms"), (99, "lag_p99_ms")):
        row[col] = fmt(percentile(lags, q), 2)
    row["lag_max_ms"] = fmt(lags[-1] if lags else None, 2)
    row["lag_samples"] = str(len(lags))
    cpu_b = max(0.0, (cb1 - cb0) - polls * per_poll_ns)
    row.update(cpu_a_ms=fmt((ca1 - ca0) / 1e6, 1), cpu_b_ms=fmt(cpu_b / 1e6, 1),
               a_us_per_rec=fmt((ca1 - ca0) / 1e3 / n, 3), b_us_per_rec=fmt(cpu_b / 1e3 / n, 3),
               rss_mib=fmt(hwm_mib(pa.pid) + hwm_mib(pb.pid), 1))
    used_b = used(sb) - offset
    if row["status"] == "ok" and used_b != n:
        row["status"] = "b-holds-%d" % used_b


def run_snapshot(o, row):
    n = o["n"]
    size = max(2 * n, 100000) + 16
    pa, sa = start(o, "a", size)
    ins = Inserter(sa)
    t0 = time.monotonic()
    step = 20000
    for lo in range(0, n, step):
        ins.send(b"".join(command(i) for i in range(lo, min(n, lo + step))))
    if not ins.wait(n, o["timeout"]):
        raise SystemExit("peers.py: A did not take %d keys" % n)
    secs = ins.last - t0
    if used(sa) != n:
        raise SystemExit("peers.py: A holds %d keys, want %d" % (used(sa), n))
    print("peers.py: A holds %d keys (CLI: %.1f s, %.0f/s)" % (n, secs, n / secs), file=sys.stderr)
    row.update(n=str(n), insert_s=fmt(secs, 3), inserted_rps=fmt(n / secs, 0))
    ca0 = cpu_ns(pa.pid)
    t1 = time.monotonic()
    pb, sb = start(o, "b", size)
    deadline = t1 + o["timeout"]
    u = 0
    while True:
        try:
            u = used(sb)
        except OSError:
            u = 0
        if u >= n:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)   # a CLI poll costs B ~70 µs: 5 ms keeps that near 1 % of its core
    dt = time.monotonic() - t1
    ca1, cb = cpu_ns(pa.pid), cpu_ns(pb.pid)
    if u >= n:
        row.update(status="ok", catchup_ms=fmt(dt * 1e3, 1), catchup_rps=fmt(n / dt, 0))
    else:
        row["status"] = "timeout"
    row.update(cpu_a_ms=fmt((ca1 - ca0) / 1e6, 1), cpu_b_ms=fmt(cb / 1e6, 1),
               a_us_per_rec=fmt((ca1 - ca0) / 1e3 / n, 3), b_us_per_rec=fmt(cb / 1e3 / n, 3),
               rss_mib=fmt(hwm_mib(pa.pid) + hwm_mib(pb.pid), 1), b_snapshots="1")


def main():
    o = parse_args(sys.argv[1:])
    sys.setswitchinterval(0.0002)   # threads (sender, CLI reader, poller) take turns quickly
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.makedirs(o["dir"], exist_ok=True)
    if o["header"]:
        print("\t".join(COLUMNS))
    row = {c: "-" for c in COLUMNS}
    row.update(round=o["round"], scenario=o["kind"], n=str(o["n"]), status="failed")
    try:
        if o["kind"] == "rate":
            run_rate(o, row)
        else:
            run_snapshot(o, row)
    finally:
        stop_children()
    print("\t".join(row[c] for c in COLUMNS), flush=True)


if __name__ == "__main__":
    main()
