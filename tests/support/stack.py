"""A whole propagation stack for a test: real workers, broker, PostgreSQL, Redis and webhook."""

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connections

from consent.models import Delivery
from consent.reconcile import expected_changes
from consent.sinks import configured_sinks
from tests.conftest import free_port
from tests.support.celery import celery_broker
from tests.support.receiver import SECRET, WebhookReceiver
from tests.support.workers import Worker, database_url


@dataclass
class Stack:
    tmp_path: Path
    broker_url: str
    receiver: WebhookReceiver
    base_env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, *, beat: bool = False, **env: str) -> Worker:
        name = f"w{len(self.workers) + 1}"
        worker = Worker(name, self.base_env | env, self.tmp_path / f"{name}.log", beat=beat)
        self.workers.append(worker)
        return worker

    def worker_logs(self) -> str:
        return "\n".join(w.log.read_text()[-3000:] for w in self.workers)

    def held(self) -> dict[str, dict]:
        """Return what each sink holds: subject id -> (version, allowed, deleted)."""
        sinks = configured_sinks()
        state = {
            name: {
                str(s): (e.version, e.allowed, e.deleted) for s, e in sinks[name].entries().items()
            }
            for name in ("warehouse", "redis")
        }
        with self.receiver.lock:
            state["webhook"] = {
                s: (r.version, r.allowed, r.deleted) for s, r in self.receiver.latest.items()
            }
        return state

    def expected(self) -> dict[str, tuple[int, bool, bool]]:
        return {str(s): (c.version, c.allowed, c.deleted) for s, c in expected_changes().items()}

    def wait_converged(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            expected, held = self.expected(), self.held()
            pending = Delivery.objects.filter(state=Delivery.State.PENDING).count()
            if not pending and all(held[name] == expected for name in held):
                return
            if time.monotonic() > deadline:
                logs = self.worker_logs()
                wrong = {n: len(set(h.items()) ^ set(expected.items())) for n, h in held.items()}
                raise AssertionError(f"not converged: {pending} pending, wrong {wrong}\n{logs}")
            time.sleep(0.2)


@dataclass
class Monotonic:
    """Watch the readable sinks while a test runs; record any version that went backwards."""

    stack: Stack
    backwards: list[str] = field(default_factory=list)
    seen: dict[tuple[str, str], int] = field(default_factory=dict)
    running: bool = True

    def run(self) -> None:
        try:
            while self.running:
                for sink, entries in self.stack.held().items():
                    if sink == "webhook":
                        continue
                    for subject, (version, _, _) in entries.items():
                        last = self.seen.get((sink, subject), 0)
                        if version < last:
                            self.backwards.append(f"{sink} {subject}: {last} -> {version}")
                        self.seen[(sink, subject)] = max(last, version)
                time.sleep(0.02)
        finally:
            connections.close_all()


@pytest.fixture
def stack(settings, tmp_path, private_redis, monkeypatch) -> Iterator[Stack]:
    receiver = WebhookReceiver().start(free_port())
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()
    settings.CONSENT_SINKS = {
        "warehouse": {
            "BACKEND": "consent.sinks.warehouse.WarehouseSink",
            "OPTIONS": {"database": "warehouse"},
        },
        "redis": {
            "BACKEND": "consent.sinks.redis.RedisSink",
            "OPTIONS": {"url": django_settings.REDIS_URL},
        },
        "webhook": {
            "BACKEND": "consent.sinks.webhook.WebhookSink",
            "OPTIONS": {"url": receiver.url, "secrets": [SECRET]},
        },
    }
    base_env = os.environ | {
        "DATABASE_URL": database_url("default"),
        "WAREHOUSE_DATABASE_URL": database_url("warehouse"),
        "CELERY_BROKER_URL": private_redis,
        "REDIS_URL": django_settings.REDIS_URL,
        "CONSENT_WEBHOOK_URL": receiver.url,
        "CONSENT_WEBHOOK_SECRETS": SECRET,
        "CONSENT_RETRY_BASE_SECONDS": "0.2",
        "CONSENT_RETRY_MAX_SECONDS": "1",
        "CONSENT_RETRY_MAX_ATTEMPTS": "50",
        "CONSENT_SWEEP_SECONDS": "1",
        "DATA_DIR": str(tmp_path),
    }
    with celery_broker(private_redis, monkeypatch):
        stack = Stack(tmp_path, private_redis, receiver, base_env)
        try:
            yield stack
        finally:
            for worker in stack.workers:
                worker.stop()
            receiver.stop()


@pytest.fixture
def monotonic(stack) -> Iterator[Monotonic]:
    watcher = Monotonic(stack)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    yield watcher
    watcher.running = False
    thread.join(timeout=10)
