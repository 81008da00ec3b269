"""Hash chaining of the consent audit log, and its verification."""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from consent.models import ConsentEvent

GENESIS_HASH = "0" * 64
_UNHASHED = {"id", "hash"}


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, UUID):
        return str(value)
    return value


def event_hash(event: ConsentEvent) -> str:
    """Return the SHA-256 over every field of the event but its own id and hash."""
    payload = {
        field.attname: _canonical(getattr(event, field.attname))
        for field in ConsentEvent._meta.concrete_fields
        if field.name not in _UNHASHED
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class AuditBreak:
    event: ConsentEvent
    problem: str

    def __str__(self) -> str:
        return (
            f"event id={self.event.pk} (subject {self.event.subject_id}, "
            f"number {self.event.number}): {self.problem}"
        )


def _chain_breaks(events: Iterator[ConsentEvent]) -> Iterator[AuditBreak]:
    subject, expected_number, expected_prev = None, 1, GENESIS_HASH
    for event in events:
        if event.subject_id != subject:
            subject, expected_number, expected_prev = event.subject_id, 1, GENESIS_HASH
        if event.number != expected_number:
            yield AuditBreak(event, f"number {event.number}, expected {expected_number}")
        elif event.prev_hash != expected_prev:
            yield AuditBreak(event, "does not chain to the previous event")
        elif event.hash != event_hash(event):
            yield AuditBreak(event, "its fields do not match its hash")
        expected_number, expected_prev = event.number + 1, event.hash


def audit_first_break(*, subject_id: UUID | None = None) -> AuditBreak | None:
    """Recompute every chain (or one subject's) and return the first break, if any."""
    events = ConsentEvent.objects.order_by("subject_id", "number")
    if subject_id is not None:
        events = events.filter(subject_id=subject_id)
    return next(_chain_breaks(events.iterator(chunk_size=2000)), None)
