from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from django.db.models import QuerySet

# Subjects read a query, or checked a batch: within SQLite's limit of parameters a statement
# (32,766 by default), and a bounded memory however many subjects there are.
SUBJECTS_A_BATCH = 5000


@dataclass(frozen=True)
class Interval:
    """A stretch of time during which a subject allowed training, as their events say it."""

    # The terms in force clip it further (consent.eligibility): an interval says what the
    # subject did, not what new terms undid.
    allowed_from: datetime
    allowed_until: datetime | None  # empty while it lasts
    policy_version: int
    retention_days: int


@dataclass(frozen=True)
class Change:
    """What every sink learns of one consent event: never an email or a name."""

    delivery_id: int
    message_id: str
    subject_id: UUID
    # The number of the subject's event, which sinks call its version: each keeps the highest.
    version: int
    allowed: bool
    deleted: bool
    plan: str
    policy_version: int | None
    retention_days: int | None
    changed_at: datetime
    # The subject's whole history of allowing, up to this event, for a sink that keeps it.
    intervals: tuple[Interval, ...] = ()


class Outcome(StrEnum):
    APPLIED = "applied"
    RETRY = "retry"
    PERMANENT = "permanent"
    UNSENT = "unsent"  # not tried, the batch's time being up: due again at once, not a failure


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    error: str = ""
    retry_after: float | None = None


APPLIED = Result(Outcome.APPLIED)
UNSENT = Result(Outcome.UNSENT)


@dataclass(frozen=True)
class Entry:
    """One subject as a sink holds it, for reconciliation and for recovery after a restore."""

    version: int
    allowed: bool
    deleted: bool
    plan: str = ""
    policy_version: int | None = None
    changed_at: datetime | None = None
    retention_days: int | None = None
    intervals: tuple[Interval, ...] = ()  # for a sink that keeps them

    @classmethod
    def of(cls, change: Change) -> "Entry":
        """Return what a sink holds of the subject once it applied the change."""
        return cls(
            version=change.version,
            allowed=change.allowed,
            deleted=change.deleted,
            plan=change.plan,
            policy_version=change.policy_version,
            changed_at=change.changed_at,
            retention_days=change.retention_days,
            intervals=change.intervals,
        )


class Sink(Protocol):
    name: str
    readable: bool
    keeps_newest: bool  # applies a change only over an older version (a receiver may not)
    keeps_history: bool  # the changes it applies carry the subject's intervals

    def apply(self, changes: list[Change]) -> dict[int, Result]:
        """Apply each change that is newer than what the sink holds; key results by delivery id."""
        ...

    def subjects(self) -> Iterator[list[UUID]]:
        """Yield every subject a readable sink holds, in batches; one may come twice."""
        ...

    def entries(self, subjects: Sequence[UUID]) -> dict[UUID, Entry]:
        """Return what the sink holds of these subjects (readable sinks only)."""
        ...

    def repair(self, changes: list[Change], *, ceiling: dict[UUID, int], drop: list[UUID]) -> None:
        """Overwrite each subject unless it moved past its ceiling since it was read; drop some."""
        ...


def all_entries(sink: Sink) -> dict[UUID, Entry]:
    """Return everything the sink holds at once, for a one-off read (recovery, tests)."""
    return {s: entry for batch in sink.subjects() for s, entry in sink.entries(batch).items()}


def subject_batches(rows: QuerySet, *, after: UUID | None = None) -> Iterator[list[UUID]]:
    """Yield the distinct subject ids of rows (those after one, if given), in order, in batches."""
    # Each batch is one short read along an index that starts with subject_id.
    ids = rows.order_by("subject_id").values_list("subject_id", flat=True).distinct()
    batch = list((ids if after is None else ids.filter(subject_id__gt=after))[:SUBJECTS_A_BATCH])
    while batch:
        yield batch
        batch = list(ids.filter(subject_id__gt=batch[-1])[:SUBJECTS_A_BATCH])
