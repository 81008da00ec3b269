"""Eligibility snapshots for pipelines that outgrow the API: Parquet files and their manifest."""

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pyarrow as pa
import pyarrow.parquet as pq
from django.utils import timezone

from consent.eligibility import Terms, intervals_stored_as_of, subjects_withheld
from consent.models import ConsentEvent
from consent.sinks.base import Interval

# One row per interval during which a subject allowed training, for every subject who still
# allowed it as of the snapshot. A pipeline's join of its data on it (consent.runs.SNAPSHOT_JOIN)
# gives the API's answers.
SCHEMA = pa.schema(
    [
        pa.field("subject_id", pa.string(), nullable=False),
        pa.field("allowed_from", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("allowed_until", pa.timestamp("us", tz="UTC")),  # empty while it lasts
        pa.field("retention_days", pa.int32(), nullable=False),
    ]
)
ROWS_PER_FILE = 1_000_000


def _subjects_as_of(
    as_of: datetime, withheld: set[UUID], still_at: datetime | None
) -> Iterator[tuple[UUID, list[Interval]]]:
    """Yield each subject who allowed training at as_of (and at still_at), with their intervals."""
    terms = Terms.published()
    rows = (
        intervals_stored_as_of(as_of, still_at)
        .order_by("subject_id", "allowed_from")
        .values_list(
            "subject_id", "allowed_from", "allowed_until", "policy_version", "retention_days"
        )
    )
    subject: UUID | None = None
    stored: list[Interval] = []
    for subject_id, since, until, version, retention in rows.iterator(chunk_size=20_000):
        if subject_id != subject:
            yield from _allowing(subject, stored, terms, as_of, withheld, still_at)
            subject, stored = subject_id, []
        stored.append(Interval(since, until, version, retention))
    yield from _allowing(subject, stored, terms, as_of, withheld, still_at)


def _allowing(
    subject: UUID | None,
    stored: list[Interval],
    terms: Terms,
    as_of: datetime,
    withheld: set[UUID],
    still_at: datetime | None,
) -> Iterator[tuple[UUID, list[Interval]]]:
    if subject is None or subject in withheld:
        return
    intervals = terms.as_of(stored, as_of)  # those begun later are left out: not as of then
    if not any(interval.allowed_until is None for interval in intervals):
        return
    if still_at is None or any(i.allowed_until is None for i in terms.as_of(stored, still_at)):
        yield subject, intervals


def _write(path: Path, columns: dict[str, list]) -> dict[str, Any]:
    pq.write_table(pa.table(columns, schema=SCHEMA), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"name": path.name, "rows": len(columns["subject_id"]), "sha256": digest}


def _empty() -> dict[str, list]:
    return {field.name: [] for field in SCHEMA}


def snapshot_write(
    *, as_of: datetime, out: Path, wait: float = 10.0, still_allowing_at: datetime | None = None
) -> dict[str, Any]:
    """Write the snapshot as of that moment into the directory; return its manifest."""
    # Given a later still_allowing_at (a run registered now that selects as of earlier), the
    # subjects who no longer allowed training then are left out too: whoever turned it off or
    # left since as_of.
    still_at = still_allowing_at if still_allowing_at and still_allowing_at > as_of else None
    latest = still_at or as_of
    # Wait up to `wait` seconds for the history store to apply the changes made by the later of
    # the two moments; the subjects whose changes it still lacks are left out (fail closed).
    deadline = time.monotonic() + wait
    withheld = subjects_withheld(latest)
    while withheld and time.monotonic() < deadline:
        time.sleep(0.2)
        withheld = subjects_withheld(latest)
    out.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    columns, subjects = _empty(), 0
    for subject, intervals in _subjects_as_of(as_of, withheld, still_at):
        subjects += 1
        for interval in intervals:
            columns["subject_id"].append(str(subject))
            columns["allowed_from"].append(interval.allowed_from)
            columns["allowed_until"].append(interval.allowed_until)
            columns["retention_days"].append(interval.retention_days)
        if len(columns["subject_id"]) >= ROWS_PER_FILE:
            files.append(_write(out / f"eligibility-{len(files):05}.parquet", columns))
            columns = _empty()
    if columns["subject_id"] or not files:
        files.append(_write(out / f"eligibility-{len(files):05}.parquet", columns))
    newest = (
        ConsentEvent.objects.filter(created_at__lte=as_of)
        .order_by("-pk")
        .values("pk", "created_at")
        .first()
    )
    manifest = {
        "as_of": as_of.isoformat(),
        "created_at": timezone.now().isoformat(),
        "rows": sum(file["rows"] for file in files),
        "subjects": subjects,
        "withheld_subjects": len(withheld),
        "still_allowing_at": still_at.isoformat() if still_at else None,
        "files": files,
        "newest_event": newest
        and {"id": newest["pk"], "created_at": newest["created_at"].isoformat()},
        "columns": [field.name for field in SCHEMA],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
