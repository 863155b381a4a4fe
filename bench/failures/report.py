#!/usr/bin/env python3
"""Helpers for bench/failures.sh.

Subcommands:
  free-subnet                    -> "A.B.C.D" base of the first /27 of the documentation ranges
                                    (198.51.100.0/24, 203.0.113.0/24; never 192.0.2.0/24) that overlaps
                                    no address and no route of this network namespace
  analyze REQS.tsv WINDOW_S      -> one TSV line: sent requests failed window_n p50_ms p99_ms
                                    max_ms slow_1s event_s errors, for the requests of load.py's
                                    output file; "window" = the requests in flight at the event
                                    or started within WINDOW_S seconds after it; slow_1s = those
                                    of them that took 1 s or more (failed or not)
  report RUNS.tsv OUT.md META.md -> prints the tables and writes them (with META) as markdown
"""
import math
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import free_subnet, pct  # noqa: E402  (bench/common.py)

SCENARIOS = {
    "kill": "a) one backend process SIGKILLed",
    "blackhole": "b) one backend host blackholed (no RST, connects hang)",
}


def error_kind(err):
    if err.startswith("timeout"):
        return "client timeout"
    if err.startswith("status "):
        return err
    return err.split(":")[0]


def analyze(path, window):
    event = None
    sent = None
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                m = re.search(r"event_s=(\S+)", line)
                if m and m.group(1) != "none":
                    event = float(m.group(1))
                m = re.search(r"sent=(\d+)", line)
                if m:
                    sent = int(m.group(1))
                continue
            p = line.rstrip("\n").split("\t")
            rows.append((float(p[0]), float(p[1]), int(p[2]), p[3]))
    failed = [r for r in rows if r[3]]
    kinds = {}
    for r in failed:
        k = error_kind(r[3])
        kinds[k] = kinds.get(k, 0) + 1
    if event is None:
        win = rows
    else:
        win = [r for r in rows if r[0] + r[1] >= event and r[0] <= event + window]
    lat = sorted(r[1] * 1000.0 for r in win)
    print("\t".join([
        str(sent if sent is not None else len(rows)), str(len(rows)), str(len(failed)),
        str(len(win)), "%.1f" % pct(lat, 50), "%.1f" % pct(lat, 99),
        "%.1f" % (lat[-1] if lat else float("nan")),
        str(sum(1 for x in lat if x >= 1000.0)),
        "%.3f" % event if event is not None else "-",
        ";".join("%s:%d" % kv for kv in sorted(kinds.items())) or "-",
    ]))


def fmt_ratio(a, b):
    """a / b for the ratio columns (tandem ÷ other)."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return "-"
    if b == 0:
        return "=" if a == 0 else "∞"
    return "%.2f" % (a / b)


def report(runs_path, out_md, meta_path):
    runs = []
    with open(runs_path) as f:
        cols = f.readline().rstrip("\n").split("\t")
        for line in f:
            runs.append(dict(zip(cols, line.rstrip("\n").split("\t"))))
    targets = []
    for r in runs:
        if r["target"] not in targets:
            targets.append(r["target"])
    md = []
    text = []
    for s in [s for s in SCENARIOS if any(r["scenario"] == s for r in runs)]:
        agg = {}
        for t in targets:
            rs = [r for r in runs if r["scenario"] == s and r["target"] == t and r["status"] == "ok"]
            if not rs:
                continue
            kinds = {}
            for r in rs:
                if r["errors"] != "-":
                    for kv in r["errors"].split(";"):
                        k, _, n = kv.rpartition(":")
                        kinds[k] = kinds.get(k, 0) + int(n)
            agg[t] = {
                "rounds": len(rs),
                "failed_each": [int(r["failed"]) for r in rs],
                "failed": sum(int(r["failed"]) for r in rs),
                "requests": sum(int(r["requests"]) for r in rs),
                "p50": statistics.median(float(r["p50_ms"]) for r in rs),
                "p99": statistics.median(float(r["p99_ms"]) for r in rs),
                "max": max(float(r["max_ms"]) for r in rs),
                "slow": sum(int(r["slow_1s"]) for r in rs),
                "errors": ", ".join("%s %d" % kv for kv in sorted(kinds.items())) or "-",
            }
        head = ["target", "failed per round", "failed / requests", "p50 ms", "p99 ms", "max ms",
                ">= 1 s", "failures"]
        rows = []
        for t, a in agg.items():
            rows.append([t, " ".join(str(x) for x in a["failed_each"]),
                         "%d / %d" % (a["failed"], a["requests"]), "%.1f" % a["p50"],
                         "%.1f" % a["p99"], "%.1f" % a["max"], str(a["slow"]), a["errors"]])
        title = SCENARIOS[s]
        md.append("### %s\n" % title)
        md.append("| " + " | ".join(head) + " |")
        md.append("|" + "---|" * len(head))
        md.extend("| " + " | ".join(r) + " |" for r in rows)
        text.append("== %s" % title)
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        for r in [head] + rows:
            text.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
        if "tandem" in agg:
            tn = agg["tandem"]
            rhead = ["vs", "failed t/x", "p50 t/x", "p99 t/x", "max t/x", ">= 1 s t/x"]
            rrows = []
            for t, a in agg.items():
                if t == "tandem":
                    continue
                rrows.append([t, fmt_ratio(tn["failed"], a["failed"]),
                              fmt_ratio(tn["p50"], a["p50"]), fmt_ratio(tn["p99"], a["p99"]),
                              fmt_ratio(tn["max"], a["max"]), fmt_ratio(tn["slow"], a["slow"])])
            if rrows:
                md.append("")
                md.append("| " + " | ".join(rhead) + " |")
                md.append("|" + "---|" * len(rhead))
                md.extend("| " + " | ".join(r) + " |" for r in rrows)
                text.append("  ratios tandem ÷ x (lower is better; '=' both 0, '∞' only tandem nonzero):")
                widths = [max(len(str(x)) for x in col) for col in zip(rhead, *rrows)]
                for r in [rhead] + rrows:
                    text.append("  " + "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
        md.append("")
        text.append("")
    notes = (
        "failed: requests with a non-2xx status, a refused/reset/closed connection, or no whole "
        "response within the client timeout (all rounds). p50/p99: over the requests in flight at "
        "the event or started in the window after it, median over rounds; max: the slowest of them "
        "in any round; >= 1 s: how many of them took a second or more, all rounds. Ratios: tandem ÷ the "
        "other proxy.")
    md.append(notes)
    meta = open(meta_path).read() if meta_path else ""
    with open(out_md, "w") as f:
        f.write(meta + "\n" + "\n".join(md) + "\n")
    print("\n".join(text))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "free-subnet":
        free_subnet()
    elif cmd == "analyze" and len(sys.argv) == 4:
        analyze(sys.argv[2], float(sys.argv[3]))
    elif cmd == "report" and len(sys.argv) == 5:
        report(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
