"""Webhooks: CloudEvents 1.0 (structured JSON) bodies, signed per Standard Webhooks 1.0."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from uuid import UUID

import urllib3

from consent.sinks.base import APPLIED, UNSENT, Change, Entry, Outcome, Result

EVENT_TYPE = "consent.training.changed.v1"
DELETED_TYPE = "consent.training.deleted.v1"
RETRIED_STATUSES = {408, 429}


def cloudevent(change: Change, *, source: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": change.message_id,
        "source": source,
        "type": DELETED_TYPE if change.deleted else EVENT_TYPE,
        "subject": str(change.subject_id),
        "time": change.changed_at.isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "allowed": change.allowed,
            "version": change.version,
            "policy_version": change.policy_version,
            "retention_days": change.retention_days,
            "plan": change.plan,
            "deleted": change.deleted,
        },
    }


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Return a Standard Webhooks v1 signature: base64 HMAC-SHA256 of "id.timestamp.body"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


class WebhookSink:
    readable = False
    keeps_newest = False
    keeps_history = False

    def __init__(
        self,
        *,
        name: str,
        url: str,
        secrets: list[str],
        source: str = "/consent/training",
        timeout: float = 5.0,
        concurrency: int = 8,
        batch_seconds: float = 5.0,
    ) -> None:
        if not secrets or not all(s.startswith("whsec_") for s in secrets):
            raise ValueError("Webhook secrets must be given, each starting with whsec_.")
        self.name, self.url, self.secrets, self.source = name, url, secrets, source
        self.concurrency, self.batch_seconds = concurrency, batch_seconds
        self.http = urllib3.PoolManager(
            num_pools=2,
            maxsize=concurrency,
            timeout=urllib3.Timeout(total=timeout),
            retries=False,
        )

    def headers(self, change: Change, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        signatures = " ".join(
            sign(secret=s, message_id=change.message_id, timestamp=timestamp, body=body)
            for s in self.secrets
        )
        return {
            "content-type": "application/cloudevents+json",
            "webhook-id": change.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }

    def send(self, change: Change) -> Result:
        body = json.dumps(cloudevent(change, source=self.source)).encode()
        try:
            response = self.http.request(
                "POST", self.url, body=body, headers=self.headers(change, body)
            )
        except urllib3.exceptions.HTTPError as error:
            return Result(Outcome.RETRY, f"{type(error).__name__}: {error}")
        status = response.status
        if 200 <= status < 300:
            return APPLIED
        detail = f"HTTP {status}: {response.data[:200].decode(errors='replace')}"
        if status in RETRIED_STATUSES or status >= 500:
            return Result(Outcome.RETRY, detail, _retry_after(response))
        return Result(Outcome.PERMANENT, detail)

    def apply(self, changes: list[Change]) -> dict[int, Result]:
        # A slow receiver must not hold a batch past the task's time limit, which would lose
        # what was sent: no send starts after batch_seconds, and those not sent wait their turn.
        deadline = time.monotonic() + self.batch_seconds
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = pool.map(partial(self._send_by, deadline=deadline), changes)
            return {c.delivery_id: r for c, r in zip(changes, results, strict=True)}

    def _send_by(self, change: Change, *, deadline: float) -> Result:
        return self.send(change) if time.monotonic() < deadline else UNSENT

    def subjects(self) -> Iterator[list[UUID]]:
        raise NotImplementedError("A webhook receiver cannot be read back.")

    def entries(self, subjects: Sequence[UUID]) -> dict[UUID, Entry]:
        raise NotImplementedError("A webhook receiver cannot be read back.")

    def repair(self, changes: list[Change], *, ceiling: dict[UUID, int], drop: list[UUID]) -> None:
        raise NotImplementedError("A webhook receiver is repaired by delivering again.")
