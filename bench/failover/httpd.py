#!/usr/bin/env python3
"""A tiny HTTP server for the failover benchmark: answers every GET with its node name.

    httpd.py NAME [ADDRESS [PORT]]      (defaults 0.0.0.0 80)

Bound to 0.0.0.0, so it answers on the VIP whenever its namespace holds it; HTTP/1.0 (one
request per connection), so every client request opens a new connection and follows the VIP.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name = sys.argv[1]
addr = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
port = int(sys.argv[3]) if len(sys.argv) > 3 else 80
body = (name + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


print("serving", name, "on", addr, port, flush=True)
Server((addr, port), Handler).serve_forever()
