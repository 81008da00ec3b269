"""Measure the audit log's checkpoints and verification at 10 million events.

The first run seeds its own PostgreSQL database (consent_bench_audit) with 10,000,000 hash-chained
events of 1,000,000 subjects (COPY, a few minutes) and takes the first checkpoint over all of
them; later runs reuse both. Then, in one run:

- a checkpoint after a minute's events at 100 changes a second (6,000 events on top of 10
  million): the work the beat pays every minute (the bar: at most 1 s);
- the whole log verified (every hash, every chain, the tree against every checkpoint), in events
  a second (the bar: 100,000 a second or better);
- beside it, the baseline: hashlib alone hashing the same bytes (each event's canonical JSON
  and its leaf), already in memory, on a sample; the goal is verification at half its speed.
Run it with `bench/audit`; docs/performance.md has figures.
"""

import argparse
import hashlib
import io
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.stack import configure, databases_create

DB_NAME = "consent_bench_audit"
configure(DB_NAME, cache_db=4, broker_db=5)

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from consent.audit import (  # noqa: E402
    GENESIS_HASH,
    HASHED,
    _events,
    audit_checkpoint,
    audit_verify,
    canonical,
    hash_of,
)
from consent.merkle import leaf_hash  # noqa: E402
from consent.models import AuditCheckpoint, ConsentEvent, ConsentPolicy  # noqa: E402
from consent.policies import policy_publish  # noqa: E402

COLUMNS = [ConsentEvent._meta.get_field(name).column for name in [*HASHED, "hash"]]


def seed(events: int, subjects: int, policy: ConsentPolicy, start: datetime) -> None:
    """COPY hash-chained events in, subject by subject, `events // subjects` each."""
    chooser = random.Random(3)  # noqa: S311 - made-up histories
    per_subject = events // subjects
    moment = start
    table = ConsentEvent._meta.db_table
    with connection.cursor() as cursor:
        raw = cursor.cursor
        for first in range(0, subjects, 10_000):
            buffer = io.StringIO()
            for _ in range(first, min(first + 10_000, subjects)):
                subject, prev, state = uuid.uuid4(), GENESIS_HASH, "undecided"
                for number in range(1, per_subject + 1):
                    after = "allowed" if chooser.random() < 0.6 else "declined"
                    moment += timedelta(microseconds=50)
                    fields = {
                        "subject_id": subject,
                        "number": number,
                        "kind": "decision",
                        "before": state,
                        "after": after,
                        "plan": "pro",
                        "policy_id": policy.pk,
                        "shown_default": None,
                        "gpc": False,
                        "channel": "settings",
                        "actor_role": "user",
                        "actor_subject_id": None,
                        "reason": "",
                        "reference": "",
                        "ip_prefix": "203.0.113.0/24",
                        "user_agent": "Mozilla/5.0 (bench)",
                        "created_at": moment,
                        "prev_hash": prev,
                    }
                    prev, state = hash_of(fields), after
                    values = [canonical(fields[name]) for name in HASHED] + [prev]
                    buffer.write("\t".join("\\N" if v is None else str(v) for v in values) + "\n")
            buffer.seek(0)
            with raw.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                copy.write(buffer.read())
            print(f"  seeded {min(first + 10_000, subjects) * per_subject:,} events", flush=True)
        cursor.execute("ANALYZE")


def minute_of_changes(count: int) -> None:
    """Add `count` more events, as a minute at 100 changes a second would, to new subjects."""
    events = []
    now = timezone.now() - timedelta(minutes=3)  # settled: a checkpoint takes them
    policy = ConsentPolicy.objects.first()
    for n in range(count):
        event = ConsentEvent(
            subject_id=uuid.uuid4(),
            number=1,
            kind="decision",
            before="undecided",
            after="allowed",
            plan="pro",
            policy=policy,
            channel="settings",
            actor_role="user",
            created_at=now + timedelta(milliseconds=10 * n),
            prev_hash=GENESIS_HASH,
        )
        event.hash = hash_of({name: getattr(event, name) for name in HASHED})
        events.append(event)
    ConsentEvent.objects.bulk_create(events, batch_size=2000)


def hashlib_alone(sample: int) -> float:
    """Return events a second for hashlib alone over the same bytes, already in memory."""
    payloads = []
    for _event_id, fields, _stored in _events(pk__lte=sample):
        payload = {name: canonical(fields[name]) for name in HASHED}
        payloads.append(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    began = time.perf_counter()
    for payload in payloads:
        leaf_hash(hashlib.sha256(payload).digest())
    return len(payloads) / (time.perf_counter() - began)


def memory_mb(field: str) -> float:
    """Return this process's resident memory (VmRSS) or its peak (VmHWM), in MB (Linux)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status[field].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--minute", type=int, default=6_000, help="events of one minute")
    parser.add_argument("--sample", type=int, default=1_000_000, help="for the hashlib baseline")
    args = parser.parse_args()

    databases_create(DB_NAME)
    if not ConsentEvent.objects.exists():
        start = datetime(2025, 1, 1, tzinfo=UTC)
        policy = policy_publish(
            title="Bench",
            text="Bench terms",
            effective_at=start,
            decision_deadline=start + timedelta(days=30),
            now=start,
        )
        began = time.perf_counter()
        seed(args.events, args.subjects, policy, start)
        print(f"seeded {args.events:,} events in {time.perf_counter() - began:.0f} s")
    if not AuditCheckpoint.objects.exists():
        began = time.perf_counter()
        first = audit_checkpoint()
        seconds = time.perf_counter() - began
        print(f"the first checkpoint, over all {first.tree_size:,} events: {seconds:.1f} s")

    size = ConsentEvent.objects.count()
    subjects = ConsentEvent.objects.filter(number=1).count()  # every chain has one first event
    minute_of_changes(args.minute)
    began = time.perf_counter()
    checkpoint = audit_checkpoint()
    minute_s = time.perf_counter() - began
    assert checkpoint is not None

    resident = memory_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) from here on is the check's
    began = time.perf_counter()
    report = audit_verify()
    verify_s = time.perf_counter() - began
    peak = memory_mb("VmHWM")
    rate = report.events / verify_s
    baseline = hashlib_alone(args.sample)

    print(
        f"\nPostgreSQL {DB_NAME}: {size:,} events, then {args.minute:,} more; "
        f"{os.cpu_count()} CPUs shared with everything else on this machine"
    )
    print(
        f"checkpoint after a minute of changes ({args.minute:,} events on top of {size:,}): "
        f"{minute_s:.2f} s (bar: at most 1 s): {'met' if minute_s <= 1 else 'NOT met'}"
    )
    print(
        f"verification of the whole log: {report.events:,} events in {verify_s:.1f} s, "
        f"{rate:,.0f} events/s (bar: 100,000/s): {'met' if rate >= 100_000 else 'NOT met'}; "
        f"verdict: {report.verdict}"
    )
    print(
        f"  memory: {resident:,.0f} MB resident before it, {peak:,.0f} MB at its peak "
        f"({subjects:,} subjects' chains followed at once)"
    )
    print(f"hashlib alone over the same bytes ({args.sample:,} events): {baseline:,.0f} events/s")
    print(f"verification / hashlib alone: {rate / baseline:.0%} (goal: 50%)")


if __name__ == "__main__":
    main()
