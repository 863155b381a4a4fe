#!/usr/bin/env python3
"""Helpers of bench/failover.sh.

  free-subnet                     -> "A.B.C.D", the base of the first /27 of 198.51.100.0/24 or
                                     203.0.113.0/24 that overlaps no address and no route of this
                                     network namespace (192.0.2.0/24 is never used: on some
                                     machines it is the real LAN)
  report TRIALS.tsv OUT.md META.md -> prints the tables and writes them (after META) as markdown

TRIALS.tsv columns: pair interval_ms trial status outage_ms last_lb1_ms first_lb2_sent_ms garp_ms
last_advert_ms takeover_ms lb1_adverts_after vip_del_ms post_failed pre_failed detail
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import free_subnet, pct  # noqa: E402  (bench/common.py)

PRIORITY_BACKUP = 100
PAIRS = {"tandem": "tandem vs tandem", "keepalived": "keepalived vs keepalived"}


def median(v):
    v = sorted(v)
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def f(x, nd=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return ("%." + str(nd) + "f") % x


def ratio(a, b):
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return "%.2f" % (a / b)


def expected_ms(interval_ms):
    """Master_Down_Interval of the priority-100 backup (RFC 9568): 3 × I + (256 − 100)/256 × I."""
    return 3 * interval_ms + (256 - PRIORITY_BACKUP) / 256.0 * interval_ms


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def report(tsv, out_md, meta_md):
    rows = []
    with open(tsv) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    groups = {}
    for r in rows:
        groups.setdefault((r["pair"], int(r["interval_ms"])), []).append(r)
    intervals = sorted({k[1] for k in groups}, reverse=True)
    pairs = [p for p in PAIRS if any(k[0] == p for k in groups)]
    stats = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok" and num(r["outage_ms"]) is not None]
        out = sorted(num(r["outage_ms"]) for r in ok)
        garp = sorted(num(r["garp_ms"]) for r in ok if num(r["garp_ms"]) is not None)
        lb1 = sorted(num(r["last_lb1_ms"]) for r in ok if num(r["last_lb1_ms"]) is not None)
        after_garp = sorted(num(r["outage_ms"]) - num(r["garp_ms"]) for r in ok
                            if num(r["garp_ms"]) is not None)
        tko = sorted(num(r.get("takeover_ms", "-")) for r in ok
                     if num(r.get("takeover_ms", "-")) is not None)
        stats[key] = {
            "tko": median(tko), "tko_min": tko[0] if tko else float("nan"),
            "tko_max": tko[-1] if tko else float("nan"), "tko_n": len(tko),
            "adv_after": sum(int(r.get("lb1_adverts_after", "0")) for r in ok
                             if r.get("lb1_adverts_after", "-").isdigit()),
            "n": len(ok), "attempted": len(rs),
            "med": median(out), "p90": pct(out, 90), "max": out[-1] if out else float("nan"),
            "min": out[0] if out else float("nan"),
            "garp": median(garp), "garp_n": len(garp), "lb1": median(lb1),
            "after_garp": median(after_garp),
            "failed": sum(int(r["post_failed"]) for r in ok if r["post_failed"].isdigit()),
            "pre_failed": sum(int(r["pre_failed"]) for r in ok if r["pre_failed"].isdigit()),
            "outages": out,
        }
    lines = []
    lines.append("| pair | advert | trials | outage median | p90 | max | min | GARP after kill (median) "
                 "| first answer after GARP (median) | last lb1 answer (median) | expected: MDI; MDI − "
                 "phase × advert over the phases: range (median) | ratio t/k median | p90 | max |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for iv in intervals:
        for p in pairs:
            s = stats.get((p, iv))
            if not s:
                continue
            e = expected_ms(iv)
            t, k = stats.get(("tandem", iv)), stats.get(("keepalived", iv))
            rm = rp = rx = "-"
            if p == "tandem" and t and k:
                rm, rp, rx = ratio(t["med"], k["med"]), ratio(t["p90"], k["p90"]), ratio(t["max"], k["max"])
            lines.append("| %s | %d ms | %d/%d | %s ms | %s ms | %s ms | %s ms | %s ms (%d/%d) | %s ms | %s ms | %s ms; %s..%s (%s) ms | %s | %s | %s |" % (
                PAIRS[p], iv, s["n"], s["attempted"], f(s["med"]), f(s["p90"]), f(s["max"]),
                f(s["min"]), f(s["garp"]), s["garp_n"], s["n"], f(s["after_garp"]), f(s["lb1"]),
                f(e, 1), f(e - iv), f(e), f(e - iv / 2.0), rm, rp, rx))
    table = "\n".join(lines)
    lines = ["| pair | advert | takeover after lb1's last advert: median | min | max | MDI | median − MDI "
             "| ratio t/k median | adverts from lb1 after the kill |",
             "|---|---|---|---|---|---|---|---|---|"]
    for iv in intervals:
        for p in pairs:
            s = stats.get((p, iv))
            if not s:
                continue
            e = expected_ms(iv)
            t, k = stats.get(("tandem", iv)), stats.get(("keepalived", iv))
            r = ratio(t["tko"], k["tko"]) if p == "tandem" and t and k else "-"
            lines.append("| %s | %d ms | %s ms (%d) | %s ms | %s ms | %s ms | %+.1f ms | %s | %d |" % (
                PAIRS[p], iv, f(s["tko"], 1), s["tko_n"], f(s["tko_min"], 1), f(s["tko_max"], 1),
                f(e, 1), s["tko"] - e if s["tko_n"] else float("nan"), r, s["adv_after"]))
    table2 = "\n".join(lines)
    per_trial = []
    for key in sorted(stats, key=lambda k: (-k[1], list(PAIRS).index(k[0]))):
        s = stats[key]
        per_trial.append("- %s, %d ms: outages %s ms; requests failed after the kill (all trials): %d; "
                         "before the kill: %d" % (PAIRS[key[0]], key[1],
                                                  ", ".join(f(x) for x in s["outages"]) or "-",
                                                  s["failed"], s["pre_failed"]))
    goals = []
    for iv in intervals:
        t, k = stats.get(("tandem", iv)), stats.get(("keepalived", iv))
        if t and k and t["n"] and k["n"]:
            verdict = "met" if t["med"] <= k["med"] else "NOT met"
            if t["tko_n"] and k["tko_n"]:
                goals.append("- %d ms adverts, takeover after the last advert (no kill phase): tandem %s ms vs "
                             "keepalived %s ms (median; MDI %s ms): tandem %s" % (
                                 iv, f(t["tko"], 1), f(k["tko"], 1), f(expected_ms(iv), 1),
                                 "≤ keepalived" if t["tko"] <= k["tko"] else "> keepalived"))
            goals.append("- %d ms adverts: tandem's outage ≤ keepalived's: **%s** on the median (%s vs %s ms; "
                         "p90 %s vs %s ms, max %s vs %s ms)" % (
                             iv, verdict, f(t["med"]), f(k["med"]), f(t["p90"]), f(k["p90"]),
                             f(t["max"]), f(k["max"])))
    t = stats.get(("tandem", 100))
    if t and t["n"]:
        goals.append("- tandem ≤ 400 ms with 100 ms adverts: **%s** for every trial (max %s ms; median %s ms, "
                     "p90 %s ms)" % ("met" if t["max"] <= 400 else "NOT met", f(t["max"]), f(t["med"]),
                                     f(t["p90"])))
    notes = (
        "Outage = first HTTP answer from lb2 − SIGKILL of lb1's VRRP process (client clock; one "
        "request every 5 ms, each on a new connection with a 200 ms timeout, so the figure is late "
        "by at most ~5 ms plus one request's latency). GARP = kernel receive time, in the client "
        "namespace, of the first gratuitous ARP for the VIP from lb2. Expected: Master_Down_Interval "
        "(MDI) = 3 × advert + (256 − 100)/256 × advert counts from the last advert lb2 heard. Trial n "
        "of N kills lb1 (n − 0.5)/N of an advert interval after one of lb1's adverts (the same phases "
        "for both pairs, spread evenly over the interval, as crashes at random moments would be), so "
        "the takeover is due MDI − phase × advert after the kill: MDI − advert .. MDI, median "
        "MDI − advert/2, plus the time to add the VIP, send the GARP and answer. Ratios: tandem ÷ "
        "keepalived (lower is better)."
    )
    with open(meta_md) as fh:
        meta = fh.read().rstrip("\n")
    notes2 = (
        "Takeover after the last advert = first GARP from lb2 − the last advert from lb1 the client "
        "saw before the kill (both kernel receive times on the client's port of the bridge): the "
        "Master_Down_Interval as each daemon really runs it, plus the time to add the VIP and send "
        "the GARP. It removes the phase of the kill, which makes most of the spread of the outage "
        "(a whole advert interval), so it compares the two daemons most sharply."
    )
    md = ("%s\n\n### Outage after SIGKILL of the master\n\n%s\n\n%s\n\n%s\n\n"
          "### Takeover after the master's last advert\n\n%s\n\n%s\n\n### Goals\n\n%s\n") % (
        meta, table, notes, "\n".join(per_trial), table2, notes2,
        "\n".join(goals) or "- (need both pairs)")
    with open(out_md, "w") as fh:
        fh.write(md)
    print(md)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "free-subnet":
        free_subnet()
    elif cmd == "report" and len(sys.argv) == 5:
        report(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
