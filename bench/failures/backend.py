#!/usr/bin/env python3
"""A backend for bench/failures.sh, run inside a lab host (network namespace).

    backend.py IP PORT NAME [DELAY_MS]

Multithreaded HTTP/1.1 keep-alive server (standard library only). Every GET is answered 200
with the body "NAME\\n" after DELAY_MS milliseconds (default 20), so that at any moment some
requests are really in flight on each backend: a backend that dies mid-request is the case a
proxy has to retry, not just a refused connect. The same server as PY_BACKEND in
crates/tandem/tests/common/netns.rs.
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
delay = float(sys.argv[4]) / 1000.0 if len(sys.argv) > 4 else 0.02
body = (name + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are two writes: without TCP_NODELAY a keep-alive client can wait 40 ms
    # for a delayed ACK
    disable_nagle_algorithm = True

    def do_GET(self):
        if delay:
            time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


print("serving", name, "on", host, port, flush=True)
Server((host, port), Handler).serve_forever()
