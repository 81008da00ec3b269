"""The training-data eligibility table in the warehouse database."""

from typing import Any
from uuid import UUID

from django.db import connections, transaction
from django.utils import timezone

from consent.models import EligibilityRecord
from consent.sinks.base import APPLIED, Change, Entry, Result

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
_UPSERT = """
    INSERT INTO {table} ({columns}) VALUES ({placeholders})
    ON CONFLICT (subject_id) DO UPDATE SET {updates}
    WHERE {condition}
"""


def _upsert_sql(condition: str) -> str:
    table = EligibilityRecord._meta.db_table
    return _UPSERT.format(
        table=table,
        columns=", ".join(_COLUMNS),
        placeholders=", ".join(["%s"] * len(_COLUMNS)),
        updates=", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:]),
        condition=condition.format(table=table),
    )


# Only a newer version replaces a row, so a replayed or late change is a harmless no-op.
APPLY_SQL = _upsert_sql("{table}.version < excluded.version")
# A repair overwrites drift, unless a newer change landed after the row was read.
REPAIR_SQL = _upsert_sql("{table}.version <= %s")


class WarehouseSink:
    readable = True

    def __init__(self, *, name: str, database: str = "warehouse") -> None:
        self.name = name
        self.database = database

    def _rows(self, changes: list[Change]) -> list[list[object]]:
        connection = connections[self.database]
        now = timezone.now()
        fields = [EligibilityRecord._meta.get_field(column) for column in _COLUMNS]
        rows: list[list[Any]] = []
        for change in changes:
            values = [getattr(change, column, None) for column in _COLUMNS[:-1]] + [now]
            rows.append(
                [
                    field.get_db_prep_value(value, connection)  # type: ignore[union-attr]
                    for field, value in zip(fields, values, strict=True)
                ]
            )
        return rows

    def _write(self, sql: str, rows: list[list[Any]]) -> None:
        if not rows:
            return
        with transaction.atomic(using=self.database), connections[self.database].cursor() as c:
            c.executemany(sql, rows)

    def apply(self, changes: list[Change]) -> dict[int, Result]:
        self._write(APPLY_SQL, self._rows(changes))
        return {change.delivery_id: APPLIED for change in changes}

    def entries(self) -> dict[UUID, Entry]:
        rows = EligibilityRecord.objects.using(self.database).values_list(
            "subject_id", "version", "allowed", "deleted"
        )
        return {row[0]: Entry(*row[1:]) for row in rows.iterator(chunk_size=10_000)}

    def repair(self, changes: list[Change], *, ceiling: dict[UUID, int], drop: list[UUID]) -> None:
        rows = self._rows(changes)
        for row, change in zip(rows, changes, strict=True):
            row.append(ceiling[change.subject_id])
        self._write(REPAIR_SQL, rows)
        if drop:
            EligibilityRecord.objects.using(self.database).filter(subject_id__in=drop).delete()
