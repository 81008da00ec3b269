"""Propagation benchmark: changes carried to every built-in sink by real worker processes.

Run from the project root: uv run python bench/propagation.py
(--changes 100000 --history-rows 10000000 by default; smaller figures for a quick look.)
It uses the PostgreSQL and Redis on this machine (databases consent_bench and
consent_bench_warehouse are dropped and made anew; a Redis server of its own on a free port is the
broker and the Redis sink), a webhook receiver process, and prints, in one run:
  - the floor: the warehouse sink's own upsert of as many changes, no queue, no worker;
  - scaling: a committed backlog of 100,000 changes drained to all three sinks by 1, 2 and 4
    worker processes (each runs one task at a time), as changes per second and as a ratio to
    one worker;
  - p50/p99 commit-to-applied at a steady 100 changes per second (two workers);
  - a baseline: one Celery task per change and sink, queued with delay_on_commit, no batching;
  - the same steady run with a history of 10 million events and 10 million applied deliveries
    behind it, then again while outbox_prune deletes an hour's worth of old deliveries at that
    rate (1.08 million rows).
"""

import argparse
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - the benchmark's own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(port)


def recreate_databases() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for name in ("consent_bench", "consent_bench_warehouse"):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")


REDIS_PORT, RECEIVER_PORT = free_port(), free_port()
ENV = os.environ | {
    "DATABASE_URL": f"{PG}/consent_bench",
    "WAREHOUSE_DATABASE_URL": f"{PG}/consent_bench_warehouse",
    "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
    "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/1",
    "CONSENT_WEBHOOK_URL": f"http://127.0.0.1:{RECEIVER_PORT}/hook",
    "CONSENT_WEBHOOK_SECRETS": SECRET,
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}",
    "DATA_DIR": str(ROOT / "var" / "bench"),
    "LOG_LEVEL": "WARNING",
}
os.environ.update(ENV)
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
processes: list[subprocess.Popen] = []


def start(command: list[str], **kwargs) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, start_new_session=True, **kwargs)
    processes.append(process)
    return process


def start_workers(count: int = 2) -> list[subprocess.Popen]:
    workers = []
    for i in range(count):
        with (Path(ENV["DATA_DIR"]) / f"worker{i}.log").open("a") as log:
            workers.append(start(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork",
                 "--concurrency=1", "--loglevel=WARNING", f"--hostname=bench{i}@%h",
                 "--without-gossip", "--without-mingle", "--include=naive_tasks"],
                stdout=log,
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
    wait_ready(count)
    return workers


def wait_ready(count: int) -> None:
    """Wait until `count` workers answer a ping: connected, consuming, before the clock starts."""
    from config.celery import app as celery_app

    for _ in range(240):
        if len(celery_app.control.ping(timeout=0.5)) >= count:
            return
    raise TimeoutError("workers did not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the main process: a warm shutdown
        process.wait(timeout=60)


def receiver_count(version: int) -> int:
    import json

    url = f"http://127.0.0.1:{RECEIVER_PORT}/stats?version={version}"
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())["subjects"]


def reset_sinks() -> None:
    import redis

    from consent.models import EligibilityInterval, EligibilityRecord

    EligibilityRecord.objects.all().delete()
    EligibilityInterval.objects.all().delete()
    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{RECEIVER_PORT}/", method="DELETE")
    )


def all_applied(count: int, version: int) -> bool:
    """Tell whether every sink holds `count` subjects at `version` or newer (the sinks are
    emptied before each measurement, so only its subjects are there)."""
    import redis

    from consent.models import EligibilityRecord

    warehouse = EligibilityRecord.objects.filter(version__gte=version).count()
    in_redis = redis.Redis.from_url(ENV["REDIS_URL"]).dbsize()
    return min(warehouse, in_redis, receiver_count(version)) >= count


def wait_applied(count: int, version: int = 1, *, timeout: float = 1800) -> float:
    deadline = time.monotonic() + timeout
    while not all_applied(count, version):
        if time.monotonic() > deadline:
            raise TimeoutError("sinks did not converge")
        time.sleep(0.25)
    return time.monotonic()


def _commit_chunk(job: tuple) -> None:
    from django.db import connections

    from accounts.models import User

    user_ids, allowed, commit = job
    try:
        for user in User.objects.filter(pk__in=user_ids):
            commit(user, allowed)
    finally:
        connections.close_all()


def commit_all(users, allowed: bool, commit, processes: int = 4) -> None:
    """Commit one change per user from several processes, as web servers would."""
    from django.db import connections

    connections.close_all()  # never share a connection across fork
    ids = [u.pk for u in users]
    jobs = [(ids[i::processes], allowed, commit) for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_commit_chunk, jobs)


def ours(user, allowed: bool) -> None:
    from consent import services

    services.consent_change(user=user, allowed=allowed, channel=services.Channel.SETTINGS)


def naive(user, allowed: bool) -> None:
    from django.db import transaction
    from django.test import override_settings
    from naive_tasks import apply_one

    from consent import services

    with override_settings(CONSENT_SINKS={}), transaction.atomic():  # no outbox rows
        event = services.consent_change(
            user=user, allowed=allowed, channel=services.Channel.SETTINGS
        )
        for sink in ("warehouse", "redis", "webhook"):
            apply_one.delay_on_commit(sink, event.pk)


def forget_queued_drains() -> None:
    """Empty the broker's queue and the drains' debounce keys: the next start is a cold one."""
    from django.core.cache import cache

    from config.celery import app as celery_app

    celery_app.control.purge()
    cache.clear()


def vacuum(table: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")


def drain_backlog(workers: int, count: int) -> float:
    """Set every delivery pending again, start the workers, let the sweep queue a drain of each
    sink, and return the seconds until every sink applied all `count` changes."""
    from django.utils import timezone

    from consent import outbox
    from consent.models import Delivery

    Delivery.objects.update(
        state=Delivery.State.PENDING, attempts=0, applied_at=None, next_attempt_at=timezone.now()
    )
    vacuum("consent_delivery")
    reset_sinks()
    forget_queued_drains()
    running = start_workers(workers)
    started = time.monotonic()
    outbox.outbox_sweep()
    seconds = wait_applied(count) - started
    for worker in running:
        stop(worker)
    return seconds


def steady(users, *, rate: int = 100) -> list[float]:
    """Commit one change per user at `rate` a second; return each delivery's seconds from
    commit to applied, sorted."""
    from django.utils import timezone

    from consent.models import Delivery

    reset_sinks()
    started_at = timezone.now()
    tick = time.monotonic()
    for user in users:
        ours(user, True)
        tick += 1 / rate
        time.sleep(max(0.0, tick - time.monotonic()))
    wait_applied(len(users))
    return sorted(
        (d.applied_at - d.event.created_at).total_seconds()
        for d in Delivery.objects.filter(created_at__gte=started_at).select_related("event")
    )


def pct(latencies: list[float], p: float) -> float:
    return latencies[min(len(latencies) - 1, int(p * len(latencies)))]


# Ten million rows are written by the database itself: through the ORM they would take hours.
HISTORY_EVENTS_SQL = """
INSERT INTO consent_consentevent (subject_id, number, kind, before, after, plan, shown_default,
    gpc, channel, actor_role, reason, reference, ip_prefix, user_agent, created_at, prev_hash,
    hash, policy_id)
SELECT md5('history' || (i %% %(subjects)s))::uuid, i / %(subjects)s + 1, 'decision',
    'undecided', CASE WHEN i %% 2 = 0 THEN 'allowed' ELSE 'declined' END, 'pro', NULL, false,
    'settings', 'user', '', '', '', '',
    CASE WHEN i < %(old)s THEN %(old_from)s + i * %(old_step)s
         ELSE %(new_from)s + (i - %(old)s) * %(new_step)s END,
    repeat('0', 64), repeat('0', 64), %(policy)s
FROM generate_series(0, %(events)s - 1) AS i
"""
HISTORY_DELIVERIES_SQL = """
INSERT INTO consent_delivery (event_id, sink, subject_id, event_number, state, attempts,
    next_attempt_at, last_attempt_at, last_error, applied_at, created_at, request_id)
SELECT e.id, (ARRAY['warehouse', 'redis', 'webhook'])[e.number %% 3 + 1], e.subject_id, e.number,
    'applied', 1, e.created_at, e.created_at, '', e.created_at, e.created_at, ''
FROM consent_consentevent e
WHERE e.id > %(after)s
"""


def history_insert(rows: int, prunable: int, policy_id: int) -> float:
    """Write `rows` past changes and as many applied deliveries (six changes a subject, each
    delivered to one sink in turn, so that every subject's first delivery to a sink has a newer
    one): `prunable` of them are older than the retention and superseded, the hour an hourly
    prune finds; the rest are within the week it keeps. Return the seconds it took."""
    from datetime import timedelta

    from django.db import connection, transaction
    from django.db.models import Max
    from django.utils import timezone

    from consent.models import ConsentEvent

    events, old = rows, min(prunable, rows // 6)
    now = timezone.now()
    retention = timedelta(days=7)
    started = time.monotonic()
    after = ConsentEvent.objects.aggregate(last=Max("pk"))["last"] or 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            HISTORY_EVENTS_SQL,
            {
                "subjects": events // 6,
                "old": old,
                "old_from": now - retention - timedelta(hours=1),
                "old_step": timedelta(hours=1) / max(old, 1),
                "new_from": now - retention + timedelta(minutes=10),
                "new_step": (retention - timedelta(minutes=20)) / max(events - old, 1),
                "events": events,
                "policy": policy_id,
            },
        )
        cursor.execute(HISTORY_DELIVERIES_SQL, {"after": after})
    vacuum("consent_consentevent")
    vacuum("consent_delivery")
    return time.monotonic() - started


def _prune(results) -> None:
    from django.db import connections

    from consent.outbox import outbox_prune

    started = time.monotonic()
    pruned = outbox_prune()
    results.put((pruned, time.monotonic() - started))
    connections.close_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to drain with")
    parser.add_argument("--steady-seconds", type=int, default=20)
    parser.add_argument("--naive-changes", type=int, default=2_000, help="baseline 2 is slow")
    parser.add_argument("--history-rows", type=int, default=10_000_000)
    parser.add_argument("--prune-rows", type=int, default=1_080_000)
    args = parser.parse_args()
    n = args.changes

    recreate_databases()
    start(["redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"],
          stdout=subprocess.DEVNULL)  # fmt: skip
    start([sys.executable, "bench/receiver.py", str(RECEIVER_PORT)])
    wait_port(REDIS_PORT)
    wait_port(RECEIVER_PORT)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from django.utils import timezone

    from accounts.models import User
    from consent import policies
    from consent.models import Delivery
    from consent.sinks.warehouse import WarehouseSink

    call_command("migrate", verbosity=0)
    call_command("migrate", database="warehouse", verbosity=0)
    now = timezone.now()
    policy = policies.policy_publish(
        title="Bench", text="Bench policy", effective_at=now, decision_deadline=now
    )
    per_run = 100 * args.steady_seconds
    everyone = n + args.naive_changes + 3 * per_run
    User.objects.bulk_create(
        [User(email=f"b{i}@example.com", plan="pro") for i in range(everyone)], batch_size=5000
    )
    users = list(User.objects.order_by("pk"))
    backlog_users, naive_users = users[:n], users[n : n + args.naive_changes]
    steady_users = users[n + args.naive_changes :]
    quiet, behind_history, while_pruning = (
        steady_users[i * per_run : (i + 1) * per_run] for i in range(3)
    )
    print(f"{os.cpu_count()} cores; sinks: warehouse, redis, webhook", flush=True)

    # The floor: the warehouse sink's own upsert of n changes in batches of 1,000, no queue.
    sink = WarehouseSink(name="warehouse")
    changes = [_fake_change(i) for i in range(n)]
    started = time.monotonic()
    for i in range(0, n, 1000):
        sink.apply(changes[i : i + 1000])
    raw_seconds = time.monotonic() - started
    print(
        f"floor: the warehouse sink upserts {n:,} changes in batches of 1,000: {raw_seconds:.2f} s"
    )

    # Scaling: n changes committed with no worker running, drained by 1, 2 and 4 workers.
    started = time.monotonic()
    commit_all(backlog_users, True, ours)
    commit_seconds = time.monotonic() - started
    print(f"committed {n:,} changes from 4 processes in {commit_seconds:.1f} s "
          f"({n / commit_seconds:,.0f} changes/s)", flush=True)  # fmt: skip
    print(f"drain a backlog of {n:,} changes to all three sinks:")
    print("  workers   seconds   changes/s   vs 1 worker   time vs floor")
    one = None
    for count in [int(w) for w in args.workers.split(",")]:
        seconds = drain_backlog(count, n)
        one = one or n / seconds
        print(f"  {count:7d}   {seconds:7.1f}   {n / seconds:9,.0f}   {n / seconds / one:10.2f}x"
              f"   {seconds / raw_seconds:12.1f}x", flush=True)  # fmt: skip

    # Steady 100 changes/s with two workers, and the baseline of one task per change.
    workers = start_workers(2)
    quiet_latencies = steady(quiet)
    for worker in workers:
        stop(worker)
    reset_sinks()
    forget_queued_drains()
    workers = start_workers(2)
    started = time.monotonic()
    commit_all(naive_users, True, naive)
    naive_seconds = wait_applied(len(naive_users), timeout=900) - started
    for worker in workers:
        stop(worker)
    naive_rate = len(naive_users) / naive_seconds
    print(f"baseline: one task per change and sink, {len(naive_users):,} changes, 2 workers: "
          f"{naive_seconds:.1f} s ({naive_rate:,.0f} changes/s)", flush=True)  # fmt: skip

    # The same steady run with a long delivery history behind it, then while it is pruned.
    history_seconds = history_insert(args.history_rows, args.prune_rows, policy.pk)
    total = Delivery.objects.count()
    print(f"wrote a history of {args.history_rows:,} events and applied deliveries in "
          f"{history_seconds:.0f} s; the table holds {total:,}", flush=True)  # fmt: skip
    forget_queued_drains()
    workers = start_workers(2)
    history_latencies = steady(behind_history)
    connections.close_all()
    results = multiprocessing.get_context("fork").SimpleQueue()
    pruning = multiprocessing.get_context("fork").Process(target=_prune, args=(results,))
    pruning.start()
    pruning_latencies = steady(while_pruning)
    pruning.join()
    pruned, prune_seconds = results.get()
    for worker in workers:
        stop(worker)

    print(f"outbox_prune deleted {pruned:,} deliveries of {total:,} in {prune_seconds:.1f} s "
          f"({pruned / prune_seconds:,.0f} rows/s)")  # fmt: skip
    if prune_seconds < args.steady_seconds:
        print(f"  (it ended before the steady run did: only its first {prune_seconds:.0f} s of "
              f"{args.steady_seconds} ran beside the prune)")  # fmt: skip
    print(f"steady 100 changes/s for {args.steady_seconds} s, commit-to-applied, 2 workers:")
    print("  history behind it             deliveries   p50 ms   p99 ms   max ms   p99 ratio")
    for label, latencies in (
        ("none", quiet_latencies),
        (f"{total:,} rows", history_latencies),
        (f"{total:,} rows, being pruned", pruning_latencies),
    ):
        print(f"  {label:28s}   {len(latencies):10,d}   {pct(latencies, 0.5) * 1000:6.0f}   "
              f"{pct(latencies, 0.99) * 1000:6.0f}   {latencies[-1] * 1000:6.0f}   "
              f"{pct(latencies, 0.99) / pct(quiet_latencies, 0.99):8.2f}x")  # fmt: skip


def _fake_change(i: int):
    from django.utils import timezone

    from consent.sinks.base import Change

    return Change(
        delivery_id=i, message_id=f"m{i}", subject_id=uuid.uuid4(), version=1, allowed=True,
        deleted=False, plan="pro", policy_version=1, retention_days=1825,
        changed_at=timezone.now(),
    )  # fmt: skip


if __name__ == "__main__":
    try:
        main()
    finally:
        for process in reversed(processes):
            stop(process)
