"""Mail as production sends it: queued by the web process, sent by a real worker, which writes
each mail to a file here (EMAIL_FILE_PATH) instead of an SMTP server."""

import email
import email.policy
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
        self.stack.start_worker(**({"EMAIL_FILE_PATH": str(self.directory)} | env))

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
