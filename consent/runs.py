"""The ledger of training runs: each registered run keeps the eligibility snapshot taken for it.

A run's snapshot is written once, when it is registered, and never again: its answers stay the
same however the users change afterwards.
"""

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

import duckdb
import pyarrow as pa
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiToken
from consent.exceptions import ConsentError
from consent.models import TrainingRun
from consent.snapshots import snapshot_write

# The join every pipeline makes on a snapshot (docs/pipelines.md): one answer per pair, in order.
SNAPSHOT_JOIN = """
SELECT count(s.subject_id) > 0 AS eligible
FROM pairs AS p
LEFT JOIN read_parquet($files) AS s
  ON s.subject_id = p.subject_id
 AND p.activity_at >= s.allowed_from
 AND (s.allowed_until IS NULL OR p.activity_at < s.allowed_until)
 AND p.activity_at <= $as_of
 AND epoch_us($as_of) - epoch_us(p.activity_at) <= s.retention_days * 86400000000
GROUP BY p.n
ORDER BY p.n
"""


def run_directory(run: TrainingRun) -> Path:
    return Path(settings.TRAINING_RUNS_DIR) / str(run.pk)


def run_files(run: TrainingRun) -> list[Path]:
    return [run_directory(run) / file["name"] for file in run.snapshot["files"]]


def run_register(
    *, name: str, as_of: datetime | None = None, token: ApiToken | None = None
) -> TrainingRun:
    """Register a training run that selects its data as of a moment (now by default), and take
    its snapshot."""
    now = timezone.now()
    as_of = as_of or now
    if not name.strip():
        raise ConsentError("A run needs a name.")
    if as_of > now:
        raise ConsentError("A run cannot select data as of a moment still to come.")
    run = TrainingRun(name=name.strip(), as_of=as_of, registered_by=token, snapshot={})
    run.snapshot = snapshot_write(as_of=as_of, out=run_directory(run))
    run.save(force_insert=True)
    return run


def snapshot_eligibility(
    files: Sequence[Path], pairs: Sequence[tuple[UUID, datetime]], *, as_of: datetime
) -> list[bool]:
    """Answer, for each (subject, moment of the data), from a snapshot's files, in order."""
    table = pa.table(
        {
            "n": pa.array(range(len(pairs)), pa.int64()),
            "subject_id": pa.array([str(subject_id) for subject_id, _ in pairs], pa.string()),
            "activity_at": pa.array([at for _, at in pairs], pa.timestamp("us", tz="UTC")),
        }
    )
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("pairs", table)
        rows = connection.execute(
            SNAPSHOT_JOIN, {"files": [str(path) for path in files], "as_of": as_of}
        ).fetchall()
    return [eligible for (eligible,) in rows]


def run_eligibility(run: TrainingRun, pairs: Sequence[tuple[UUID, datetime]]) -> list[bool]:
    """Answer pairs as the run's snapshot does, whenever it is asked."""
    return snapshot_eligibility(run_files(run), pairs, as_of=run.as_of)
