"""What the benchmark reports share: numbers from TSV fields, medians and ranges that skip
missing values, formatting, ratios, nearest-rank percentiles, and a free documentation /27
for the network-namespace labs.

Imported by bench/report.py (same folder) and the reports in bench/*/ (which put bench/ on
sys.path first).
"""
import ipaddress
import math
import re
import statistics
import subprocess
import sys

# Documentation ranges only. 192.0.2.0/24 is never used: on some machines it is the real LAN.
LAB_RANGES = ["198.51.100.0/24", "203.0.113.0/24"]


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def rng(vals):
    vals = [v for v in vals if v is not None]
    return (min(vals), max(vals)) if len(vals) > 1 else None


def f(v, fmt):
    return "-" if v is None else format(v, fmt)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def pct(sorted_vals, q):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(q / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def free_subnet():
    """Print the base of the first /27 of LAB_RANGES that overlaps no address and no route of
    this network namespace."""
    used = []
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    used += [ipaddress.ip_network(m, strict=False) for m in re.findall(r"inet (\S+)", out)]
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True).stdout
    types = {"local", "broadcast", "unicast", "blackhole", "unreachable", "prohibit", "throw",
             "multicast", "anycast", "nat"}
    for line in out.splitlines():
        t = line.split()
        if not t:
            continue
        first = t[1] if t[0] in types and len(t) > 1 else t[0]
        try:
            used.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            pass  # "default"
    for r in LAB_RANGES:
        for net in ipaddress.ip_network(r).subnets(new_prefix=27):
            if not any(net.overlaps(u) for u in used):
                print(net.network_address)
                return
    sys.exit("no free /27 in %s" % ", ".join(LAB_RANGES))
