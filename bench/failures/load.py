#!/usr/bin/env python3
"""Steady-rate HTTP/1.1 load for bench/failures.sh that records every request.

    load.py --url http://127.0.0.1:PORT/ --rate 200 --duration 12 --timeout 15 \
            --event-at 3 --event-cmd "kill -KILL 1234" --out reqs.tsv

Open loop: request k is sent at start + k/rate whatever happened to the earlier ones (a client
that waits for answers would send fewer requests exactly while the proxy struggles, and hide
the failures). Each request takes an idle keep-alive connection or opens a new one. At
--event-at seconds the client itself runs --event-cmd (the fault: SIGKILL a backend, blackhole a
host), so the event time is on the same clock as the requests.

Every request is one line of --out: start_s (from the load's start), latency_s, status (0 if
no response), error ("" or what went wrong), body. A request fails when its status is not 2xx,
when the connection is refused/reset/closed before a whole response, or when no whole response
came within --timeout (the client gives up and closes the connection). The first line of --out
is "# event_s=... event_rc=..." (event_s relative to the same start).
Bounded: sends for --duration seconds, then waits at most --timeout for the last answers.
"""
import argparse
import asyncio
import shlex
import subprocess
import sys
import time
from urllib.parse import urlsplit


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=12.0)
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--event-at", type=float, default=None)
    p.add_argument("--event-cmd", default="")
    p.add_argument("--max-inflight", type=int, default=5000)
    p.add_argument("--out", required=True)
    return p.parse_args()


class Client:
    def __init__(self, host, port, path, timeout):
        self.host, self.port, self.path, self.timeout = host, port, path, timeout
        self.idle = []  # (reader, writer) keep-alive connections ready for a request
        self.req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode()

    async def _exchange(self, conn):
        reader, writer = conn
        writer.write(self.req)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError("bad status line %r" % lines[0])
        status = int(parts[1])
        length, close = None, False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v.strip())
            elif k == "connection" and "close" in v.lower():
                close = True
            elif k == "transfer-encoding":
                raise ValueError("chunked responses are not expected here")
        if length is None:
            raise ValueError("no content-length")
        body = await reader.readexactly(length)
        return status, body, close

    async def one(self):
        """One request; returns (status, error, body)."""
        conn = self.idle.pop() if self.idle else None
        try:
            if conn is None:
                conn = await asyncio.open_connection(self.host, self.port)
            status, body, close = await self._exchange(conn)
        except asyncio.CancelledError:
            self._close(conn)
            raise
        except asyncio.IncompleteReadError:
            self._close(conn)
            return 0, "closed before a whole response", ""
        except (OSError, ValueError, asyncio.LimitOverrunError) as e:
            self._close(conn)
            return 0, "%s: %s" % (type(e).__name__, e), ""
        if close:
            self._close(conn)
        else:
            self.idle.append(conn)
        return status, "" if 200 <= status < 300 else "status %d" % status, body.decode(
            "utf-8", "replace").strip()

    @staticmethod
    def _close(conn):
        if conn is not None:
            try:
                conn[1].close()
            except Exception:
                pass


async def main():
    a = parse_args()
    u = urlsplit(a.url)
    client = Client(u.hostname, u.port or 80, u.path or "/", a.timeout)
    loop = asyncio.get_running_loop()
    rows = []
    event = {"t": None, "rc": None}
    start = loop.time()

    async def timed():
        t0 = loop.time()
        try:
            status, err, body = await asyncio.wait_for(client.one(), a.timeout)
        except asyncio.TimeoutError:
            status, err, body = 0, "timeout after %gs" % a.timeout, ""
        rows.append((t0 - start, loop.time() - t0, status, err, body))

    async def fault():
        await asyncio.sleep(max(0.0, start + a.event_at - loop.time()))
        event["t"] = loop.time() - start
        # run the command off the event loop so that requests keep going out on time
        r = await loop.run_in_executor(
            None, lambda: subprocess.run(shlex.split(a.event_cmd), capture_output=True, text=True))
        event["rc"] = r.returncode
        if r.returncode != 0:
            print("event command failed (%d): %s" % (r.returncode, r.stderr.strip()), file=sys.stderr)

    tasks = set()
    ev_task = asyncio.ensure_future(fault()) if a.event_at is not None and a.event_cmd else None
    n = 0
    skipped = 0
    while True:
        due = start + n / a.rate
        if due - start >= a.duration:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        n += 1
        if len(tasks) >= a.max_inflight:
            # never more than --max-inflight open requests: count the rest as failures
            rows.append((loop.time() - start, 0.0, 0, "client: too many requests in flight", ""))
            skipped += 1
            continue
        t = asyncio.ensure_future(timed())
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        # each request is bounded by --timeout already; this bound is a second safety net
        await asyncio.wait(set(tasks), timeout=a.timeout + 5)
    if ev_task is not None:
        await asyncio.wait_for(ev_task, timeout=30)
    for conn in client.idle:
        Client._close(conn)
    rows.sort()
    with open(a.out, "w") as f:
        f.write("# event_s=%s event_rc=%s sent=%d\n" % (
            "%.6f" % event["t"] if event["t"] is not None else "none", event["rc"], n))
        for r in rows:
            f.write("%.6f\t%.6f\t%d\t%s\t%s\n" % (r[0], r[1], r[2], r[3].replace("\t", " "), r[4]))
    failed = sum(1 for r in rows if r[3])
    print("%d requests, %d failed" % (len(rows), failed), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
