"""A whole propagation stack for a test: real workers, broker, PostgreSQL, Redis and webhook."""

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone

from consent import services
from consent.models import Delivery, EligibilityRecord
from consent.reconcile import expected_changes, source_subjects
from consent.sinks import configured_sinks
from consent.sinks.base import all_entries
from tests.conftest import free_port, wait_for_port
from tests.factories import UserFactory
from tests.support.celery import celery_broker
from tests.support.receiver import SECRET, WebhookReceiver
from tests.support.workers import Worker, database_url


@dataclass
class Stack:
    tmp_path: Path
    broker_url: str
    receiver: WebhookReceiver
    base_env: dict[str, str]
    broker_kind: str = "redis"
    workers: list[Worker] = field(default_factory=list)
    restarted_brokers: list[subprocess.Popen] = field(default_factory=list)

    def broker_stop(self) -> None:
        """Stop the broker, losing what Redis holds (it keeps nothing on disk); RabbitMQ's
        quorum queues keep theirs."""
        if self.broker_kind == "rabbitmq":
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
        else:
            subprocess.run(["redis-cli", "-p", self._port(), "shutdown", "nosave"], check=False)

    def broker_start(self) -> None:
        if self.broker_kind == "rabbitmq":
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
            subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True)
        else:
            self.restarted_brokers.append(
                subprocess.Popen(
                    ["redis-server", "--port", self._port(), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no"],
                    stdout=subprocess.DEVNULL,
                )
            )  # fmt: skip
        wait_for_port(int(self._port()))

    def _port(self) -> str:
        return self.broker_url.rsplit(":", 1)[1].split("/")[0]

    def start_worker(
        self, *, beat: bool = False, queues: str = "celery,maintenance", **env: str
    ) -> Worker:
        """Start a worker; by default one that runs every task, as make run's two do."""
        name = f"w{len(self.workers) + 1}"
        log = self.tmp_path / f"{name}.log"
        worker = Worker(name, self.base_env | env, log, beat=beat, queues=queues)
        self.workers.append(worker)
        return worker

    def worker_logs(self) -> str:
        return "\n".join(w.log.read_text()[-3000:] for w in self.workers)

    def held(self) -> dict[str, dict]:
        """Return what each sink holds: subject id -> (version, allowed, deleted)."""
        sinks = configured_sinks()
        state = {
            name: {
                str(s): (e.version, e.allowed, e.deleted)
                for s, e in all_entries(sinks[name]).items()
            }
            for name in ("warehouse", "redis")
        }
        with self.receiver.lock:
            state["webhook"] = {
                s: (r.version, r.allowed, r.deleted) for s, r in self.receiver.latest.items()
            }
        return state

    def expected(self) -> dict[str, tuple[int, bool, bool]]:
        return {
            str(s): (c.version, c.allowed, c.deleted)
            for subjects in source_subjects()
            for s, c in expected_changes(subjects).items()
        }

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
def broker_kind() -> str:
    """The broker a stack runs on; a test parametrizes it to run on RabbitMQ as well."""
    return "redis"


@pytest.fixture
def broker_url(broker_kind, private_redis) -> Iterator[str]:
    """A broker of the test's own: a Redis server, or a virtual host on the RabbitMQ server."""
    if broker_kind == "redis":
        yield private_redis
        return
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], check=False, capture_output=True)


@pytest.fixture
def stack(settings, tmp_path, broker_kind, broker_url, monkeypatch) -> Iterator[Stack]:
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
        "CELERY_BROKER_URL": broker_url,
        "REDIS_URL": django_settings.REDIS_URL,
        "CONSENT_WEBHOOK_URL": receiver.url,
        "CONSENT_WEBHOOK_SECRETS": SECRET,
        "CONSENT_RETRY_BASE_SECONDS": "0.2",
        "CONSENT_RETRY_MAX_SECONDS": "1",
        "CONSENT_RETRY_MAX_ATTEMPTS": "50",
        "CONSENT_SWEEP_SECONDS": "1",
        "DATA_DIR": str(tmp_path),
    }
    with celery_broker(broker_url, monkeypatch):
        stack = Stack(tmp_path, broker_url, receiver, base_env, broker_kind)
        try:
            yield stack
        finally:
            for worker in stack.workers:
                worker.stop()
            for broker in stack.restarted_brokers:
                broker.terminate()
                broker.wait(timeout=10)
            receiver.stop()


@pytest.fixture
def monotonic(stack) -> Iterator[Monotonic]:
    watcher = Monotonic(stack)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    yield watcher
    watcher.running = False
    thread.join(timeout=10)


@pytest.fixture
def lost_from_the_warehouse(policy, stack) -> uuid.UUID:
    """Return the subject whose warehouse record was lost after a real worker applied it."""
    stack.start_worker()
    users = UserFactory.create_batch(3, plan="pro")
    a_minute_ago = timezone.now() - timedelta(minutes=1)  # reconcile leaves younger ones alone
    for user in users:
        services.consent_change(
            user=user, allowed=True, channel=services.Channel.SETTINGS, now=a_minute_ago
        )
    stack.wait_converged()
    EligibilityRecord.objects.filter(subject_id=users[0].subject_id).delete()
    return users[0].subject_id
