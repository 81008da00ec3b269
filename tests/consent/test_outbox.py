"""The outbox in one process: what is written with a change, and how a drain records outcomes."""

import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from consent import services
from consent.models import ConsentEvent, Delivery, EligibilityRecord
from consent.outbox import (
    DELIVER_TASK,
    backoff,
    drain_started,
    outbox_drain,
    outbox_forget,
    outbox_prune,
    outbox_sweep,
)
from consent.services import Channel
from consent.tasks import deliver
from tests.factories import UserFactory
from tests.support.celery import celery_broker

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])
State = Delivery.State


def test_a_change_writes_one_delivery_per_sink_in_its_transaction(policy, consumer, two_sinks):
    event = services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    deliveries = Delivery.objects.filter(event=event)
    assert sorted(deliveries.values_list("sink", flat=True)) == ["warehouse", "webhook"]
    assert all(d.event_number == 1 and d.state == State.PENDING for d in deliveries)


def test_a_rolled_back_change_leaves_no_delivery(policy, consumer, two_sinks):
    def change_then_fail() -> None:
        with transaction.atomic():
            services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
            raise RuntimeError("the request failed after the change")

    with pytest.raises(RuntimeError):
        change_then_fail()

    assert not Delivery.objects.exists()
    assert not ConsentEvent.objects.exists()


def test_no_ops_notices_and_deferrals_send_nothing(policy, consumer, two_sinks):
    services.notice_record_served(user=consumer)
    services.consent_defer(user=consumer)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    assert Delivery.objects.count() == 2  # the one real change, to two sinks


def test_a_drain_applies_only_the_newest_version_and_supersedes_the_rest(
    policy, consumer, two_sinks, webhook
):
    for allowed in (True, False, True):
        services.consent_change(user=consumer, allowed=allowed, channel=Channel.SETTINGS)

    outbox_drain("warehouse")
    outbox_drain("webhook")

    states = sorted(Delivery.objects.filter(sink="webhook").values_list("event_number", "state"))
    assert states == [(1, "superseded"), (2, "superseded"), (3, "applied")]
    record = EligibilityRecord.objects.get(subject_id=consumer.subject_id)
    assert (record.version, record.allowed) == (3, True)
    assert [r.version for r in webhook.received] == [3]


def test_a_503_is_retried_later_with_backoff(policy, consumer, two_sinks, webhook, caplog):
    webhook.status = 503
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    outbox_drain("webhook")

    (logged,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert logged.getMessage().startswith(
        "webhook did not apply 1 of 1 changes, to be tried again: HTTP 503"
    )
    assert logged.sink == "webhook"

    delivery = Delivery.objects.get(sink="webhook")
    assert delivery.state == State.PENDING
    assert delivery.attempts == 1
    assert "HTTP 503" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now()
    assert outbox_drain("webhook") == 0  # not due yet


def test_a_429_waits_as_long_as_retry_after_says(policy, consumer, two_sinks, webhook):
    webhook.status, webhook.retry_after = 429, "120"
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    outbox_drain("webhook")

    delivery = Delivery.objects.get(sink="webhook")
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=110)


def test_other_4xx_are_dead_after_one_attempt(policy, consumer, two_sinks, webhook, caplog):
    webhook.status = 410
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    outbox_drain("webhook")

    delivery = Delivery.objects.get(sink="webhook")
    assert (delivery.state, delivery.attempts) == (State.DEAD, 1)
    (logged,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert (logged.sink, logged.subject) == ("webhook", str(consumer.subject_id))
    assert "is dead: HTTP 410" in logged.getMessage()


def test_a_delivery_dies_when_its_retry_budget_is_spent(
    policy, consumer, two_sinks, webhook, settings
):
    settings.CONSENT_RETRY_MAX_ATTEMPTS = 2
    webhook.status = 500
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    outbox_drain("webhook")
    Delivery.objects.update(next_attempt_at=timezone.now())
    outbox_drain("webhook")

    delivery = Delivery.objects.get(sink="webhook")
    assert (delivery.state, delivery.attempts) == (State.DEAD, 2)


def test_a_slow_receiver_gets_what_a_batch_has_time_for_and_the_rest_waits_untouched(
    policy, two_sinks, webhook, settings, caplog
):
    settings.CONSENT_SINKS["webhook"]["OPTIONS"] |= {"concurrency": 2, "batch_seconds": 0.7}
    webhook.delay = 0.5
    for user in UserFactory.create_batch(10):
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)

    outbox_drain("webhook")

    deliveries = Delivery.objects.filter(sink="webhook")
    applied = deliveries.filter(state=State.APPLIED)
    waiting = deliveries.filter(state=State.PENDING)
    assert 1 <= applied.count() <= 4 and applied.count() == len(webhook.received)
    assert waiting.count() == 10 - applied.count()
    assert {(d.attempts, d.last_error) for d in waiting} == {(0, "")}
    assert all(d.next_attempt_at <= timezone.now() for d in waiting)  # due again at once
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]

    webhook.delay = 0
    outbox_drain("webhook")
    assert deliveries.filter(state=State.APPLIED).count() == 10


def test_a_subject_who_keeps_changing_keeps_its_place_in_a_backlog(
    policy, two_sinks, webhook, settings
):
    settings.CONSENT_SINKS["webhook"]["OPTIONS"] |= {"concurrency": 1, "batch_seconds": 0.2}
    webhook.delay = 0.5
    first, hot, *others = UserFactory.create_batch(5)
    services.consent_change(user=first, allowed=True, channel=Channel.SETTINGS)
    services.consent_change(user=hot, allowed=True, channel=Channel.SETTINGS)
    for user in others:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    services.consent_change(user=hot, allowed=False, channel=Channel.SETTINGS)
    in_line = Delivery.objects.get(sink="webhook", subject_id=hot.subject_id, event_number=1)

    outbox_drain("webhook")  # time for one send: the first subject's
    newer = Delivery.objects.get(sink="webhook", subject_id=hot.subject_id, event_number=2)
    outbox_drain("webhook")  # and the next in line

    assert newer.next_attempt_at == in_line.next_attempt_at
    assert [r.subject for r in webhook.received] == [str(first.subject_id), str(hot.subject_id)]


def test_backoff_grows_and_is_capped(settings):
    settings.CONSENT_RETRY_BASE_SECONDS, settings.CONSENT_RETRY_MAX_SECONDS = 1, 60
    waits = [backoff(n).total_seconds() for n in range(1, 12)]

    assert 1 <= waits[0] <= 2
    assert all(w <= 60 for w in waits)
    assert waits[-1] >= 30


def test_the_sweeper_names_the_sinks_with_due_work(policy, consumer, two_sinks):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    Delivery.objects.filter(sink="webhook").update(state=State.APPLIED)

    assert outbox_sweep() == ["warehouse"]


def test_deleting_an_account_tells_every_sink_to_drop_the_user(
    policy, consumer, two_sinks, webhook
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    subject_id = consumer.subject_id
    services.account_delete(user=consumer, channel=Channel.SETTINGS)

    outbox_drain("warehouse")
    outbox_drain("webhook")

    record = EligibilityRecord.objects.get(subject_id=subject_id)
    assert (record.allowed, record.deleted, record.version) == (False, True, 2)
    assert [r.type for r in webhook.received] == ["consent.training.deleted.v1"]


@pytest.fixture
def broker(private_redis, monkeypatch):
    """An empty Redis broker of the test's own, and no drain marked as queued in the cache."""
    cache.clear()
    with celery_broker(private_redis, monkeypatch):
        yield redis.Redis.from_url(private_redis)


def queued_drains(broker) -> list[str]:
    """Return the sinks of the drain tasks waiting in the broker, oldest first."""
    messages = [json.loads(raw)["headers"] for raw in reversed(broker.lrange("celery", 0, -1))]
    assert {m["task"] for m in messages} <= {DELIVER_TASK}
    return [m["argsrepr"].strip("(),'") for m in messages]


def test_a_commit_queues_one_drain_per_sink_once_until_one_starts(
    policy, consumer, two_sinks, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    assert queued_drains(broker) == ["warehouse", "webhook"]

    with django_capture_on_commit_callbacks(execute=True):
        services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    assert queued_drains(broker) == ["warehouse", "webhook"]  # they will carry this one too

    drain_started("webhook")
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    assert queued_drains(broker) == ["warehouse", "webhook", "webhook"]


def test_a_sink_with_a_queue_of_its_own_is_drained_there(
    policy, consumer, two_sinks, broker, settings, django_capture_on_commit_callbacks
):
    settings.CONSENT_SINKS["webhook"]["QUEUE"] = "webhook"
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    assert queued_drains(broker) == ["warehouse"]
    (queued,) = broker.lrange("webhook", 0, -1)
    assert json.loads(queued)["headers"]["argsrepr"] == "('webhook',)"


def test_the_queued_task_is_the_deliver_task():
    assert deliver.name == DELIVER_TASK


def test_a_change_that_sends_nothing_queues_nothing(
    policy, consumer, two_sinks, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.notice_record_served(user=consumer)

    assert queued_drains(broker) == []


def test_a_commit_with_the_broker_down_is_kept_for_the_sweep(
    policy, consumer, two_sinks, monkeypatch, django_capture_on_commit_callbacks
):
    cache.clear()
    with (
        celery_broker("redis://127.0.0.1:1/0", monkeypatch),
        django_capture_on_commit_callbacks(execute=True),
    ):
        event = services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    assert Delivery.objects.filter(event=event, state=State.PENDING).count() == 2
    assert sorted(outbox_sweep()) == ["warehouse", "webhook"]


def test_a_stalled_broker_is_waited_for_once_not_once_a_sink_nor_once_a_commit(
    policy, consumer, two_sinks, broker, django_capture_on_commit_callbacks, caplog
):
    url = broker.connection_pool.connection_kwargs
    with frozen(f"redis://127.0.0.1:{url['port']}/0"):
        for allowed in (True, False):
            with django_capture_on_commit_callbacks(execute=True):
                services.consent_change(user=consumer, allowed=allowed, channel=Channel.SETTINGS)

    (refused,) = [r for r in caplog.records if r.getMessage().startswith("Could not queue")]
    assert "warehouse" in refused.getMessage()
    assert sorted(outbox_sweep()) == ["warehouse", "webhook"]  # what the sweep queues meanwhile


@pytest.fixture
def redis_cache(redis_servers, settings):
    """A cache on a Redis server of the test's own, configured as the app's."""
    url = redis_servers()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": django_settings.CACHES["default"]["OPTIONS"],
        }
    }
    return url


@contextmanager
def frozen(url: str):
    """Stop the Redis server from answering (SIGSTOP), as a stalled one does."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    info = subprocess.run(
        ["redis-cli", "-p", port, "info", "server"], capture_output=True, text=True
    )
    pid = int(
        next(line for line in info.stdout.splitlines() if line.startswith("process_id:")).split(
            ":"
        )[1]
    )
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_stalled_cache_neither_fails_nor_holds_a_committed_toggle(
    policy, consumer, client, broker, redis_cache, django_capture_on_commit_callbacks
):
    client.force_login(consumer)

    def toggle(value: str):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                "/settings/privacy/",
                {"policy_version": 1, "allowed": ["off", value]},
                headers={"HX-Request": "true"},
            )

    assert toggle("on").status_code == 200  # and the app warmed up
    with frozen(redis_cache):
        began = time.monotonic()
        response = toggle("off")
        took = time.monotonic() - began

    assert response.status_code == 200
    assert took < 1.0
    assert Delivery.objects.filter(subject_id=consumer.subject_id, event_number=2).exists()
    assert queued_drains(broker).count("warehouse") == 2  # queued all the same


def test_pruning_keeps_each_subjects_newest_delivery_and_the_undelivered(policy, two_sinks):
    users = UserFactory.create_batch(2, plan="pro")
    for allowed in (True, False, True):
        for user in users:
            services.consent_change(user=user, allowed=allowed, channel=Channel.SETTINGS)
    Delivery.objects.update(state=State.APPLIED, created_at=timezone.now() - timedelta(days=8))
    dead = Delivery.objects.filter(subject_id=users[0].subject_id, event_number=1, sink="webhook")
    dead.update(state=State.DEAD)
    kept = set(Delivery.objects.filter(event_number=3).values_list("pk", flat=True))
    kept |= set(dead.values_list("pk", flat=True))

    assert outbox_prune() == 2 * 2 * 2 - 1  # two older changes, two users, two sinks; one dead

    assert set(Delivery.objects.values_list("pk", flat=True)) == kept
    assert outbox_prune() == 0


def test_recent_deliveries_are_kept_whatever_came_after(policy, consumer, two_sinks):
    for allowed in (True, False):
        services.consent_change(user=consumer, allowed=allowed, channel=Channel.SETTINGS)
    Delivery.objects.update(state=State.APPLIED)

    assert outbox_prune() == 0


def test_a_sink_taken_out_of_the_settings_has_its_deliveries_forgotten(
    policy, consumer, two_sinks, webhook, settings, client
):
    webhook.status = 503  # its deliveries wait, and would page for ever once it is gone
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("warehouse")
    outbox_drain("webhook")
    with pytest.raises(CommandError, match="webhook is still configured"):
        call_command("outbox_forget", "--sink", "webhook")

    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    out = StringIO()
    call_command("outbox_forget", "--sink", "webhook", stdout=out)

    assert out.getvalue() == "Deleted 1 deliveries to webhook.\n"
    assert list(Delivery.objects.values_list("sink", "state")) == [("warehouse", State.APPLIED)]
    scraped = client.get("/metrics").content.decode()
    assert 'consent_outbox_pending{sink="webhook"}' not in scraped  # no backlog left to page on
    assert 'consent_outbox_oldest_pending_age_seconds{sink="webhook"}' not in scraped


def test_forgetting_a_sink_never_known_is_refused_and_names_the_known_ones(
    policy, consumer, two_sinks, settings
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}

    with pytest.raises(CommandError, match=r"Unknown sink 'nosuch'.*: warehouse, webhook\.$"):
        call_command("outbox_forget", "--sink", "nosuch")

    assert Delivery.objects.filter(state=State.PENDING).count() == 2


def test_what_a_removed_sink_applied_stays_on_record(policy, consumer, two_sinks, settings):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("webhook")
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}

    assert outbox_forget("webhook") == 0
    assert Delivery.objects.get(sink="webhook").state == State.APPLIED
