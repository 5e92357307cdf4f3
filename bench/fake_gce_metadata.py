"""A stand-in for the GCE metadata server, for bench/run.

Answers the two requests of the gcp backend with the node's identity (the default service
account's scopes, then its access token) as the metadata server does, with
`Metadata-Flavor: Google`, over HTTP/1.1 with keep-alive.
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/computeMetadata/v1/instance/service-accounts/default/"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each answer in one write, sent at once: a head and a body in two small writes, with
    # Nagle's algorithm on, wait for the client's delayed ACK (40 ms) on a kept-alive
    # connection, which no real metadata server or ECR endpoint does.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.headers.get("Metadata-Flavor") != "Google":
            self.reply(403, "text/plain", b"missing Metadata-Flavor")
        elif self.path == PREFIX + "scopes":
            self.reply(200, "text/plain", b"https://www.googleapis.com/auth/cloud-platform\n")
        elif self.path == PREFIX + "token":
            body = json.dumps({"access_token": "ya29.bench-token", "expires_in": 3599,
                               "token_type": "Bearer"}).encode()
            self.reply(200, "application/json", body)
        else:
            self.reply(404, "text/plain", b"not found")


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
