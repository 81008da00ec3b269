"""Propagation benchmark: 10,000 changes to every built-in sink with two worker processes.

Run from the project root: uv run python bench/propagation.py [--changes 10000]
It uses the PostgreSQL and Redis on this machine (databases consent_bench and
consent_bench_warehouse are dropped and made anew; a Redis server of its own on a free port is the
broker and the Redis sink), a webhook receiver process, and prints, in one run:
  - ours: time until every sink applied 10,000 changes committed as fast as possible;
  - ours: p50/p99 commit-to-applied latency at a steady 100 changes per second;
  - baseline 1: a raw batched upsert of 10,000 rows into the warehouse table;
  - baseline 2: one Celery task per change and sink, queued with delay_on_commit, no batching;
and our figure as a ratio to each baseline.
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
    workers = [
        start(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork",
             "--concurrency=1", "--loglevel=WARNING", f"--hostname=bench{i}@%h",
             "--without-gossip", "--without-mingle", "--include=naive_tasks"],
            stdout=subprocess.DEVNULL,
        )
        for i in range(count)
    ]  # fmt: skip
    time.sleep(4)  # let both connect to the broker before the clock starts
    return workers


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the main process: a warm shutdown
        process.wait(timeout=60)


def receiver_stats() -> dict:
    import json

    with urllib.request.urlopen(f"http://127.0.0.1:{RECEIVER_PORT}/stats") as response:
        return json.loads(response.read())


def reset_sinks() -> None:
    import redis

    from consent.models import EligibilityRecord

    EligibilityRecord.objects.all().delete()
    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{RECEIVER_PORT}/", method="DELETE")
    )


def all_applied(subjects: set[str], version: int) -> bool:
    import redis

    from consent.models import EligibilityRecord

    warehouse = EligibilityRecord.objects.filter(version__gte=version).count()
    client = redis.Redis.from_url(ENV["REDIS_URL"])
    in_redis = client.dbsize()
    webhook = receiver_stats()["subjects"]
    hooked = sum(1 for s in subjects if webhook.get(s, 0) >= version)
    return warehouse >= len(subjects) and in_redis >= len(subjects) and hooked >= len(subjects)


def wait_applied(subjects: set[str], version: int, *, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while not all_applied(subjects, version):
        if time.monotonic() > deadline:
            raise TimeoutError("sinks did not converge")
        time.sleep(0.1)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--steady-seconds", type=int, default=20)
    parser.add_argument("--naive-changes", type=int, default=2_000, help="baseline 2 is slow")
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
    from consent.sinks.warehouse import APPLY_SQL, WarehouseSink

    call_command("migrate", verbosity=0)
    call_command("migrate", database="warehouse", verbosity=0)
    now = timezone.now()
    policies.policy_publish(
        title="Bench", text="Bench policy", effective_at=now, decision_deadline=now
    )
    steady_count = 100 * args.steady_seconds
    User.objects.bulk_create(
        [User(email=f"b{i}@example.com", plan="pro") for i in range(3 * n + steady_count)],
        batch_size=5000,
    )
    users = list(User.objects.order_by("pk"))
    backlog_users, ours_users = users[:n], users[n : 2 * n]
    naive_users, steady_users = users[2 * n : 2 * n + args.naive_changes], users[3 * n :]

    # Baseline 1: the floor, a raw batched upsert of n rows into the warehouse table.
    sink = WarehouseSink(name="warehouse")
    rows = sink._rows([_fake_change(i) for i in range(n)])
    started = time.monotonic()
    with connections["warehouse"].cursor() as cursor:
        for i in range(0, n, 1000):
            cursor.executemany(APPLY_SQL, rows[i : i + 1000])
    raw_seconds = time.monotonic() - started
    reset_sinks()

    # Ours, backlog: n changes already committed, the drains they queued forgotten, then the
    # workers start and the sweep queues a drain of each sink.
    from django.core.cache import cache

    from config.celery import app as celery_app
    from consent import outbox

    commit_all(backlog_users, True, ours)
    celery_app.control.purge()
    cache.clear()
    workers = start_workers()
    started = time.monotonic()
    outbox.outbox_sweep()
    backlog_seconds = wait_applied({str(u.subject_id) for u in backlog_users}, 1) - started
    reset_sinks()

    # Ours: commit n changes as fast as possible while two workers drain the outbox.
    subjects = {str(u.subject_id) for u in ours_users}
    started = time.monotonic()
    commit_all(ours_users, True, ours)
    commit_seconds = time.monotonic() - started
    done = wait_applied(subjects, 1)
    ours_seconds = done - started

    # Ours: latency at a steady 100 changes per second.
    reset_sinks()
    steady_started = timezone.now()
    tick = time.monotonic()
    for user in steady_users:
        ours(user, True)
        tick += 0.01
        time.sleep(max(0.0, tick - time.monotonic()))
    wait_applied({str(u.subject_id) for u in steady_users}, 1)
    latencies = sorted(
        (d.applied_at - d.event.created_at).total_seconds()
        for d in Delivery.objects.filter(created_at__gte=steady_started).select_related("event")
    )
    for worker in workers:
        stop(worker)

    # Baseline 2: one task per change and sink, delay_on_commit, no batching.
    reset_sinks()
    workers = start_workers()
    subjects = {str(u.subject_id) for u in naive_users}
    started = time.monotonic()
    commit_all(naive_users, True, naive)
    naive_done = wait_applied(subjects, 1, timeout=900)
    naive_seconds = naive_done - started
    for worker in workers:
        stop(worker)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    naive_n = len(naive_users)
    ours_rate, backlog_rate, naive_rate = (
        n / ours_seconds,
        n / backlog_seconds,
        naive_n / naive_seconds,
    )
    print(
        f"{n} changes from {n} users; sinks: warehouse, redis, webhook; "
        f"2 worker processes; {os.cpu_count()} cores"
    )
    print(f"floor: raw batched upsert of {n} rows into the warehouse table: {raw_seconds:6.2f} s")
    print(f"ours: commit {n} changes as fast as possible (4 processes):    {commit_seconds:6.2f} s")
    print(
        f"ours: from first commit until every sink applied all {n}: {ours_seconds:6.2f} s"
        f"  ({ours_rate:,.0f} changes/s)"
    )
    print(
        f"ours: drain a committed backlog of {n} to every sink:     {backlog_seconds:6.2f} s"
        f"  ({backlog_rate:,.0f} changes/s)"
    )
    print(
        f"baseline: one task per change and sink, {naive_n} changes:     {naive_seconds:6.2f} s"
        f"  ({naive_rate:,.0f} changes/s)"
    )
    print(
        f"ratio, backlog drain to the raw upsert floor: {backlog_seconds / raw_seconds:.1f}x"
        " the time"
    )
    print(
        f"ratio, ours to one-task-per-change: {ours_rate / naive_rate:.1f}x the throughput "
        f"(backlog drain: {backlog_rate / naive_rate:.1f}x)"
    )
    print(
        f"steady 100 changes/s for {args.steady_seconds} s, commit-to-applied over "
        f"{len(latencies)} deliveries: p50 {pct(0.5) * 1000:.0f} ms, "
        f"p99 {pct(0.99) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )


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
