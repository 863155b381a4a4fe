#!/usr/bin/env python3
"""Helpers for bench/compare.sh: parse wrk / h2load output, read /proc, build the report.

Subcommands (all print to stdout):
  parse-wrk FILE                 -> "rps p50_ms p99_ms requests errors latency_src"
  parse-h2load FILE [LOGFILE]    -> same fields; p50/p99 from h2load's per-request log
  cpu-ticks PID...               -> utime+stime (clock ticks) summed over the PIDs (all threads)
  snap PIDS -- PIDS              -> "monotonic_s ticksA ticksB busy steal waitA_ns waitB_ns psi_us": CPU
                                    ticks of each PID set, machine-wide non-idle/steal ticks
                                    (/proc/stat), the time the sets' threads waited on a run queue
                                    (/proc/PID/task/*/schedstat, field 2) and the machine's CPU
                                    pressure stall total ('some', µs; -1 without PSI)
  wait-quiet SECONDS PERCENT     -> wait (bounded) until machine-wide busy CPU < PERCENT over 1 s
  hwm-kib PID...                 -> VmHWM (KiB) summed over the PIDs
  report RUNS.tsv OUT.md META.txt -> prints the plain-text tables and writes the markdown file
"""
import math
import os
import re
import statistics
import sys

from common import f as _f, med as _med, ratio as _ratio, rng as _rng  # bench/common.py

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(tok):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", tok)
    if not m:
        raise ValueError("bad wrk duration %r" % tok)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(path):
    txt = open(path, encoding="utf-8", errors="replace").read()
    rps = p50 = p99 = None
    requests = 0
    errors = 0
    m = re.search(r"Requests/sec:\s+([0-9.]+)", txt)
    if m:
        rps = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in", txt, re.M)
    if m:
        requests = int(m.group(1))
    m = re.search(r"^\s*50%\s+(\S+)", txt, re.M)
    if m:
        p50 = _ms(m.group(1))
    m = re.search(r"^\s*99%\s+(\S+)", txt, re.M)
    if m:
        p99 = _ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
    if m:
        errors += int(m.group(1))
    if rps is None:
        raise SystemExit("wrk output has no Requests/sec line: %s" % path)
    return rps, p50, p99, requests, errors, "wrk"


def percentile(sorted_vals, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(math.ceil(q / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[k]


def parse_h2load(path, logpath=None):
    txt = open(path, encoding="utf-8", errors="replace").read()
    m = re.search(r"finished in ([0-9.]+)(us|ms|s|m|h), ([0-9.]+) req/s", txt)
    if not m:
        raise SystemExit("h2load output has no 'finished in' line: %s" % path)
    secs = float(m.group(1)) * UNITS[m.group(2)] / 1e3
    m2 = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        txt,
    )
    succeeded = int(m2.group(4)) if m2 else 0
    errors = (int(m2.group(5)) + int(m2.group(6)) + int(m2.group(7))) if m2 else 0
    m3 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", txt)
    if m3:
        errors += int(m3.group(3)) + int(m3.group(4))
    rps = succeeded / secs if secs > 0 else 0.0
    p50 = p99 = None
    src = "h2load-mean"
    lat = []
    if logpath and os.path.exists(logpath):
        with open(logpath, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    try:
                        lat.append(int(parts[2]) / 1e3)
                    except ValueError:
                        pass
    if lat:
        lat.sort()
        p50 = percentile(lat, 50)
        p99 = percentile(lat, 99)
        src = "h2load-log"
    else:
        # Fallback: h2load itself prints only min/max/mean/sd; report the mean for both.
        m4 = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", txt)
        if m4:
            p50 = p99 = _ms(m4.group(3))
    return rps, p50, p99, succeeded, errors, src


def _stat_fields(pid):
    with open("/proc/%s/stat" % pid) as f:
        s = f.read()
    # comm may contain spaces and parentheses: split after the last ')'
    return s[s.rindex(")") + 2:].split()


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        # fields[0] is field 3 (state); utime is field 14, stime field 15
        total += int(fields[11]) + int(fields[12])
    return total


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    steal = v[7] if len(v) > 7 else 0
    return busy, steal, sum(v[:8])


def snap(args):
    import time
    if "--" in args:
        i = args.index("--")
        a, b = args[:i], args[i + 1:]
    else:
        a, b = args, []
    t = time.monotonic()
    ta = cpu_ticks(a)
    tb = cpu_ticks(b)
    busy, steal, _ = machine_ticks()
    return "%.4f %d %d %d %d %d %d %d" % (t, ta, tb, busy, steal, run_delay_ns(a), run_delay_ns(b),
                                          psi_cpu_some_us())


def psi_cpu_some_us():
    """Cumulative µs during which some task waited for a CPU (/proc/pressure/cpu), or -1."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    for field in line.split():
                        if field.startswith("total="):
                            return int(field[6:])
    except (OSError, ValueError):
        pass
    return -1


def run_delay_ns(pids):
    total = 0
    for pid in pids:
        for tid in os.listdir("/proc/%s/task" % pid):
            try:
                with open("/proc/%s/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                pass  # thread exited
    return total


def wait_quiet(seconds, percent):
    import time
    deadline = time.monotonic() + seconds
    while True:
        b0, _, t0 = machine_ticks()
        time.sleep(1.0)
        b1, _, t1 = machine_ticks()
        pct = 100.0 * (b1 - b0) / max(1, t1 - t0)
        if pct < percent:
            return "%.1f" % pct
        if time.monotonic() >= deadline:
            return "%.1f (gave up)" % pct


def hwm_kib(pids):
    total = 0
    for pid in pids:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


# ---------------------------------------------------------------------------- report

SCEN_TITLE = {
    "small": "a) 13 B, keep-alive (wrk)",
    "big": "b) 64 KiB, keep-alive (wrk)",
    "close": "c) 13 B, new conn/request (wrk)",
    "h2c": "d) 13 B, h2c prior knowledge (h2load)",
    "tcp": "e) TCP mode, 64 KiB keep-alive (wrk)",
}
TARGET_ORDER = ["direct", "tandem", "haproxy", "nginx"]


def _num(x):
    if x in ("", "-", "NA", None):
        return None
    return float(x)


def report(runs_path, out_md, meta_path):
    rows = []
    with open(runs_path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if not line.strip():
                continue
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    meta = open(meta_path).read() if meta_path and os.path.exists(meta_path) else ""

    scen_order = []
    for r in rows:
        if r["scenario"] not in scen_order:
            scen_order.append(r["scenario"])

    med = {}  # (scenario, target) -> dict of medians
    for s in scen_order:
        for t in TARGET_ORDER:
            rs = [r for r in rows if r["scenario"] == s and r["target"] == t]
            if not rs:
                continue
            ok = [r for r in rs if r["status"] == "ok"]
            if not ok:
                med[(s, t)] = {"failed": len(rs)}
                continue
            reqs = sum(int(r["requests"]) for r in ok)
            errs = sum(int(r["errors"]) for r in ok)
            med[(s, t)] = {
                "n": len(ok),
                "failed": len(rs) - len(ok),
                "rps": _med([_num(r["rps"]) for r in ok]),
                "p50": _med([_num(r["p50_ms"]) for r in ok]),
                "p99": _med([_num(r["p99_ms"]) for r in ok]),
                "cpu": _med([_num(r["cpu_us_per_req"]) for r in ok]),
                "cpu_rng": _rng([_num(r["cpu_us_per_req"]) for r in ok]),
                "rps_rng": _rng([_num(r["rps"]) for r in ok]),
                "rss": _med([_num(r["rss_kib"]) for r in ok]),
                "core": _med([_num(r.get("proxy_cpu_pct")) for r in ok]),
                "other": _med([_num(r.get("other_cpu_pct")) for r in ok]),
                "pwait": _med([_num(r.get("proxy_wait_pct")) for r in ok]),
                "bwait": _med([_num(r.get("backend_wait_pct")) for r in ok]),
                "err_pct": (100.0 * errs / (reqs + errs)) if (reqs + errs) else 0.0,
                "lat": ok[0]["latency_src"],
            }

    # ---- main table
    cols = ["scenario", "target", "req/s", "req/s min–max", "p50 ms", "p99 ms", "CPU µs/req", "CPU min–max",
            "proxy core %", "peak RSS MiB",
            "err %", "runq wait %", "runs"]
    table = []
    notes = set()
    for s in scen_order:
        for t in TARGET_ORDER:
            if (s, t) not in med:
                continue
            m = med[(s, t)]
            if "rps" not in m:
                table.append([SCEN_TITLE.get(s, s), t, "FAILED"] + ["-"] * (len(cols) - 4) + ["0/%d" % m["failed"]])
                continue
            rss = m["rss"] / 1024.0 if m["rss"] else None
            cpu = _f(m["cpu"], ".2f")
            if t == "direct":
                cpu += "¹"
                notes.add("direct")
            p50 = _f(m["p50"], ".3f")
            p99 = _f(m["p99"], ".3f")
            if m["lat"] == "h2load-mean":
                p50 += "²"
                p99 += "²"
                notes.add("h2mean")
            table.append([
                SCEN_TITLE.get(s, s), t, _f(m["rps"], ",.0f"),
                "-" if not m["rps_rng"] else "%.1f–%.1fk" % (m["rps_rng"][0] / 1e3, m["rps_rng"][1] / 1e3),
                p50, p99, cpu,
                "-" if not m["cpu_rng"] else "%.1f–%.1f" % m["cpu_rng"],
                _f(m["core"], ".0f"),
                "-" if t == "direct" else _f(rss, ".1f"),
                _f(m["err_pct"], ".2f"), "-" if t == "direct" else _f(m["pwait"], ".1f"),
                "%d/%d" % (m["n"], m["n"] + m["failed"]),
            ])

    # ---- ratios
    rcols = ["scenario", "req/s t/h", "req/s t/n", "CPU/req t/h", "CPU/req t/n",
             "p99 t/h", "p99 t/n", "RSS t/h", "RSS t/n"]
    rtable = []
    bar = []
    for s in scen_order:
        tm = med.get((s, "tandem"), {})
        hm = med.get((s, "haproxy"), {})
        nm = med.get((s, "nginx"), {})
        if "rps" not in tm:
            continue
        row = [SCEN_TITLE.get(s, s)]
        for key in ("rps", "cpu", "p99", "rss"):
            for other in (hm, nm):
                row.append(_f(_ratio(tm.get(key), other.get(key)), ".2f"))
        rtable.append(row)

        # performance bar of issue 2 (req/s >= both, CPU/req <= both, p99 <= 1.2x HAProxy,
        # RSS <= HAProxy; TCP: throughput >= HAProxy)
        def chk(cond):
            return "-" if cond is None else ("PASS" if cond else "FAIL")

        def ge(a, b):
            return None if a is None or b is None else a >= b

        def le(a, b):
            return None if a is None or b is None else a <= b

        rps_ok = [ge(tm.get("rps"), o.get("rps")) for o in (hm, nm) if "rps" in o]
        cpu_ok = [le(tm.get("cpu"), o.get("cpu")) for o in (hm, nm) if "cpu" in o]
        p99_ok = le(tm.get("p99"), 1.2 * hm["p99"]) if hm.get("p99") else None
        rss_ok = le(tm.get("rss"), hm.get("rss")) if hm.get("rss") else None
        if s == "tcp":
            bar.append([SCEN_TITLE.get(s, s), chk(ge(tm.get("rps"), hm.get("rps"))), "(info) " + chk(all(cpu_ok) if cpu_ok else None),
                        "(info) " + chk(p99_ok), chk(rss_ok)])
        else:
            bar.append([SCEN_TITLE.get(s, s), chk(all(rps_ok) if rps_ok else None),
                        chk(all(cpu_ok) if cpu_ok else None), chk(p99_ok), chk(rss_ok)])
    bcols = ["scenario", "req/s ≥ HAProxy & nginx", "CPU/req ≤ HAProxy & nginx", "p99 ≤ 1.2× HAProxy", "RSS ≤ HAProxy"]

    foot = []
    if "direct" in notes:
        foot.append("¹ direct: CPU of the backend nginx worker (what serving the request costs without a proxy); "
                    "RSS not shown (backends are not restarted per run).")
    if "h2mean" in notes:
        foot.append("² h2load gave no per-request log: p50 and p99 are both h2load's mean request time.")
    foot.append("min–max: spread over the rounds (the medians are what the ratios use).")
    foot.append("proxy core % = CPU time of the proxy ÷ wall time (100 = its core was saturated). "
                "runq wait % = time the proxy's threads were runnable but waiting for their core (which "
                "nothing else of the benchmark uses), ÷ wall time, from /proc/PID/task/*/schedstat: "
                "near 0 on a quiet machine; above a few % other processes disturbed the run.")
    foot.append("Ratios: t/h = tandem ÷ HAProxy, t/n = tandem ÷ nginx. For req/s higher is better; "
                "for CPU/req, p99 and RSS lower is better.")

    # ---- plain text
    def txt_table(c, t):
        w = [max(len(str(c[i])), *(len(str(r[i])) for r in t)) if t else len(c[i]) for i in range(len(c))]
        out = ["  ".join(str(c[i]).ljust(w[i]) for i in range(len(c)))]
        out.append("  ".join("-" * w[i] for i in range(len(c))))
        for r in t:
            out.append("  ".join(str(r[i]).ljust(w[i]) for i in range(len(c))))
        return "\n".join(out)

    def md_table(c, t):
        out = ["| " + " | ".join(c) + " |", "|" + "|".join("---" for _ in c) + "|"]
        for r in t:
            out.append("| " + " | ".join(str(x) for x in r) + " |")
        return "\n".join(out)

    print()
    print("Medians per scenario and target")
    print(txt_table(cols, table))
    if rtable:
        print()
        print("Ratios (tandem/HAProxy = t/h, tandem/nginx = t/n)")
        print(txt_table(rcols, rtable))
        print()
        print("Performance bar (issue 2)")
        print(txt_table(bcols, bar))
    else:
        print("\n(no tandem results: ratios not computed)")
    for line in foot:
        print(line)

    md = []
    md.append("### Benchmark results\n")
    if meta:
        md.append(meta.strip() + "\n")
    md.append("#### Medians per scenario and target\n")
    md.append(md_table(cols, table) + "\n")
    if rtable:
        md.append("#### Ratios\n")
        md.append(md_table(rcols, rtable) + "\n")
        md.append("#### Performance bar (issue 2)\n")
        md.append(md_table(bcols, bar) + "\n")
    else:
        md.append("_No tandem results in this run: ratios not computed._\n")
    md.append("\n".join(foot) + "\n")
    with open(out_md, "w") as f:
        f.write("\n".join(md))


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "parse-wrk":
        r = parse_wrk(argv[2])
    elif cmd == "parse-h2load":
        r = parse_h2load(argv[2], argv[3] if len(argv) > 3 else None)
    elif cmd == "cpu-ticks":
        print(cpu_ticks(argv[2:]))
        return
    elif cmd == "snap":
        print(snap(argv[2:]))
        return
    elif cmd == "wait-quiet":
        print(wait_quiet(float(argv[2]), float(argv[3])))
        return
    elif cmd == "hwm-kib":
        print(hwm_kib(argv[2:]))
        return
    elif cmd == "report":
        report(argv[2], argv[3], argv[4] if len(argv) > 4 else None)
        return
    else:
        raise SystemExit("unknown subcommand %r\n%s" % (cmd, __doc__))
    rps, p50, p99, requests, errors, src = r
    print("%.2f\t%s\t%s\t%d\t%d\t%s" % (
        rps, "NA" if p50 is None else "%.4f" % p50, "NA" if p99 is None else "%.4f" % p99,
        requests, errors, src))


if __name__ == "__main__":
    main(sys.argv)
