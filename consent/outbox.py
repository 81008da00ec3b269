"""The transactional outbox: deliveries written with the change, drained to sinks, recovered."""

import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef
from django.utils import timezone

from config.log import request_id
from consent.changes import PROPAGATED_KINDS, change_for
from consent.eligibility import subjects_intervals
from consent.exceptions import ConsentError
from consent.metrics import DELIVERIES_APPLIED, DELIVERIES_FAILED
from consent.models import ConsentEvent, Delivery
from consent.sinks import configured_sinks, sink_named
from consent.sinks.base import Outcome, Result, Sink

logger = logging.getLogger(__name__)

# While another drain sends an older change of its subject, a change waits so long at a time,
# and at most so long since it was made (a drain lasts 25 s at most: budget, batch, timeout).
BEHIND_SENDING = timedelta(seconds=1)
ORDER_WAIT = timedelta(seconds=60)
# Queued by name: the task module imports this one.
DELIVER_TASK = "consent.tasks.deliver"
State = Delivery.State


def deliveries_for(event: ConsentEvent) -> list[Delivery]:
    """Return the deliveries a saved event needs: one per configured sink, if it changes them."""
    if event.kind not in PROPAGATED_KINDS:
        return []
    return [
        Delivery(
            event=event,
            sink=sink,
            subject_id=event.subject_id,
            event_number=event.number,
            created_at=event.created_at,
            next_attempt_at=event.created_at,
            request_id=request_id(),
        )
        for sink in settings.CONSENT_SINKS
    ]


def _queued_key(sink: str) -> str:
    return f"consent:drain-queued:{sink}"


def drain_queue(sink: str, *, countdown: float = 0) -> bool:
    """Queue a drain of the sink to start after countdown seconds; tell if the broker took it."""
    # A sink may have a queue of its own, for workers of its own: a slow one holds no other.
    config: dict[str, Any] = settings.CONSENT_SINKS.get(sink, {})
    queue = config.get("QUEUE") or None
    try:
        current_app.send_task(DELIVER_TASK, args=(sink,), countdown=countdown, queue=queue)
    except Exception as error:  # the broker is down: the change is safe in the outbox
        logger.warning("Could not queue a drain of %s (%r); the sweep will.", sink, error)
        return False
    return True


def drain_soon(sinks: Iterable[str] | None = None, *, delay: float | None = None) -> None:
    """Queue a drain of each sink (every configured one by default) unless one waits already."""
    # The drain carries every change committed until it starts: under load a sink gets a few
    # drains a second, not one per change.
    delay = settings.CONSENT_DRAIN_DELAY if delay is None else delay
    sinks = list(settings.CONSENT_SINKS if sinks is None else sinks)
    try:
        due = [s for s in sinks if cache.add(_queued_key(s), 1, settings.CONSENT_DRAIN_DEBOUNCE)]
    except Exception:  # a cache that does not answer costs one timeout
        logger.warning("The cache did not answer: drains queued without it.")
        due = sinks
    # Never fails its caller, which has committed: what it cannot queue, the sweep does.
    for sink in due:
        if not drain_queue(sink, countdown=delay):
            # A broker that did not take one would make each of the others, and each commit
            # after, wait as long (a stalled one, its timeout): their marks stay, so that none
            # asks it again until they expire; the sweep queues what is due meanwhile.
            return


def drain_started(sink: str) -> None:
    """Let the next commit queue a drain again: this one may start before that commit."""
    cache.delete(_queued_key(sink))


def backoff(attempts: int) -> timedelta:
    """Return the wait before attempt n+1: exponential, capped, with jitter."""
    ceiling = min(
        settings.CONSENT_RETRY_MAX_SECONDS, settings.CONSENT_RETRY_BASE_SECONDS * 2**attempts
    )
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter only


def _claim(sink: Sink, size: int, now: datetime) -> list[Delivery]:
    # SKIP LOCKED: several workers share the work, and PostgreSQL releases a killed worker's claim.
    return list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(sink=sink.name, state=State.PENDING, next_attempt_at__lte=now)
        .select_related("event__policy")
        .order_by("next_attempt_at", "id")[:size]
    )


def _supersede(sink: Sink, batch: list[Delivery], now: datetime) -> list[Delivery]:
    """Keep each subject's newest claimed delivery unless held back; supersede the older ones."""
    newest: dict = {}
    first_due: dict = {}
    for delivery in batch:
        subject, due = delivery.subject_id, delivery.next_attempt_at
        held = newest.get(subject)
        if held is None or delivery.event_number > held.event_number:
            newest[subject] = delivery
        first_due[subject] = min(first_due.get(subject, due), due)
    applied = dict(
        Delivery.objects.filter(sink=sink.name, state=State.APPLIED, subject_id__in=list(newest))
        .values("subject_id")
        .annotate(newest_applied=Max("event_number"))
        .values_list("subject_id", "newest_applied")
    )
    keep = [d for d in newest.values() if d.event_number > applied.get(d.subject_id, 0)]
    # The newest takes the place in line of the oldest it supersedes: a subject who keeps
    # changing while a batch cannot send everything is not sent to the back each time.
    moved = [d for d in keep if first_due[d.subject_id] < d.next_attempt_at]
    for delivery in moved:
        delivery.next_attempt_at = first_due[delivery.subject_id]
    Delivery.objects.bulk_update(moved, ["next_attempt_at"])
    keep_ids = {d.pk for d in keep}
    older = [d.pk for d in batch if d.pk not in keep_ids]
    numbers = {d.subject_id: d.event_number for d in keep}
    others = (
        Delivery.objects.filter(sink=sink.name, state=State.PENDING, subject_id__in=list(numbers))
        .exclude(pk__in=[d.pk for d in batch])
        .values_list("pk", "subject_id", "event_number")
    )
    waiting = [(pk, subject) for pk, subject, number in others if number < numbers[subject]]
    if waiting:
        free = set(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[pk for pk, _ in waiting])
            .values_list("pk", flat=True)
        )
        older += [pk for pk, _ in waiting if pk in free]
        keep = _behind_sending(sink, keep, {s for pk, s in waiting if pk not in free}, now)
    Delivery.objects.filter(pk__in=older).update(state=State.SUPERSEDED, last_attempt_at=now)
    return keep


def _behind_sending(
    sink: Sink, keep: list[Delivery], sending: set[UUID], now: datetime
) -> list[Delivery]:
    """Hold back the changes of subjects an older change of whom another drain is sending."""
    # So that a receiver that keeps the last message it got (a webhook's) never ends on the
    # older one; a sink that keeps the newest version itself needs no order. Never for long: a
    # drain that hangs keeps its lock, and a withdrawal must not wait for it.
    if sink.keeps_newest or not sending:
        return keep
    held = {d.pk for d in keep if d.subject_id in sending and d.created_at > now - ORDER_WAIT}
    if held:
        Delivery.objects.filter(pk__in=held).update(next_attempt_at=now + BEHIND_SENDING)
        transaction.on_commit(
            partial(drain_soon, [sink.name], delay=BEHIND_SENDING.total_seconds())
        )
    return [d for d in keep if d.pk not in held]


def _record(
    sink: Sink, deliveries: list[Delivery], results: dict[int, Result], now: datetime
) -> None:
    applied = [d.pk for d in deliveries if results[d.pk].outcome == Outcome.APPLIED]
    Delivery.objects.filter(pk__in=applied).update(
        state=State.APPLIED,
        applied_at=now,
        last_attempt_at=now,
        attempts=F("attempts") + 1,
        last_error="",
    )
    failed = [
        d for d in deliveries if results[d.pk].outcome not in (Outcome.APPLIED, Outcome.UNSENT)
    ]
    for delivery in failed:
        result = results[delivery.pk]
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_error = result.error[:2000]
        out_of_budget = delivery.attempts >= settings.CONSENT_RETRY_MAX_ATTEMPTS
        if result.outcome == Outcome.PERMANENT or out_of_budget:
            delivery.state = State.DEAD
            logger.error(
                "Delivery %s to %s is dead: %s",
                delivery.pk,
                sink.name,
                result.error,
                extra={"sink": sink.name, "subject": str(delivery.subject_id)},
            )
        else:
            wait = backoff(delivery.attempts)
            if result.retry_after is not None:
                wait = max(wait, timedelta(seconds=result.retry_after))
            delivery.next_attempt_at = now + wait
    if any(result.outcome == Outcome.UNSENT for result in results.values()):
        transaction.on_commit(partial(drain_soon, [sink.name], delay=0))  # their turn now
    retrying = [d for d in failed if d.state != State.DEAD]
    if retrying:  # one line a batch, with the first reason: the admin lists every one
        logger.warning(
            "%s did not apply %d of %d changes, to be tried again: %s",
            sink.name,
            len(retrying),
            len(deliveries),
            retrying[0].last_error,
            extra={"sink": sink.name},
        )
    Delivery.objects.bulk_update(
        failed, ["attempts", "last_attempt_at", "last_error", "state", "next_attempt_at"]
    )
    if deliveries:
        transaction.on_commit(partial(_report, sink, deliveries, applied, failed))


def _report(
    sink: Sink, deliveries: list[Delivery], applied: list[int], failed: list[Delivery]
) -> None:
    """Count what a recorded batch did, and log it with the ids of the requests behind it."""
    DELIVERIES_APPLIED.labels(sink.name).inc(len(applied))
    for delivery in failed:
        DELIVERIES_FAILED.labels(
            sink.name, "dead" if delivery.state == State.DEAD else "retry"
        ).inc()
    logger.info(
        "%s applied %d of %d changes",
        sink.name,
        len(applied),
        len(deliveries),
        extra={"sink": sink.name, "request_ids": sorted({d.request_id for d in deliveries} - {""})},
    )


def _drain_batch(sink: Sink, size: int) -> int:
    with transaction.atomic():
        now = timezone.now()
        batch = _claim(sink, size, now)
        if not batch:
            return 0
        keep = _supersede(sink, batch, now)
        history = (
            subjects_intervals({d.subject_id: d.event_number for d in keep})
            if sink.keeps_history
            else {}
        )
        changes = [
            change_for(d.event, delivery_id=d.pk, intervals=history.get(d.subject_id, ()))
            for d in keep
        ]
        try:
            results = sink.apply(changes) if changes else {}
        except Exception as error:  # logged as each failed delivery is (_record)
            failure = Result(Outcome.RETRY, f"{type(error).__name__}: {error}")
            results = {d.pk: failure for d in keep}
        _record(sink, keep, results, timezone.now())
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
        # A full batch means a backlog: an idle worker may share it (SKIP LOCKED), and a drain
        # waits to carry on when this one's time is up.
        drain_soon([sink_name], delay=0)
        if time.monotonic() > deadline:
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
        drain_queue(sink)
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
            transaction.on_commit(partial(drain_queue, sink))
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
            transaction.on_commit(partial(drain_queue, sink))
    return hurried


def outbox_prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Delete the applied and superseded deliveries past their retention; return how many went."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.CONSENT_DELIVERY_RETENTION_DAYS)
    # Each subject's newest in each sink stays: it says how far their latest change reached.
    # Pending and dead ones stay until someone acts on them.
    newer = Delivery.objects.filter(
        sink=OuterRef("sink"),
        subject_id=OuterRef("subject_id"),
        event_number__gt=OuterRef("event_number"),
    )
    prunable = Delivery.objects.filter(
        state__in=[State.APPLIED, State.SUPERSEDED], created_at__lt=cutoff
    ).filter(Exists(newer))
    pruned = 0
    while ids := list(prunable.values_list("pk", flat=True)[:batch]):
        pruned += Delivery.objects.filter(pk__in=ids).delete()[0]
    return pruned


def outbox_forget(sink: str, *, batch: int = 10_000) -> int:
    """Delete the pending and dead deliveries to a sink no longer configured; return how many."""
    if sink in settings.CONSENT_SINKS:
        raise ConsentError(f"{sink} is still configured: take it out of the settings first.")
    # A mistyped name would otherwise say "deleted 0", as if the backlog were gone.
    if not Delivery.objects.filter(sink=sink).exists():
        known = set(settings.CONSENT_SINKS)
        known |= set(Delivery.objects.values_list("sink", flat=True).distinct())
        names = ", ".join(sorted(known)) or "none"
        raise ConsentError(
            f"Unknown sink {sink!r}: not configured, and no delivery names it; known: {names}."
        )
    # Nothing will ever apply them, and they would keep the backlog's alerts firing. What the sink
    # applied stays on record, pruned as any.
    forgotten = 0
    to_forget = Delivery.objects.filter(sink=sink, state__in=[State.PENDING, State.DEAD])
    while ids := list(to_forget.values_list("pk", flat=True)[:batch]):
        forgotten += Delivery.objects.filter(pk__in=ids).delete()[0]
    return forgotten
