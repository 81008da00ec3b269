"""A webhook receiver for benchmarks: accepts every POST, keeps the newest version per subject.

GET /stats?version=V answers {"received": n, "subjects": how many hold version V or newer}.
Run: python receiver.py PORT
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

latest: dict[str, int] = {}
received = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_POST(self) -> None:
        global received
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            received += 1
            subject, version = event["subject"], event["data"]["version"]
            latest[subject] = max(latest.get(subject, 0), version)
        self._answer(b"{}")

    def do_GET(self) -> None:
        version = int(parse_qs(urlsplit(self.path).query).get("version", ["1"])[0])
        with lock:
            at_least = sum(1 for held in latest.values() if held >= version)
            body = json.dumps({"received": received, "subjects": at_least}).encode()
        self._answer(body)

    def do_DELETE(self) -> None:
        global received
        with lock:
            latest.clear()
            received = 0
        self._answer(b"{}")

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
