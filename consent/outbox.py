"""The transactional outbox: write deliveries with the change, drain them to sinks, recover.

Deliveries are written by consent.services in the same transaction as the event. After commit a
Celery task drains the sink; a worker claims due deliveries with SELECT … FOR UPDATE SKIP LOCKED,
so several workers share the work and a killed worker's claim is released by PostgreSQL.
"""

import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from accounts.models import User
from consent.models import ConsentEvent, ConsentState, Delivery
from consent.sinks import configured_sinks, sink_named
from consent.sinks.base import Change, Outcome, Result, Sink

logger = logging.getLogger(__name__)

PROPAGATED_KINDS = frozenset(
    {
        ConsentEvent.Kind.DECISION,
        ConsentEvent.Kind.PLAN_CHANGED,
        ConsentEvent.Kind.ACCOUNT_DELETED,
        ConsentEvent.Kind.CHOICE_EXPIRED,
    }
)
State = Delivery.State


def change_for(event: ConsentEvent, *, delivery_id: int = 0) -> Change:
    """Return what sinks must hold after this event: a fact about a pseudonymous subject."""
    deleted = event.kind == ConsentEvent.Kind.ACCOUNT_DELETED
    allowed = (
        event.after == ConsentState.ALLOWED and event.plan in User.CONSUMER_PLANS and not deleted
    )
    policy = event.policy
    decided = event.after != ConsentState.UNDECIDED and not deleted
    return Change(
        delivery_id=delivery_id,
        message_id=f"msg_{event.hash[:32]}",
        subject_id=event.subject_id,
        version=event.number,
        allowed=allowed,
        deleted=deleted,
        plan=event.plan,
        policy_version=policy.version if policy else None,
        retention_days=policy.retention_days(allowed=allowed) if policy and decided else None,
        changed_at=event.created_at,
    )


def outbox_deliveries(event: ConsentEvent) -> list[Delivery]:
    """Return the deliveries a saved event needs: one per configured sink, if it changes them."""
    if event.kind not in PROPAGATED_KINDS:
        return []
    return [
        Delivery(
            event=event,
            sink=sink,
            subject_id=event.subject_id,
            version=event.number,
            created_at=event.created_at,
            next_attempt_at=event.created_at,
        )
        for sink in settings.CONSENT_SINKS
    ]


def _drain_key(sink: str | None) -> str:
    return f"consent:drain-queued:{sink or '*'}"


def schedule_drain(sink: str | None = None, *, force: bool = False) -> None:
    """Queue a drain of one sink (or of all) unless one is queued; the sweeper catches failures.

    A request queues at most one task, whatever the number of sinks: the worker fans it out.
    """
    key = _drain_key(sink)
    if not force and not cache.add(key, 1, timeout=settings.CONSENT_DRAIN_DEBOUNCE):
        return
    if not _queue_drain(sink):
        cache.delete(key)


# A process that commits changes often queues its drain a little later and lets that one task
# carry everything it commits meanwhile: the task cannot start before its countdown ends, so it
# finds those changes. Until then the process asks neither Redis nor the broker.
BUSY_SECONDS = 1.0  # a drain asked for less than this long ago: the process is busy
CLOCK_MARGIN = 0.05  # seconds by which a worker's clock may run ahead of this one's
_drain_asked_at = float("-inf")  # time.monotonic() of the process's last request for a drain
_drain_covers_until = float("-inf")  # its queued drain starts after this monotonic moment


def schedule_drain_after_commit() -> None:
    """Have the change this process just committed drained, most often without a round trip.

    Quiet, a drain of every sink is queued at once, unless one is queued already. Busy, one is
    queued CONSENT_DRAIN_BATCH seconds ahead, once per such period; changes committed before it
    starts need nothing more.
    """
    global _drain_asked_at, _drain_covers_until
    now = time.monotonic()
    if now < _drain_covers_until:
        return
    busy, _drain_asked_at = now - _drain_asked_at < BUSY_SECONDS, now
    if not busy:
        schedule_drain()
        return
    countdown = settings.CONSENT_DRAIN_BATCH
    if _queue_drain(None, countdown=countdown):
        _drain_covers_until = now + countdown - CLOCK_MARGIN


def _queue_drain(sink: str | None, *, countdown: float = 0) -> bool:
    from consent.tasks import deliver

    try:
        deliver.apply_async((sink,), countdown=countdown)
    except Exception:  # the broker is down: the change is safe in the outbox
        logger.warning("Could not queue a drain of %s; the sweeper will retry.", sink or "sinks")
        return False
    return True


def drain_started(sink: str | None) -> None:
    cache.delete(_drain_key(sink))


def backoff(attempts: int) -> timedelta:
    """Return the wait before attempt n+1: exponential, capped, with jitter."""
    ceiling = min(
        settings.CONSENT_RETRY_MAX_SECONDS, settings.CONSENT_RETRY_BASE_SECONDS * 2**attempts
    )
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter only


def _claim(sink: Sink, size: int, now: datetime) -> list[Delivery]:
    return list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(sink=sink.name, state=State.PENDING, next_attempt_at__lte=now)
        .select_related("event__policy")
        .order_by("next_attempt_at", "id")[:size]
    )


def _supersede(sink: Sink, batch: list[Delivery], now: datetime) -> list[Delivery]:
    """Keep the newest claimed delivery per subject; mark every older one superseded."""
    newest: dict = {}
    for delivery in batch:
        held = newest.get(delivery.subject_id)
        if held is None or delivery.version > held.version:
            newest[delivery.subject_id] = delivery
    applied = dict(
        Delivery.objects.filter(sink=sink.name, state=State.APPLIED, subject_id__in=list(newest))
        .values("subject_id")
        .annotate(version=Max("version"))
        .values_list("subject_id", "version")
    )
    keep = [d for d in newest.values() if d.version > applied.get(d.subject_id, 0)]
    keep_ids = {d.pk for d in keep}
    older = [d.pk for d in batch if d.pk not in keep_ids]
    versions = {d.subject_id: d.version for d in keep}
    waiting = (
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(sink=sink.name, state=State.PENDING, subject_id__in=list(versions))
        .exclude(pk__in=[d.pk for d in batch])
        .values_list("pk", "subject_id", "version")
    )
    older += [pk for pk, subject_id, version in waiting if version < versions[subject_id]]
    Delivery.objects.filter(pk__in=older).update(state=State.SUPERSEDED, last_attempt_at=now)
    return keep


def _record(deliveries: list[Delivery], results: dict[int, Result], now: datetime) -> None:
    applied = [d.pk for d in deliveries if results[d.pk].outcome == Outcome.APPLIED]
    Delivery.objects.filter(pk__in=applied).update(
        state=State.APPLIED,
        applied_at=now,
        last_attempt_at=now,
        attempts=F("attempts") + 1,
        last_error="",
    )
    failed = [d for d in deliveries if results[d.pk].outcome != Outcome.APPLIED]
    for delivery in failed:
        result = results[delivery.pk]
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_error = result.error[:2000]
        out_of_budget = delivery.attempts >= settings.CONSENT_RETRY_MAX_ATTEMPTS
        if result.outcome == Outcome.PERMANENT or out_of_budget:
            delivery.state = State.DEAD
            logger.error("Delivery %s to %s is dead: %s", delivery.pk, delivery.sink, result.error)
        else:
            wait = backoff(delivery.attempts)
            if result.retry_after is not None:
                wait = max(wait, timedelta(seconds=result.retry_after))
            delivery.next_attempt_at = now + wait
    Delivery.objects.bulk_update(
        failed, ["attempts", "last_attempt_at", "last_error", "state", "next_attempt_at"]
    )


def _drain_batch(sink: Sink, size: int) -> int:
    with transaction.atomic():
        now = timezone.now()
        batch = _claim(sink, size, now)
        if not batch:
            return 0
        keep = _supersede(sink, batch, now)
        changes = [change_for(d.event, delivery_id=d.pk) for d in keep]
        try:
            results = sink.apply(changes) if changes else {}
        except Exception as error:
            logger.warning("Sink %s failed a batch of %d: %s", sink.name, len(changes), error)
            failure = Result(Outcome.RETRY, f"{type(error).__name__}: {error}")
            results = {d.pk: failure for d in keep}
        _record(keep, results, timezone.now())
        return len(batch)


def outbox_drain(sink_name: str, *, time_budget: float | None = None) -> int:
    """Apply due deliveries of one sink in batches until none are left or time runs out."""
    sink = sink_named(sink_name)
    size = settings.CONSENT_DELIVERY_BATCH_SIZE
    deadline = time.monotonic() + (time_budget or settings.CONSENT_DRAIN_TIME_BUDGET)
    drained = 0
    while True:
        claimed = _drain_batch(sink, size)
        drained += claimed
        if claimed < size:
            return drained
        # A full batch means a backlog: invite an idle worker to share it (SKIP LOCKED).
        schedule_drain(sink_name)
        if time.monotonic() > deadline:
            schedule_drain(sink_name, force=True)
            return drained


def outbox_sweep(*, now: datetime | None = None) -> list[str]:
    """Queue a drain for every sink with due deliveries (lost tasks, retries); return those."""
    now = now or timezone.now()
    due = (
        Delivery.objects.filter(state=State.PENDING, next_attempt_at__lte=now)
        .values_list("sink", flat=True)
        .distinct()
    )
    sinks = [sink for sink in due if sink in configured_sinks()]
    for sink in sinks:
        schedule_drain(sink, force=True)
    return sinks


def delivery_retry(deliveries: Iterable[Delivery]) -> int:
    """Give dead deliveries a fresh budget and queue them; return how many were revived."""
    ids = [d.pk for d in deliveries]
    with transaction.atomic():
        revived = list(
            Delivery.objects.select_for_update()
            .filter(pk__in=ids, state=State.DEAD)
            .values_list("sink", flat=True)
        )
        Delivery.objects.filter(pk__in=ids, state=State.DEAD).update(
            state=State.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        for sink in set(revived):
            transaction.on_commit(partial(schedule_drain, sink, force=True))
    return len(revived)


def delivery_retry_now(deliveries: Iterable[Delivery]) -> int:
    """Bring failing deliveries' next attempt forward to now and queue them; return how many."""
    ids = [d.pk for d in deliveries]
    with transaction.atomic():
        failing = Delivery.objects.select_for_update().filter(
            pk__in=ids, state=State.PENDING, attempts__gt=0
        )
        sinks = set(failing.values_list("sink", flat=True))
        hurried = failing.update(next_attempt_at=timezone.now())
        for sink in sinks:
            transaction.on_commit(partial(schedule_drain, sink, force=True))
    return hurried
