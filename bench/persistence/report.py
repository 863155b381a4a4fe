#!/usr/bin/env python3
"""Helpers for bench/persistence.sh: persistence counters, and the report.

Subcommands:
  counters tandem ADMIN_HOST:PORT  -> "pinned issued" (tandem_persistence_*_total, all services;
                                      "- -" when the service has no persistence)
  counters haproxy SOCKET          -> "s1_2xx s2_2xx" (HAProxy `show stat`, backend 'be')
  report HTTP.tsv REPL.tsv OUT.md META.md
                                   -> prints the tables and writes the markdown file (either
                                      TSV may be '-' when that part did not run)
"""
import os
import re
import socket
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import f, med, num, ratio, rng  # noqa: E402  (bench/common.py)

# ---------------------------------------------------------------------------- counters


def tandem_counters(admin):
    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=5) as r:
        text = r.read().decode(errors="replace")
    vals = {}
    for name in ("pinned", "issued"):
        total, seen = 0.0, False
        for m in re.finditer(r"^tandem_persistence_%s_total(?:\{[^}]*\})?\s+([0-9.eE+]+)" % name,
                             text, re.M):
            total += float(m.group(1))
            seen = True
        vals[name] = "%d" % total if seen else "-"
    return "%s %s" % (vals["pinned"], vals["issued"])


def haproxy_counters(sock):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock)
    s.sendall(b"show stat\n")
    out = []
    while True:
        d = s.recv(65536)
        if not d:
            break
        out.append(d)
    s.close()
    lines = b"".join(out).decode(errors="replace").splitlines()
    cols = lines[0].lstrip("# ").split(",")
    i_px, i_sv, i_2xx = cols.index("pxname"), cols.index("svname"), cols.index("hrsp_2xx")
    got = {}
    for line in lines[1:]:
        f = line.split(",")
        if len(f) > i_2xx and f[i_px] == "be" and f[i_sv] in ("s1", "s2"):
            got[f[i_sv]] = f[i_2xx] or "0"
    return "%s %s" % (got.get("s1", "-"), got.get("s2", "-"))


# ---------------------------------------------------------------------------- helpers


def k(v):
    return "-" if v is None else ("%.1fk" % (v / 1e3) if v >= 1e4 else "%.0f" % v)


def read_tsv(path):
    if path in ("-", ""):
        return []
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    if not lines:
        return []
    head = lines[0].split("\t")
    return [dict(zip(head, l.split("\t"))) for l in lines[1:] if l.strip()]


def table(header, rows):
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return md


def plain(header, rows):
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w[i]) for i, h in enumerate(header))]
    out += ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    return out


# ---------------------------------------------------------------------------- HTTP part

HTTP_TITLE = {
    "none": "no persistence (round robin)",
    "cookie-return": "cookie, returning client",
    "cookie-new": "cookie, new client",
    "source-ip": "source_ip (one client address)",
}
HTTP_ORDER = ["none", "cookie-return", "cookie-new", "source-ip"]
TARGETS = ["tandem", "haproxy"]


def check_ok(r):
    """Did persistence do what the scenario says, judged from the proxy's own counters?"""
    s, t = r["scenario"], r["target"]
    a, b, n = num(r.get("check_a")), num(r.get("check_b")), num(r.get("requests"))
    if not n:
        return None
    if t == "tandem":
        if s == "none":
            return True
        if a is None or b is None:
            return False
        if s in ("cookie-return", "source-ip"):
            return a >= 0.98 * n and b <= 0.02 * n
        if s == "cookie-new":
            return b >= 0.98 * n
    else:
        if a is None or b is None or a + b == 0:
            return False
        one = max(a, b) / (a + b)
        if s in ("cookie-return", "source-ip"):
            return one >= 0.99
        return one <= 0.6   # none, cookie-new: every request balanced anew -> both servers
    return None


def http_report(rows):
    out_md, out_txt = [], []
    ok = [r for r in rows if r.get("status") == "ok"]
    by = {}
    for r in ok:
        by.setdefault((r["scenario"], r["target"]), []).append(r)
    scen = [s for s in HTTP_ORDER if any(k_[0] == s for k_ in by)]
    scen += sorted({k_[0] for k_ in by} - set(scen))
    M = {}
    head = ["scenario", "target", "req/s", "req/s min–max", "p50 ms", "p99 ms", "CPU µs/req",
            "CPU min–max", "proxy core %", "peak RSS MiB", "err %", "runq wait %", "persistence check",
            "runs"]
    body = []
    for s in scen:
        for t in TARGETS + sorted({k_[1] for k_ in by if k_[1] not in TARGETS}):
            rs = by.get((s, t))
            attempted = [r for r in rows if r["scenario"] == s and r["target"] == t]
            if not attempted:
                continue
            rs = rs or []
            g = lambda c: [num(r.get(c)) for r in rs]
            m = {c: med(g(c)) for c in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "proxy_cpu_pct",
                                        "rss_kib", "proxy_wait_pct")}
            req = sum(num(r["requests"]) or 0 for r in rs)
            err = sum(num(r["errors"]) or 0 for r in rs)
            M[(s, t)] = m
            checks = [check_ok(r) for r in rs]
            chk = "-" if not rs else ("ok" if all(c in (True, None) for c in checks) else
                                      "FAIL (%d/%d)" % (sum(1 for c in checks if c is False), len(rs)))
            rr, cr = rng(g("rps")), rng(g("cpu_us_per_req"))
            body.append([
                HTTP_TITLE.get(s, s), t, f(m["rps"], ",.0f"),
                "%s–%s" % (k(rr[0]), k(rr[1])) if rr else "-",
                f(m["p50_ms"], ".3f"), f(m["p99_ms"], ".3f"), f(m["cpu_us_per_req"], ".2f"),
                "%.1f–%.1f" % cr if cr else "-", f(m["proxy_cpu_pct"], ".0f"),
                f(m["rss_kib"] / 1024 if m["rss_kib"] else None, ".1f"),
                f(100 * err / (req + err) if req + err else None, ".2f"),
                f(m["proxy_wait_pct"], ".1f"), chk, "%d/%d" % (len(rs), len(attempted)),
            ])
    out_md += ["### Request path: medians per scenario and proxy", ""] + table(head, body) + [""]
    out_txt += ["Request path (medians):"] + plain(head, body) + [""]

    head2 = ["scenario", "req/s t/h", "CPU/req t/h", "p99 t/h", "tandem CPU vs none",
             "HAProxy CPU vs none", "tandem Δ µs/req", "HAProxy Δ µs/req", "tandem req/s vs none",
             "HAProxy req/s vs none"]
    body2 = []
    for s in scen:
        mt, mh = M.get((s, "tandem"), {}), M.get((s, "haproxy"), {})
        nt, nh = M.get(("none", "tandem"), {}), M.get(("none", "haproxy"), {})
        d = lambda a, b: None if a is None or b is None else a - b
        body2.append([
            HTTP_TITLE.get(s, s),
            f(ratio(mt.get("rps"), mh.get("rps")), ".2f"),
            f(ratio(mt.get("cpu_us_per_req"), mh.get("cpu_us_per_req")), ".2f"),
            f(ratio(mt.get("p99_ms"), mh.get("p99_ms")), ".2f"),
            f(ratio(mt.get("cpu_us_per_req"), nt.get("cpu_us_per_req")), ".3f"),
            f(ratio(mh.get("cpu_us_per_req"), nh.get("cpu_us_per_req")), ".3f"),
            f(d(mt.get("cpu_us_per_req"), nt.get("cpu_us_per_req")), "+.2f"),
            f(d(mh.get("cpu_us_per_req"), nh.get("cpu_us_per_req")), "+.2f"),
            f(ratio(mt.get("rps"), nt.get("rps")), ".3f"),
            f(ratio(mh.get("rps"), nh.get("rps")), ".3f"),
        ])
    out_md += ["### Request path: ratios", ""] + table(head2, body2) + [""]
    out_txt += ["Ratios (t/h = tandem ÷ HAProxy; 'vs none' = with persistence ÷ without):"] + \
        plain(head2, body2) + [""]
    return out_md, out_txt


# ---------------------------------------------------------------------------- replication part

REPL_ORDER = ["rate", "rate-ckpt", "snapshot", "resume"]


def repl_key(r):
    kind = r["scenario"]
    size = r["rate"] if kind.startswith("rate") else r["n"]
    return (kind, int(num(size) or 0))


def repl_title(kind, size):
    if kind == "rate":
        return "rate %s/s" % format(size, ",")
    if kind == "rate-ckpt":
        return "rate %s/s, state_dir" % format(size, ",")
    return "%s of %s" % (kind, format(size, ","))


def repl_report(rows):
    out_md, out_txt = [], []
    by = {}
    for r in rows:
        by.setdefault((repl_key(r), r["target"]), []).append(r)
    keys = sorted({k_[0] for k_ in by}, key=lambda x: (REPL_ORDER.index(x[0]) if x[0] in REPL_ORDER else 9, x[1]))
    M = {}

    def agg(rs, c, fn=med):
        return fn([num(r.get(c)) for r in rs])

    rate_head = ["scenario", "target", "inserted/s", "applied/s on B", "lag p50 ms", "lag p90 ms",
                 "lag p99 ms", "lag p99 min–max", "lag max ms", "drain ms", "lib lag_ms p50/max",
                 "max lag_entries", "CPU A µs/rec", "CPU B µs/rec", "B core %", "peak RSS MiB",
                 "HAProxy lag from CLI send p50/p99", "runs ok"]
    cu_head = ["scenario", "target", "fill/s on A", "catch-up ms", "catch-up min–max", "records/s",
               "CPU A ms", "CPU B ms", "CPU B µs/rec", "B snapshots/resumes", "echoed to A",
               "final checkpoint ms / MiB", "peak RSS MiB", "runs ok"]
    rate_body, cu_body = [], []
    for key in keys:
        kind, size = key
        for t in TARGETS:
            rs_all = by.get((key, t))
            if not rs_all:
                continue
            rs = [r for r in rs_all if r["status"] == "ok"]
            runs = "%d/%d" % (len(rs), len(rs_all))
            bad = sorted({r["status"] for r in rs_all if r["status"] != "ok"})
            if bad:
                runs += " (" + ", ".join(bad) + ")"
            m = {c: agg(rs, c) for c in ("inserted_rps", "applied_rps", "lag_p50_ms", "lag_p90_ms",
                                         "lag_p99_ms", "drain_ms", "hb_lag_p50_ms", "a_us_per_rec",
                                         "b_us_per_rec", "catchup_ms", "catchup_rps", "cpu_a_ms",
                                         "cpu_b_ms", "rss_mib", "ckpt_ms", "ckpt_mib", "insert_s",
                                         "echo_records", "lag_send_p50_ms", "lag_send_p99_ms")}
            m["lag_max_ms"] = agg(rs, "lag_max_ms", lambda v: max([x for x in v if x is not None], default=None))
            m["hb_lag_max_ms"] = agg(rs, "hb_lag_max_ms", lambda v: max([x for x in v if x is not None], default=None))
            m["max_lag_entries"] = agg(rs, "max_lag_entries", lambda v: max([x for x in v if x is not None], default=None))
            M[(key, t)] = m
            title = repl_title(kind, size)
            if kind.startswith("rate"):
                p99r = rng([num(r.get("lag_p99_ms")) for r in rs])
                # B core % = B's CPU ÷ the run's wall time (n ÷ applied/s).
                core = [None if not num(r.get("applied_rps")) or num(r.get("cpu_b_ms")) is None else
                        100 * num(r["cpu_b_ms"]) / 1e3 / (num(r["n"]) / num(r["applied_rps"])) for r in rs]
                rate_body.append([
                    title, t, f(m["inserted_rps"], ",.0f"), f(m["applied_rps"], ",.0f"),
                    f(m["lag_p50_ms"], ".2f"), f(m["lag_p90_ms"], ".2f"), f(m["lag_p99_ms"], ".2f"),
                    "%.1f–%.1f" % p99r if p99r else "-", f(m["lag_max_ms"], ".1f"), f(m["drain_ms"], ".1f"),
                    "-" if m["hb_lag_p50_ms"] is None else "%s/%s" % (f(m["hb_lag_p50_ms"], ".0f"), f(m["hb_lag_max_ms"], ".0f")),
                    f(m["max_lag_entries"], ".0f"), f(m["a_us_per_rec"], ".2f"), f(m["b_us_per_rec"], ".2f"),
                    f(med(core), ".0f"), f(m["rss_mib"], ".0f"),
                    "-" if m["lag_send_p50_ms"] is None else "%s/%s" % (f(m["lag_send_p50_ms"], ".2f"), f(m["lag_send_p99_ms"], ".2f")),
                    runs,
                ])
            else:
                cr = rng([num(r.get("catchup_ms")) for r in rs])
                sn = "%s/%s" % (rs[0].get("b_snapshots", "-"), rs[0].get("b_resumes", "-")) if rs else "-"
                cu_body.append([
                    title, t, f(m["inserted_rps"], ",.0f"), f(m["catchup_ms"], ",.0f"),
                    "%.0f–%.0f" % cr if cr else "-", f(m["catchup_rps"], ",.0f"), f(m["cpu_a_ms"], ",.0f"),
                    f(m["cpu_b_ms"], ",.0f"), f(m["b_us_per_rec"], ".2f"), sn,
                    f(m["echo_records"], ",.0f"),
                    "-" if m["ckpt_ms"] is None else "%s / %s" % (f(m["ckpt_ms"], ".0f"), f(m["ckpt_mib"], ".1f")),
                    f(m["rss_mib"], ".0f"), runs,
                ])
    if rate_body:
        out_md += ["### Replication under load: medians over the rounds", ""] + table(rate_head, rate_body) + [""]
        out_txt += ["Replication under load (medians):"] + plain(rate_head, rate_body) + [""]
    if cu_body:
        out_md += ["### Catch-up: medians over the rounds", ""] + table(cu_head, cu_body) + [""]
        out_txt += ["Catch-up (medians):"] + plain(cu_head, cu_body) + [""]
    head3 = ["scenario", "applied/s t/h", "lag p50 t/h", "lag p99 t/h", "CPU B/rec t/h", "catch-up time t/h"]
    body3 = []
    for key in keys:
        mt, mh = M.get((key, "tandem")), M.get((key, "haproxy"))
        if not mt or not mh:
            continue
        body3.append([repl_title(*key), f(ratio(mt["applied_rps"], mh["applied_rps"]), ".2f"),
                      f(ratio(mt["lag_p50_ms"], mh["lag_p50_ms"]), ".1f"),
                      f(ratio(mt["lag_p99_ms"], mh["lag_p99_ms"]), ".1f"),
                      f(ratio(mt["b_us_per_rec"], mh["b_us_per_rec"]), ".2f"),
                      f(ratio(mt["catchup_ms"], mh["catchup_ms"]), ".2f")])
    if body3:
        out_md += ["### Replication: ratios tandem ÷ HAProxy (lower is better except applied/s)", ""] + \
            table(head3, body3) + [""]
        out_txt += ["Replication ratios (tandem ÷ HAProxy):"] + plain(head3, body3) + [""]
    return out_md, out_txt


def report(http_tsv, repl_tsv, out_md, meta):
    md, txt = [], []
    if meta:
        try:
            with open(meta) as fh:
                md += [fh.read().rstrip(), ""]
        except OSError:
            pass
    h = read_tsv(http_tsv)
    if h:
        a, b = http_report(h)
        md += a
        txt += b
    r = read_tsv(repl_tsv)
    if r:
        a, b = repl_report(r)
        md += a
        txt += b
    print("\n".join(txt))
    with open(out_md, "w") as fh:
        fh.write("\n".join(md) + "\n")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "counters" and len(argv) == 4:
        try:
            print(tandem_counters(argv[3]) if argv[2] == "tandem" else haproxy_counters(argv[3]))
        except (OSError, ValueError, IndexError):
            print("- -")
    elif cmd == "report" and len(argv) >= 5:
        report(argv[2], argv[3], argv[4], argv[5] if len(argv) > 5 else None)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
