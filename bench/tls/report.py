#!/usr/bin/env python3
"""Tables for bench/tls.sh.

  report RUNS.tsv OUT.md META.md   -> prints the tables and writes the markdown file

RUNS.tsv has one line per run (round, scenario, variant, target, status, rps, p50_ms, p99_ms,
cpu_us_per_req, proxy_cpu_pct, rss_kib, requests, errors, proxy_wait_pct, psi_pct,
other_cpu_pct, latency_src). Medians over the successful runs of each (scenario, variant,
target); ratios are tandem ÷ HAProxy (t/h) and tandem ÷ nginx (t/n) of those medians.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import f, med, num, ratio, rng  # noqa: E402  (bench/common.py)

TITLE = {
    "hs": "new TLS connection per request (full handshake)",
    "resume": "new TLS connection per request (resumed)",
    "ka": "HTTP/1.1 keep-alive over TLS",
    "h2": "HTTP/2 over TLS (h2load)",
    "route": "cleartext keep-alive, routing rules",
}
SCEN_ORDER = ["hs", "resume", "ka", "h2", "route"]
TARGETS = ["tandem", "haproxy", "nginx"]


def variant_key(v):
    return (0, int(v)) if v.isdigit() else (1, v)


def txt_table(c, t):
    w = [max([len(str(c[i]))] + [len(str(r[i])) for r in t]) for i in range(len(c))]
    out = ["  ".join(str(c[i]).ljust(w[i]) for i in range(len(c))),
           "  ".join("-" * w[i] for i in range(len(c)))]
    for r in t:
        out.append("  ".join(str(r[i]).ljust(w[i]) for i in range(len(c))))
    return "\n".join(out)


def md_table(c, t):
    out = ["| " + " | ".join(c) + " |", "|" + "|".join("---" for _ in c) + "|"]
    for r in t:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)


def report(runs_path, out_md, meta_path):
    rows = []
    with open(runs_path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            if line.strip():
                rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    meta = open(meta_path).read() if meta_path and os.path.exists(meta_path) else ""

    groups = []  # (scenario, variant) in a stable order
    for r in rows:
        g = (r["scenario"], r["variant"])
        if g not in groups:
            groups.append(g)
    groups.sort(key=lambda g: (SCEN_ORDER.index(g[0]) if g[0] in SCEN_ORDER else 99, variant_key(g[1])))

    m = {}
    for (s, v) in groups:
        for t in TARGETS:
            rs = [r for r in rows if (r["scenario"], r["variant"], r["target"]) == (s, v, t)]
            if not rs:
                continue
            ok = [r for r in rs if r["status"] == "ok"]
            if not ok:
                m[(s, v, t)] = {"n": 0, "tried": len(rs)}
                continue
            reqs = sum(int(r["requests"]) for r in ok)
            errs = sum(int(r["errors"]) for r in ok)
            m[(s, v, t)] = {
                "n": len(ok), "tried": len(rs),
                "rps": med([num(r["rps"]) for r in ok]),
                "rps_rng": rng([num(r["rps"]) for r in ok]),
                "p50": med([num(r["p50_ms"]) for r in ok]),
                "p99": med([num(r["p99_ms"]) for r in ok]),
                "cpu": med([num(r["cpu_us_per_req"]) for r in ok]),
                "cpu_rng": rng([num(r["cpu_us_per_req"]) for r in ok]),
                "core": med([num(r["proxy_cpu_pct"]) for r in ok]),
                "rss": med([num(r["rss_kib"]) for r in ok]),
                "pwait": med([num(r["proxy_wait_pct"]) for r in ok]),
                "psi": med([num(r["psi_pct"]) for r in ok]),
                "err": 100.0 * errs / (reqs + errs) if reqs + errs else 0.0,
                "lat": ok[0]["latency_src"],
            }

    cols = ["scenario", "key / rules", "target", "req/s", "req/s min–max", "p50 ms", "p99 ms",
            "CPU µs/req", "CPU min–max", "proxy core %", "peak RSS MiB", "err %", "runq wait %",
            "PSI cpu %", "runs"]
    table = []
    for (s, v) in groups:
        for t in TARGETS:
            x = m.get((s, v, t))
            if x is None:
                continue
            vv = v + (" rules" if s == "route" else "")
            if not x["n"]:
                table.append([TITLE.get(s, s), vv, t, "FAILED"] + ["-"] * (len(cols) - 5) + ["0/%d" % x["tried"]])
                continue
            table.append([
                TITLE.get(s, s), vv, t, f(x["rps"], ",.0f"),
                "-" if not x["rps_rng"] else "%.1f–%.1fk" % (x["rps_rng"][0] / 1e3, x["rps_rng"][1] / 1e3),
                f(x["p50"], ".3f"), f(x["p99"], ".3f"), f(x["cpu"], ".2f"),
                "-" if not x["cpu_rng"] else "%.1f–%.1f" % x["cpu_rng"],
                f(x["core"], ".0f"), f(x["rss"] / 1024.0 if x["rss"] else None, ".1f"),
                f(x["err"], ".2f"), f(x["pwait"], ".1f"), f(x["psi"], ".0f"),
                "%d/%d" % (x["n"], x["tried"]),
            ])

    rcols = ["scenario", "key / rules", "req/s t/h", "req/s t/n", "CPU/req t/h", "CPU/req t/n", "p99 t/h", "p99 t/n"]
    rtable = []
    for (s, v) in groups:
        tm = m.get((s, v, "tandem")) or {}
        if not tm.get("n"):
            continue
        hm = m.get((s, v, "haproxy")) or {}
        nm = m.get((s, v, "nginx")) or {}
        row = [TITLE.get(s, s), v + (" rules" if s == "route" else "")]
        for k in ("rps", "cpu", "p99"):
            for o in (hm, nm):
                row.append(f(ratio(tm.get(k), o.get(k)), ".2f"))
        rtable.append(row)

    # routing: what the rules cost, per target (the largest rule count against the smallest)
    rt = []
    counts = sorted({int(v) for (s, v) in groups if s == "route"})
    if len(counts) >= 2:
        lo, hi = counts[0], counts[-1]
        for t in TARGETS:
            a = m.get(("route", str(lo), t)) or {}
            b = m.get(("route", str(hi), t)) or {}
            if not a.get("n") or not b.get("n"):
                continue
            d = None if a["cpu"] is None or b["cpu"] is None else b["cpu"] - a["cpu"]
            rt.append([t, "%d → %d" % (lo, hi), f(a["cpu"], ".2f"), f(b["cpu"], ".2f"), f(d, "+.2f"),
                       f(None if d is None else d * 1e3 / (hi - lo), "+.1f"),
                       f(a["rps"], ",.0f"), f(b["rps"], ",.0f"), f(a["p99"], ".3f"), f(b["p99"], ".3f")])
    rtcols = ["target", "rules", "CPU µs/req (few)", "CPU µs/req (many)", "Δ µs/req", "Δ ns/rule",
              "req/s (few)", "req/s (many)", "p99 ms (few)", "p99 ms (many)"]

    foot = [
        "req/s: for 'new TLS connection per request' every request is one full handshake, so req/s = handshakes/s.",
        "CPU µs/req = (utime+stime of the proxy, all threads; nginx master + worker) ÷ requests completed. "
        "proxy core % = that CPU ÷ wall time (near 100: the proxy was the bottleneck and req/s compares the "
        "proxies; well below: the client core limited the run and CPU/req is the comparison).",
        "runq wait % = time the proxy's threads waited for their core ÷ wall time (near 0 on a quiet machine); "
        "PSI cpu % = /proc/pressure/cpu 'some' over the run: share of time any task on the machine waited for a CPU "
        "(the load generator and backends share core 1, so it is never 0; much higher means other work ran).",
        "min–max: spread over the rounds. Ratios t/h = tandem ÷ HAProxy, t/n = tandem ÷ nginx: higher is better "
        "for req/s, lower for CPU/req and p99.",
    ]

    print()
    print("Medians per scenario and target")
    print(txt_table(cols, table))
    if rtable:
        print()
        print("Ratios (tandem/HAProxy = t/h, tandem/nginx = t/n)")
        print(txt_table(rcols, rtable))
    if rt:
        print()
        print("Routing cost (cleartext keep-alive; no rule matches, so every rule is evaluated)")
        print(txt_table(rtcols, rt))
    for line in foot:
        print(line)

    md = ["### TLS, HTTP/2 and routing results\n"]
    if meta:
        md.append(meta.strip() + "\n")
    md.append("#### Medians per scenario and target\n")
    md.append(md_table(cols, table) + "\n")
    if rtable:
        md.append("#### Ratios\n")
        md.append(md_table(rcols, rtable) + "\n")
    if rt:
        md.append("#### Routing cost\n")
        md.append(md_table(rtcols, rt) + "\n")
    md.append("\n".join(foot) + "\n")
    with open(out_md, "w") as fh:
        fh.write("\n".join(md))


def main(argv):
    if len(argv) >= 4 and argv[1] == "report":
        report(argv[2], argv[3], argv[4] if len(argv) > 4 else None)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
