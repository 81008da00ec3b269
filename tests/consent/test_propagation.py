"""Fault tests: real worker processes, a real Redis broker, real PostgreSQL, a real webhook."""

import json
import random
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from accounts.models import User
from consent import services, tasks
from consent.models import (
    AuditVerification,
    Delivery,
    EligibilityInterval,
    EligibilityRecord,
    Reconciliation,
    TrainingConsent,
)
from consent.services import Channel
from consent.sinks import sink_named
from tests.conftest import free_port
from tests.factories import UserFactory
from tests.support.proxy import TcpProxy
from tests.support.workers import database_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "warehouse"]),
]
State = Delivery.State
# The fault tests run on both brokers: RabbitMQ in production, Redis where it suits.
BOTH_BROKERS = pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])


def make_changes(users: list[User], count: int, *, seed: int = 7) -> None:
    chooser = random.Random(seed)
    for _ in range(count):
        user = chooser.choice(users)
        services.consent_change(user=user, allowed=chooser.random() < 0.5, channel=Channel.SETTINGS)


def wait_for(condition, *, stack, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.worker_logs()}")
        time.sleep(0.1)


def assert_nothing_dead() -> None:
    dead = list(Delivery.objects.filter(state=State.DEAD).values("sink", "last_error"))
    assert dead == []


def test_changes_reach_every_sink_with_two_workers(policy, stack, monotonic):
    stack.start_worker(beat=True)
    stack.start_worker()
    users = UserFactory.create_batch(20)

    make_changes(users, 80)
    stack.wait_converged()

    assert_nothing_dead()
    assert monotonic.backwards == []
    assert stack.receiver.rejected == []
    assert all("@" not in r.subject for r in stack.receiver.received)


@BOTH_BROKERS
def test_a_worker_killed_mid_batch_loses_nothing(policy, stack, monotonic):
    stack.receiver.delay = 0.05
    first = stack.start_worker(CONSENT_DELIVERY_BATCH_SIZE="10")
    users = UserFactory.create_batch(40)
    for user in users:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)

    wait_for(lambda: len(stack.receiver.received) >= 3, what="the first webhooks", stack=stack)
    first.kill()
    unfinished = Delivery.objects.filter(sink="webhook", state=State.PENDING).count()
    stack.start_worker(beat=True, CONSENT_DELIVERY_BATCH_SIZE="10")
    stack.wait_converged()

    assert unfinished > 0  # the kill really interrupted the work
    assert_nothing_dead()
    assert monotonic.backwards == []


@BOTH_BROKERS
def test_changes_committed_while_the_broker_is_down_are_delivered(policy, stack, monotonic):
    stack.start_worker(beat=True)
    users = UserFactory.create_batch(10)
    stack.broker_stop()

    make_changes(users, 30)  # commits succeed; queuing the drain fails quietly
    assert Delivery.objects.filter(state=State.PENDING).count() > 0

    stack.broker_start()
    stack.wait_converged(timeout=90)
    assert_nothing_dead()
    assert monotonic.backwards == []


@BOTH_BROKERS
def test_a_broker_restart_while_workers_hold_tasks_loses_nothing(policy, stack, monotonic):
    stack.receiver.delay = 0.05  # tasks last long enough to be held when the broker goes
    worker = stack.start_worker(beat=True, CONSENT_DELIVERY_BATCH_SIZE="5")
    users = UserFactory.create_batch(30)
    make_changes(users, 60)
    wait_for(lambda: len(stack.receiver.received) >= 3, what="the first webhooks", stack=stack)

    stack.broker_stop()
    time.sleep(3)
    stack.broker_start()
    make_changes(users, 20)
    stack.wait_converged(timeout=120)

    assert worker.process.poll() is None, stack.worker_logs()  # the worker lived through it
    assert "Unrecoverable error" not in stack.worker_logs()
    assert_nothing_dead()
    assert monotonic.backwards == []


@BOTH_BROKERS
def test_a_webhook_answering_503_for_a_while_is_retried_until_it_answers(policy, stack):
    stack.receiver.status = 503
    stack.start_worker(beat=True)
    users = UserFactory.create_batch(5)

    make_changes(users, 10)
    wait_for(
        lambda: Delivery.objects.filter(sink="webhook", attempts__gte=2).exists(),
        what="a retried webhook delivery",
        stack=stack,
    )
    stack.receiver.status = 200
    stack.wait_converged()

    assert_nothing_dead()
    retried = Delivery.objects.filter(sink="webhook", state=State.APPLIED, attempts__gte=2)
    assert retried.exists()


def test_a_webhook_answering_400_is_dead_at_once_and_retried_from_the_admin(
    policy, stack, admin_client
):
    stack.receiver.status = 400
    stack.start_worker(beat=True)
    user = UserFactory()
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)

    wait_for(
        lambda: Delivery.objects.filter(sink="webhook", state=State.DEAD).exists(),
        what="a dead webhook delivery",
        stack=stack,
    )
    dead = Delivery.objects.get(sink="webhook")
    assert dead.attempts == 1
    assert "HTTP 400" in dead.last_error
    assert Delivery.objects.filter(sink="warehouse", state=State.APPLIED).exists()

    stack.receiver.status = 200
    response = admin_client.post(
        "/admin/consent/delivery/",
        {"action": "retry_dead", "_selected_action": [dead.pk]},
    )
    assert response.status_code == 302
    stack.wait_converged()
    dead.refresh_from_db()
    assert dead.state == State.APPLIED


@BOTH_BROKERS
def test_an_unreachable_warehouse_is_caught_up_when_it_returns(policy, stack, monotonic):
    proxy = TcpProxy(free_port(), ("127.0.0.1", 5432))
    proxy.start()
    stack.start_worker(
        beat=True, WAREHOUSE_DATABASE_URL=database_url("warehouse", port=proxy.listen_port)
    )
    users = UserFactory.create_batch(10)
    proxy.cut()

    make_changes(users, 20)
    wait_for(
        lambda: (
            Delivery.objects.filter(sink="warehouse", attempts__gte=1)
            .exclude(last_error="")
            .exists()
        ),
        what="a failed warehouse attempt",
        stack=stack,
    )
    # The other sinks go on while the warehouse is down.
    wait_for(
        lambda: not Delivery.objects.filter(sink="redis", state=State.PENDING).exists(),
        what="Redis to settle every change",
        stack=stack,
    )
    assert Delivery.objects.filter(sink="warehouse", state=State.PENDING).exists()
    proxy.start()
    try:
        stack.wait_converged()
    finally:
        for worker in stack.workers:
            worker.stop()
        proxy.cut()
    assert_nothing_dead()
    assert monotonic.backwards == []


def test_concurrent_changes_for_the_same_users_end_on_the_last_version(policy, stack, monotonic):
    stack.start_worker(beat=True)
    stack.start_worker()
    users = UserFactory.create_batch(3)

    def change(seed: int) -> None:
        try:
            make_changes([User.objects.get(pk=u.pk) for u in users], 15, seed=seed)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=change, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stack.wait_converged()

    assert_nothing_dead()
    assert monotonic.backwards == []
    expected = stack.expected()
    for user in users:
        consent = TrainingConsent.objects.get(user=user)
        assert expected[str(user.subject_id)][0] == consent.head_number
    assert stack.held()["warehouse"] == expected


def intervals_of(user: User) -> list[tuple]:
    return list(
        EligibilityInterval.objects.using("warehouse")
        .filter(subject_id=user.subject_id)
        .order_by("allowed_from")
        .values_list("allowed_from", "allowed_until", "policy_version", "retention_days")
    )


def test_reconcile_finds_and_repairs_exactly_the_drift(policy, stack, capsys):
    stack.start_worker(beat=True)
    users = UserFactory.create_batch(6)
    a_minute_ago = timezone.now() - timedelta(minutes=1)  # reconcile leaves younger ones alone
    for user in users:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS, now=a_minute_ago)
    stack.wait_converged()

    tampered, removed = users[0], users[1]
    EligibilityRecord.objects.filter(subject_id=tampered.subject_id).update(allowed=False)
    sink_named("redis").client.delete(sink_named("redis").key(removed.subject_id))
    stray = EligibilityRecord.objects.get(subject_id=users[2].subject_id)
    stray.pk = "00000000-0000-0000-0000-000000000001"
    stray.save(force_insert=True)
    # The interval history drifts too: one lost, one moved, one for nobody.
    intervals = EligibilityInterval.objects.using("warehouse")
    lost, moved = (intervals.get(subject_id=user.subject_id) for user in users[3:5])
    truth = {user.subject_id: intervals_of(user) for user in users}
    lost.delete()
    EligibilityRecord.objects.filter(subject_id=users[5].subject_id).delete()  # intervals stay
    intervals.filter(pk=moved.pk).update(allowed_from=moved.allowed_from - timedelta(days=90))
    orphan = intervals.create(
        subject_id="00000000-0000-0000-0000-000000000002",
        allowed_from=moved.allowed_from,
        policy_version=moved.policy_version,
        retention_days=moved.retention_days,
    )

    with pytest.raises(CommandError, match="Drift found and not repaired") as found:
        call_command("reconcile")
    assert found.value.returncode == 3  # for a script that checks
    report = capsys.readouterr().out
    assert "warehouse: 1 missing, 3 stale, 2 extra" in report
    assert "redis: 1 missing, 0 stale, 0 extra" in report
    assert "webhook: 0 missing, 0 stale, 0 extra" in report

    call_command("reconcile", "--repair")
    assert capsys.readouterr().out.count("(repaired)") == 2
    call_command("reconcile")
    assert capsys.readouterr().out.count("0 missing, 0 stale, 0 extra, 0 in flight (in sync)") == 3
    assert EligibilityRecord.objects.get(subject_id=tampered.subject_id).allowed
    assert not EligibilityRecord.objects.filter(pk=stray.pk).exists()
    assert {user.subject_id: intervals_of(user) for user in users} == truth
    assert not intervals.filter(subject_id=orphan.subject_id).exists()
    assert sink_named("redis").client.hget(sink_named("redis").key(removed.subject_id), "allowed")
    stack.wait_converged()


def test_a_burst_from_one_process_is_drained_without_the_sweeper(policy, stack):
    # No beat, so no sweeper: only the drains the commits queue can bring the sinks up to date.
    # Made one after another, most of these changes queue nothing and ride a drain queued ahead.
    stack.start_worker()
    users = UserFactory.create_batch(10)
    for seed in range(50):  # for about 1.5 s, longer than a drain waits to carry them
        make_changes(users, 1, seed=seed)
        time.sleep(0.03)
    stack.wait_converged(timeout=20)

    assert_nothing_dead()


@BOTH_BROKERS
def test_the_hourly_checks_wait_for_their_own_workers_and_never_hold_the_deliveries(policy, stack):
    # Worker processes that apply changes take only the default queue, as the Procfile's and
    # operations.md's do: verification and reconcile, which may run for most of an hour, go to
    # the maintenance queue and never take the process a user's change waits for.
    stack.start_worker(queues="celery")
    users = UserFactory.create_batch(5)
    tasks.verify_audit.delay()
    tasks.reconcile_requested.delay("warehouse", True)
    tasks.prune_outbox.delay()

    make_changes(users, 20)
    stack.wait_converged(timeout=20)
    time.sleep(1)  # what the delivery worker could have taken, it has had time to

    assert not AuditVerification.objects.exists()
    assert not Reconciliation.objects.exists()
    stack.start_worker(queues="maintenance")
    wait_for(AuditVerification.objects.exists, stack=stack, what="the verification")
    wait_for(Reconciliation.objects.exists, stack=stack, what="the comparison")
    assert Reconciliation.objects.get().origin == Reconciliation.Origin.ADMIN
    assert AuditVerification.objects.get().verdict == AuditVerification.Verdict.INTACT
    # A task that succeeds leaves no line in the worker's log; one that fails does.
    tasks.reconcile_requested.delay("no-such-sink", False)
    wait_for(lambda: "raised unexpected" in stack.worker_logs(), stack=stack, what="the failure")
    assert "succeeded in" not in stack.worker_logs()
    if stack.broker_kind == "rabbitmq":  # both replicated, as the default queue is
        vhost = stack.broker_url.rsplit("/", 1)[1]
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "-p", vhost, "name", "type", "--formatter", "json"],
            check=True,
            capture_output=True,
            text=True,
        )
        types = {queue["name"]: queue["type"] for queue in json.loads(listed.stdout)}
        assert (types["celery"], types["maintenance"]) == ("quorum", "quorum")
