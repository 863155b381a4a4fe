"""A small real HTTP/1.1 backend process for tandem's failure tests.

Usage: http_backend.py HOST PORT NAME

GET/HEAD/OPTIONS/DELETE/PUT/POST answer 200 with body "NAME\n" (keep-alive, Content-Length),
after reading any request body. A separate process so tests can SIGKILL it like a crashed
server. Prints "ready" on stdout once listening.
"""
import http.server
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = (self.server.name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = _answer

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = Server((host, port), Handler)
    server.name = name
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
