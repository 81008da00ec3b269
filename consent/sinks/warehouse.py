"""The warehouse's eligibility tables: each subject's state, and the intervals pipelines read."""

import dataclasses
import heapq
from collections import defaultdict
from collections.abc import Iterator, Sequence
from itertools import batched, chain, groupby
from typing import Any
from uuid import UUID

from django.db import connections, transaction
from django.utils import timezone

from consent.models import EligibilityInterval, EligibilityRecord
from consent.sinks.base import (
    APPLIED,
    SUBJECTS_A_BATCH,
    Change,
    Entry,
    Interval,
    Result,
    subject_batches,
)

_COLUMNS = (
    "subject_id",
    "allowed",
    "deleted",
    "version",
    "plan",
    "policy_version",
    "retention_days",
    "changed_at",
    "applied_at",
)
# A version-guarded upsert, which the ORM cannot say: only a newer version replaces a row, so a
# replayed or late change is a harmless no-op. It returns the subjects it wrote.
_UPSERT = """
    INSERT INTO {table} ({columns}) VALUES {rows}
    ON CONFLICT (subject_id) DO UPDATE SET {updates}
    WHERE {table}.version {guard}
    RETURNING subject_id
"""


def _upsert_sql(rows: int, guard: str) -> str:
    placeholders = f"({', '.join(['%s'] * len(_COLUMNS))})"
    return _UPSERT.format(
        table=EligibilityRecord._meta.db_table,
        columns=", ".join(_COLUMNS),
        rows=", ".join([placeholders] * rows),
        updates=", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:]),
        guard=guard,
    )


class WarehouseSink:
    readable = True
    keeps_newest = True
    keeps_history = True

    def __init__(self, *, name: str, database: str = "warehouse") -> None:
        self.name = name
        self.database = database

    def _row(self, change: Change) -> list[Any]:
        connection = connections[self.database]
        values = [getattr(change, column, None) for column in _COLUMNS[:-1]] + [timezone.now()]
        return [
            EligibilityRecord._meta.get_field(column).get_db_prep_value(value, connection)  # type: ignore[union-attr]
            for column, value in zip(_COLUMNS, values, strict=True)
        ]

    def _replace_history(self, changes: list[Change], written: set[UUID]) -> None:
        intervals = EligibilityInterval.objects.using(self.database)
        intervals.filter(subject_id__in=written).delete()
        intervals.bulk_create(
            [
                EligibilityInterval(
                    subject_id=change.subject_id,
                    allowed_from=interval.allowed_from,
                    allowed_until=interval.allowed_until,
                    policy_version=interval.policy_version,
                    retention_days=interval.retention_days,
                )
                for change in changes
                if change.subject_id in written
                for interval in change.intervals
            ],
            batch_size=5000,
        )

    def apply(self, changes: list[Change]) -> dict[int, Result]:
        newest: dict[UUID, Change] = {}
        for change in changes:  # one statement cannot write a row twice
            if change.version > getattr(newest.get(change.subject_id), "version", 0):
                newest[change.subject_id] = change
        if newest:
            rows = [value for change in newest.values() for value in self._row(change)]
            with (
                transaction.atomic(using=self.database),
                connections[self.database].cursor() as cursor,
            ):
                cursor.execute(_upsert_sql(len(newest), "< excluded.version"), rows)
                written = {UUID(str(subject_id)) for (subject_id,) in cursor.fetchall()}
                self._replace_history(list(newest.values()), written)
        return {change.delivery_id: APPLIED for change in changes}

    def subjects(self) -> Iterator[list[UUID]]:
        # Intervals held without a record are held too (entries says what they are): the two
        # tables' subjects, merged in order, each once.
        records, intervals = (
            chain.from_iterable(subject_batches(model.objects.using(self.database)))
            for model in (EligibilityRecord, EligibilityInterval)
        )
        merged = (subject for subject, _ in groupby(heapq.merge(records, intervals)))
        return (list(batch) for batch in batched(merged, SUBJECTS_A_BATCH, strict=False))

    def entries(self, subjects: Sequence[UUID]) -> dict[UUID, Entry]:
        history = (
            EligibilityInterval.objects.using(self.database)
            .filter(subject_id__in=subjects)
            .order_by("subject_id", "allowed_from")
        )
        intervals: dict[UUID, list[Interval]] = defaultdict(list)
        for subject_id, since, until, version, retention in history.values_list(
            "subject_id", "allowed_from", "allowed_until", "policy_version", "retention_days"
        ):
            intervals[subject_id].append(Interval(since, until, version, retention))
        fields = [f.name for f in dataclasses.fields(Entry) if f.name != "intervals"]
        rows = (
            EligibilityRecord.objects.using(self.database)
            .filter(subject_id__in=subjects)
            .values("subject_id", *fields)
        )
        held = {}
        for row in rows:
            subject_id = row.pop("subject_id")
            held[subject_id] = Entry(**row, intervals=tuple(intervals.pop(subject_id, ())))
        # Intervals with no record are held too, as what they are: nothing anyone decided.
        orphans = {
            s: Entry(version=0, allowed=False, deleted=False, intervals=tuple(i))
            for s, i in intervals.items()
        }
        return held | orphans

    def repair(self, changes: list[Change], *, ceiling: dict[UUID, int], drop: list[UUID]) -> None:
        with (
            transaction.atomic(using=self.database),
            connections[self.database].cursor() as cursor,
        ):
            written = set()
            for change in changes:
                # A repair overwrites drift, unless a newer change landed since the row was read.
                cursor.execute(
                    _upsert_sql(1, "<= %s"), [*self._row(change), ceiling[change.subject_id]]
                )
                written |= {UUID(str(subject_id)) for (subject_id,) in cursor.fetchall()}
            self._replace_history(changes, written)
            if drop:
                EligibilityRecord.objects.using(self.database).filter(subject_id__in=drop).delete()
                EligibilityInterval.objects.using(self.database).filter(
                    subject_id__in=drop
                ).delete()
