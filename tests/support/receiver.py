"""A real webhook receiver on a local port, as a third party would write it."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEXT_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@dataclass
class Received:
    message_id: str
    subject: str
    version: int
    allowed: bool
    deleted: bool
    type: str


@dataclass
class WebhookReceiver:
    """Verify every delivery (Standard Webhooks), parse it (CloudEvents), keep the newest."""

    secret: str = SECRET
    status: int = 200
    delay: float = 0.0
    retry_after: str | None = None
    arrived: int = 0  # requests begun, answered or not
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    latest: dict[str, Received] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.arrived += 1
        time.sleep(self.delay)
        try:
            Webhook(self.secret).verify(body, headers)
            event = from_http_event(HTTPMessage(headers=headers, body=body))
        except Exception as error:
            with self.lock:
                self.rejected.append(repr(error))
            return 401
        status = self.status
        if status != 200:
            return status
        data = event.get_data()
        assert isinstance(data, dict)
        got = Received(
            message_id=headers["webhook-id"],
            subject=str(event.get_subject()),
            version=data["version"],
            allowed=data["allowed"],
            deleted=data["deleted"],
            type=event.get_type(),
        )
        with self.lock:
            self.received.append(got)
            held = self.latest.get(got.subject)
            if held is None or got.version > held.version:  # a receiver keeps the newest only
                self.latest[got.subject] = got
        return 200

    def start(self, port: int) -> "WebhookReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.handle(headers, body)
                self.send_response(status)
                if status == 429 and receiver.retry_after:
                    self.send_header("Retry-After", receiver.retry_after)
                payload = json.dumps({"status": status}).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}/hooks/consent"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
