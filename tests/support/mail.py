"""Mail as production sends it: queued by the web process, sent by a real worker, which writes
each mail to a file here (EMAIL_FILE_PATH) instead of an SMTP server."""

import email
import email.policy
import socketserver
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest

from tests.support.stack import Stack

QUEUED = {"BACKEND": "accounts.mail.QueuedEmailBackend", "OPTIONS": {"deliver_with": "delivery"}}
SEPARATOR = b"\n" + b"-" * 79 + b"\n"  # the file backend's, after each mail


@dataclass
class MailWorker:
    directory: Path
    stack: Stack

    def start(self, **env: str) -> None:
        """Start a worker that sends mail to the directory, or as the environment says."""
        self.stack.start_worker(queues="mail", **({"EMAIL_FILE_PATH": str(self.directory)} | env))

    def sent(self) -> list[EmailMessage]:
        if not self.directory.exists():
            return []
        mails = []
        for path in sorted(self.directory.iterdir(), key=lambda path: path.stat().st_mtime_ns):
            for raw in path.read_bytes().split(SEPARATOR):
                if raw.strip():
                    mail = email.message_from_bytes(raw, policy=email.policy.default)
                    mails.append(cast(EmailMessage, mail))  # as the default policy makes them
        return mails

    def wait_for(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        """Return the mails sent so far once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while len(sent := self.sent()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(sent)} of {count} mails:\n{self.stack.worker_logs()}")
            time.sleep(0.1)
        return sent


@pytest.fixture
def mail_worker(stack, settings, tmp_path) -> MailWorker:
    """This process queues its mail as production does, for real workers the test starts."""
    settings.MAILERS = {"default": QUEUED, "delivery": settings.MAILERS["delivery"]}
    return MailWorker(tmp_path / "mail", stack)


class RefusingSmtpServer(socketserver.ThreadingTCPServer):
    """A mail server on a local port that greets, then answers every sender with one reply:
    "451 ..." (later) or "550 ..." (never)."""

    daemon_threads = allow_reuse_address = True

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(("127.0.0.1", 0), _RefusingHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _RefusingHandler(socketserver.StreamRequestHandler):
    server: RefusingSmtpServer

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        for line in self.rfile:
            command = line.decode().split(" ", 1)[0].strip().upper()
            if command in {"EHLO", "HELO"}:
                self.wfile.write(b"250 test\r\n")
            elif command == "MAIL":
                self.wfile.write(self.server.reply.encode() + b"\r\n")
            elif command == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")
