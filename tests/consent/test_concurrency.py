"""Concurrent changes for one user, from real threads on their own PostgreSQL connections."""

import itertools
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from consent import services
from consent.audit import audit_first_break
from consent.exceptions import ConsentThrottled
from consent.models import ConsentEvent, Delivery, TrainingConsent
from consent.outbox import outbox_drain
from consent.services import Channel

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(target, arguments):
    barrier = threading.Barrier(len(arguments))
    errors = []

    def worker(argument):
        try:
            barrier.wait()
            target(argument)
        except Exception as error:  # a failure in a thread must fail the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(a,)) for a in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []


def test_two_concurrent_changes_both_land_in_order(policy, consumer):
    run_in_threads(
        lambda allowed: services.consent_change(
            user=User.objects.get(pk=consumer.pk), allowed=allowed, channel=Channel.SETTINGS
        ),
        [True, False],
    )

    events = list(ConsentEvent.objects.filter(subject_id=consumer.subject_id).order_by("number"))
    assert [e.number for e in events] == [1, 2]
    assert events[0].before == "undecided"
    assert events[1].before == events[0].after
    assert {e.after for e in events} == {"allowed", "declined"}
    assert TrainingConsent.objects.get(user=consumer).state == events[1].after


def test_many_concurrent_changes_number_without_gaps_and_chain(policy, consumer):
    def change(allowed: bool) -> None:
        for _ in range(5):
            services.consent_change(
                user=User.objects.get(pk=consumer.pk), allowed=allowed, channel=Channel.SETTINGS
            )
            allowed = not allowed

    run_in_threads(change, [i % 2 == 0 for i in range(8)])

    events = list(ConsentEvent.objects.filter(subject_id=consumer.subject_id).order_by("number"))
    assert [e.number for e in events] == list(range(1, len(events) + 1))
    assert len(events) >= 2
    assert all(later.before == earlier.after for earlier, later in itertools.pairwise(events))
    assert all(e.before != e.after for e in events)
    assert all(
        earlier.created_at <= later.created_at for earlier, later in itertools.pairwise(events)
    )
    consent = TrainingConsent.objects.get(user=consumer)
    assert (consent.head_number, consent.state) == (events[-1].number, events[-1].after)
    assert audit_first_break() is None


def test_concurrent_first_touches_create_one_state_row(policy, consumer):
    run_in_threads(
        lambda _: services.notice_record_served(user=User.objects.get(pk=consumer.pk)),
        range(6),
    )

    assert TrainingConsent.objects.filter(user=consumer).count() == 1
    assert ConsentEvent.objects.filter(subject_id=consumer.subject_id).count() == 1


def test_two_tabs_at_once_cannot_pass_the_rate(policy, consumer):
    services.notice_record_served(user=consumer)  # the state row exists: both may go unlocked
    refused = []

    def change(allowed: bool) -> None:
        try:
            services.consent_change(
                user=User.objects.get(pk=consumer.pk),
                allowed=allowed,
                channel=Channel.SETTINGS,
                rate=(1, 60),
            )
        except ConsentThrottled:
            refused.append(allowed)

    run_in_threads(change, [True, False])

    decisions = ConsentEvent.objects.filter(subject_id=consumer.subject_id, kind="decision")
    assert decisions.count() == 1
    assert len(refused) == 1
    assert TrainingConsent.objects.get(user=consumer).state == decisions.get().after


def test_a_newer_change_waits_while_another_drain_sends_an_older_one(
    policy, consumer, webhook, settings
):
    settings.CONSENT_SINKS = {
        "webhook": {
            "BACKEND": "consent.sinks.webhook.WebhookSink",
            "OPTIONS": {"url": webhook.url, "secrets": [webhook.secret]},
        }
    }
    webhook.delay = 3.0  # the second drain runs well within the first one's send
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    def drain() -> None:
        outbox_drain("webhook")
        connection.close()

    sending = threading.Thread(target=drain)
    sending.start()
    deadline = time.monotonic() + 10
    while not webhook.arrived and time.monotonic() < deadline:  # the first drain is sending
        time.sleep(0.01)

    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    outbox_drain("webhook")

    newer = Delivery.objects.get(event_number=2)
    assert (newer.state, newer.attempts) == (Delivery.State.PENDING, 0)
    sending.join(timeout=30)
    Delivery.objects.filter(pk=newer.pk).update(next_attempt_at=timezone.now())
    outbox_drain("webhook")
    assert [r.version for r in webhook.received] == [1, 2]
    assert set(Delivery.objects.values_list("state", flat=True)) == {Delivery.State.APPLIED}


@pytest.mark.django_db(transaction=True, databases=["default", "warehouse"])
def test_no_change_waits_long_behind_a_drain_that_hangs_nor_at_all_for_a_versioned_sink(
    policy, consumer, webhook, two_sinks
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    locked, release = threading.Event(), threading.Event()

    def hang() -> None:  # a drain whose worker hangs while it holds the older change
        with transaction.atomic():
            list(Delivery.objects.select_for_update().filter(event_number=1))
            locked.set()
            release.wait(timeout=30)
        connection.close()

    hung = threading.Thread(target=hang)
    hung.start()
    assert locked.wait(timeout=10)
    try:
        outbox_drain("warehouse")  # keeps the newest version itself: needs no order
        Delivery.objects.filter(sink="webhook", event_number=2).update(
            created_at=timezone.now() - timedelta(minutes=2)
        )
        outbox_drain("webhook")  # waited long enough behind the hung drain
    finally:
        release.set()
        hung.join(timeout=30)

    newer = Delivery.objects.filter(event_number=2)
    assert set(newer.values_list("state", flat=True)) == {Delivery.State.APPLIED}
    assert [r.version for r in webhook.received] == [2]
