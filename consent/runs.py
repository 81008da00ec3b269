"""The ledger of training runs: each registered run keeps the eligibility snapshot taken for it."""

import shutil
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

import duckdb
import pyarrow as pa
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiToken
from consent.exceptions import ConsentError, RunExists
from consent.models import TrainingRun
from consent.moments import moment_settled
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


# Characters a name shown in the admin or a terminal must not hold: controls (NUL, escapes),
# format characters (zero-width, right-to-left overrides), surrogates, private and unassigned.
UNSEEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def run_directory(run: TrainingRun) -> Path:
    return Path(settings.TRAINING_RUNS_DIR) / str(run.pk)


def run_files(run: TrainingRun) -> list[Path]:
    return [run_directory(run) / file["name"] for file in run.snapshot["files"]]


def run_name(name: str) -> str:
    """Return the name a run is registered under, normalized and trimmed; ConsentError if unfit."""
    # NFC: one way to write what looks the same.
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise ConsentError("A run needs a name.")
    if len(name) > TrainingRun.NAME_LENGTH:
        raise ConsentError(f"A run's name is at most {TrainingRun.NAME_LENGTH} characters.")
    if any(unicodedata.category(character) in UNSEEN for character in name):
        raise ConsentError(
            "A run's name holds a character that cannot be seen (a control, format or "
            "unassigned character)."
        )
    return name


def run_register(
    *, name: str, as_of: datetime | None = None, token: ApiToken | None = None
) -> tuple[TrainingRun, bool]:
    """Register a training run and take its snapshot; return it, and whether it is new."""
    now = timezone.now()
    name = run_name(name)
    if as_of is not None and as_of > now:
        raise ConsentError("A run cannot select data as of a moment still to come.")
    # Its snapshot is fixed: it selects as of a moment whose changes have all been committed.
    settled = moment_settled(now)
    if as_of is not None and as_of > settled:
        seconds = settings.AUDIT_CHECKPOINT_SETTLE_SECONDS
        raise ConsentError(
            f"A run selects data as of a moment at least {seconds} seconds past, by which every "
            "change made has been committed, so that its fixed snapshot misses none: send an "
            "earlier as_of, or none for the latest such moment."
        )
    # A name is registered once, so that a retried request never counts a run twice (users are
    # told how many runs selected their data): the same name as of the same moment is the run
    # already registered; as of another moment, or of none given, it is refused (RunExists).
    registered = TrainingRun.objects.filter(name=name).first()
    if registered is not None:
        return _registered_again(registered, as_of), False
    run = TrainingRun(
        name=name, as_of=as_of or settled, registered_by=token, snapshot={}, created_at=now
    )
    # Written once, and never again: its answers stay the same however users change afterwards.
    # Selecting now as of earlier leaves out whoever turned the setting off, or left, meanwhile.
    run.snapshot = snapshot_write(as_of=run.as_of, out=run_directory(run), still_allowing_at=now)
    try:
        with transaction.atomic():
            run.save(force_insert=True)
    except IntegrityError:
        shutil.rmtree(run_directory(run), ignore_errors=True)
        registered = TrainingRun.objects.filter(name=name).first()
        if registered is None:  # not a request like this one, registered meanwhile
            raise
        return _registered_again(registered, as_of), False
    return run, True


def _registered_again(run: TrainingRun, as_of: datetime | None) -> TrainingRun:
    """Return the run registered under a name asked again, if asked as of the same moment."""
    if run.as_of != as_of:
        raise RunExists(run)
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
