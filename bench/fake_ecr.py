"""A counting stand-in for ECR's GetAuthorizationToken, for bench/run.

moto answers every GetAuthorizationToken with an expiry in 2015, so its tokens are
never cacheable; this fake answers like ECR (a token valid for 12 hours) after
--delay seconds, and reports how many calls it got at GET /calls.
"""

import argparse
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

calls = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each answer in one write, sent at once: a head and a body in two small writes, with
    # Nagle's algorithm on, wait for the client's delayed ACK (40 ms) on a kept-alive
    # connection, which no real metadata server or ECR endpoint does.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, content_type, body):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply("text/plain", str(calls).encode())

    def do_POST(self):
        global calls
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            calls += 1
            n = calls
        time.sleep(DELAY)
        token = base64.b64encode(f"AWS:bench-token-{n}".encode()).decode()
        body = json.dumps({"authorizationData": [{
            "authorizationToken": token,
            "expiresAt": time.time() + 12 * 3600,
            "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        }]}).encode()
        self.reply("application/x-amz-json-1.1", body)


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--delay", type=float, default=0.2)
args = parser.parse_args()
DELAY = args.delay
ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
