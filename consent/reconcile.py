"""Compare each sink with the source of truth (the audit log) and repair the drift."""

import logging
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from uuid import UUID

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from consent.changes import PROPAGATED_KINDS, change_for
from consent.eligibility import subjects_intervals
from consent.metrics import RECONCILE_DRIFT
from consent.models import ConsentEvent, Delivery, Reconciliation
from consent.outbox import drain_queue
from consent.sinks import configured_sinks
from consent.sinks.base import Change, Entry, Sink, subject_batches

logger = logging.getLogger(__name__)

LOGGED = 20  # subjects of each kind named in the log when a comparison finds drift
RECONCILE_TASK = "consent.tasks.reconcile_requested"  # by name: tasks.py imports this module


class ReconcileFailed(Exception):
    """A sink could not be compared; the others were, and every comparison is recorded."""


@dataclass
class Drift:
    sink: str
    missing: list[UUID] = field(default_factory=list)
    stale: list[UUID] = field(default_factory=list)
    extra: list[UUID] = field(default_factory=list)
    in_flight: int = 0
    repaired: bool = False
    part: bool = False  # of a sweep, with a time budget
    stopped_after: UUID | None = None  # the part left the subjects after this one to the next
    error: str = ""  # why it stopped short: what is counted (and repaired) was found before

    @property
    def has_drift(self) -> bool:
        return bool(self.missing or self.stale or self.extra)

    @property
    def clean(self) -> bool:
        return not (self.has_drift or self.error)

    def subjects(self) -> dict[str, list[UUID]]:
        """Return the subjects found drifted, by kind: missing, stale, extra (kinds found only)."""
        found = {"missing": self.missing, "stale": self.stale, "extra": self.extra}
        return {kind: subjects for kind, subjects in found.items() if subjects}

    def __str__(self) -> str:
        if self.error:
            verdict = f"failed: {self.error}"
            if self.repaired:
                verdict += "; what it found is repaired"
        elif self.repaired:
            verdict = "repaired"
        else:
            verdict = "in sync" if self.clean else "drift"
        if self.stopped_after:
            verdict += f"; a part of a sweep, which goes on after subject {self.stopped_after}"
        elif self.part and not self.error:
            verdict += "; the last part of a sweep"
        return (
            f"{self.sink}: {len(self.missing)} missing, {len(self.stale)} stale, "
            f"{len(self.extra)} extra, {self.in_flight} in flight ({verdict})"
        )


def source_subjects(*, after: UUID | None = None) -> Iterator[list[UUID]]:
    """Yield every subject of the source of truth (after one, if given), in order, in batches."""
    return subject_batches(ConsentEvent.objects.filter(kind__in=PROPAGATED_KINDS), after=after)


def latest_events(subjects: list[UUID]) -> dict[UUID, ConsentEvent]:
    """Return each subject's latest propagated event."""
    events = ConsentEvent.objects.filter(
        kind__in=PROPAGATED_KINDS, subject_id__in=subjects
    ).select_related("policy")
    # One answer either way; PostgreSQL reads only each subject's latest, SQLite (the embedded
    # default, with few users) reads all of theirs in order, and the dict keeps the last.
    if connection.features.can_distinct_on_fields:
        events = events.order_by("subject_id", "-number").distinct("subject_id")
    else:
        events = events.order_by("subject_id", "number")
    return {event.subject_id: event for event in events}


def expected_changes(subjects: list[UUID]) -> dict[UUID, Change]:
    """Return what every sink must hold of these subjects: their latest propagated changes."""
    return {subject_id: change_for(event) for subject_id, event in latest_events(subjects).items()}


# Longer than a change's transaction takes to commit: a change made before the pending
# deliveries are read, but committed after, is left alone too.
SETTLING = timedelta(seconds=10)


def _in_flight(sink: str) -> set[UUID]:
    pending = Delivery.objects.filter(sink=sink, state=Delivery.State.PENDING)
    return set(pending.values_list("subject_id", flat=True))


@dataclass(frozen=True)
class Sweep:
    """Where a comparison starts, and when it stops to leave the rest to the next one."""

    after: UUID | None = None
    deadline: float | None = None  # time.monotonic()

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _compare_readable(sink: Sink, drift: Drift, repair: bool, sweep: Sweep) -> None:
    # A batch of subjects at a time, so that memory stays bounded however many there are.
    # What is on its way is not drift: the deliveries pending before the sink is read, and the
    # changes made since then (the reads take a while, and a change made meanwhile may reach
    # the sink after it was read). Then the sink, then the source: what the sink holds of
    # anyone else can only be as new as the source.
    in_flight = _in_flight(sink.name)
    since = timezone.now() - SETTLING
    for subjects in source_subjects(after=sweep.after):
        observed = sink.entries(subjects)
        expected = expected_changes(subjects)
        if sink.keeps_history:
            history = subjects_intervals({s: change.version for s, change in expected.items()})
            expected = {s: replace(change, intervals=history[s]) for s, change in expected.items()}
        missing, stale = [], []
        for subject_id, change in expected.items():
            if subject_id in in_flight or change.changed_at > since:
                drift.in_flight += 1
                continue
            held = observed.get(subject_id)
            if held is None or not held.version:  # not held, or only intervals left of it
                missing.append(subject_id)
            elif held != Entry.of(change):  # every field: retention, plan and terms too
                stale.append(subject_id)
        if repair and (missing or stale):
            drifted = [expected[subject_id] for subject_id in missing + stale]
            ceiling = {
                c.subject_id: max(c.version, getattr(observed.get(c.subject_id), "version", 0))
                for c in drifted
            }
            sink.repair(drifted, ceiling=ceiling, drop=[])
        drift.missing += missing  # counted once repaired, if asked: a failure may come between
        drift.stale += stale
        if sweep.spent():
            drift.stopped_after = subjects[-1]
            return
    # At the end of a sweep: what the sink holds of subjects the source never had (a subject
    # may come twice).
    seen: set[UUID] = set()
    for held_subjects in sink.subjects():
        known = set(
            ConsentEvent.objects.filter(kind__in=PROPAGATED_KINDS, subject_id__in=held_subjects)
            .order_by()
            .values_list("subject_id", flat=True)
            .distinct()
        )
        unknown = [s for s in held_subjects if s not in known and s not in seen]
        seen.update(unknown)
        if repair and unknown:
            sink.repair([], ceiling={}, drop=unknown)
        drift.extra += unknown


def _compare_by_deliveries(sink: Sink, drift: Drift, repair: bool, sweep: Sweep) -> None:
    """For a sink that cannot be read back, trust its delivery log: was the latest change sent?"""
    for subjects in source_subjects(after=sweep.after):
        latest = latest_events(subjects)
        deliveries = {
            d.event_id: d
            for d in Delivery.objects.filter(
                sink=sink.name, event_id__in=[event.pk for event in latest.values()]
            )
        }
        missing, stale, resend = [], [], []
        for subject_id, event in latest.items():
            delivery = deliveries.get(event.pk)
            if delivery is None:
                missing.append(subject_id)
            elif delivery.state == Delivery.State.DEAD:
                stale.append(subject_id)
            elif delivery.state == Delivery.State.PENDING:
                drift.in_flight += 1
                continue
            else:
                continue
            resend.append(event)
        if repair and resend:
            _deliver_again(sink, resend)
        drift.missing += missing
        drift.stale += stale
        if sweep.spent():
            drift.stopped_after = subjects[-1]
            break
    if repair and drift.has_drift:
        drain_queue(sink.name)


def _deliver_again(sink: Sink, events: list[ConsentEvent]) -> None:
    now = timezone.now()
    with transaction.atomic():
        for event in events:
            Delivery.objects.update_or_create(
                event_id=event.pk,
                sink=sink.name,
                defaults={"state": Delivery.State.PENDING, "attempts": 0, "next_attempt_at": now},
                create_defaults={
                    "subject_id": event.subject_id,
                    "event_number": event.number,
                    "next_attempt_at": now,
                },
            )


def reconcile(
    *,
    sink: str | None = None,
    repair: bool = False,
    budget: float | None = None,
    origin: Reconciliation.Origin = Reconciliation.Origin.COMMAND,
    requested_by_id: int | None = None,
) -> list[Drift]:
    """Report (and with repair, fix) missing, stale and extra entries of one sink or all."""
    sinks = configured_sinks()
    chosen = [sinks[sink]] if sink else list(sinks.values())
    report = []
    end = time.monotonic() + (budget or 0)
    for done, each in enumerate(chosen):
        drift = Drift(each.name, part=budget is not None)
        started_at = timezone.now()
        sweep = Sweep()
        if budget is not None:
            # A part of a sweep: it goes on after the subject where the last part stopped, and
            # stops once its equal share of the seconds left is spent (after one batch at
            # least), leaving the rest to the next.
            last = Reconciliation.objects.filter(sink=each.name, part=True, error="").first()
            share = (end - time.monotonic()) / (len(chosen) - done)
            after = last.stopped_after if last else None
            sweep = Sweep(after=after, deadline=time.monotonic() + share)
        out_of_time = None
        try:
            if each.readable:
                _compare_readable(each, drift, repair, sweep)
            else:
                _compare_by_deliveries(each, drift, repair, sweep)
        except SoftTimeLimitExceeded as error:
            # Recorded as failed too, and it stops the run.
            drift.error, out_of_time = "cut short by the task's time limit", error
        except Exception as error:
            # Its store does not answer, say: recorded as failed, with what was found (and
            # repaired) until then, and the other sinks are compared all the same.
            logger.exception("Reconciling %s failed", each.name, extra={"sink": each.name})
            drift.error = f"{type(error).__name__}: {error}"[: Reconciliation.ERROR_LENGTH]
        drift.repaired = repair and drift.has_drift
        RECONCILE_DRIFT.labels(each.name).inc(len(drift.missing + drift.stale + drift.extra))
        if drift.has_drift:  # who drifted, for whoever looks into why (the first of each kind)
            first = {
                kind: [str(s) for s in subjects[:LOGGED]]
                for kind, subjects in drift.subjects().items()
            }
            named = "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in first.items())
            logger.warning("%s; %s", drift, named, extra={"sink": each.name, "subjects": first})
        Reconciliation.objects.create(
            sink=each.name,
            started_at=started_at,
            finished_at=timezone.now(),
            missing=len(drift.missing),
            stale=len(drift.stale),
            extra=len(drift.extra),
            in_flight=drift.in_flight,
            repaired=drift.repaired,
            part=drift.part,
            began_after=sweep.after,
            stopped_after=drift.stopped_after,
            error=drift.error,
            origin=origin,
            requested_by_id=requested_by_id,
        )
        report.append(drift)
        if out_of_time is not None:
            raise out_of_time  # the sinks after this one would be cut short too
    return report


def raise_if_failed(report: list[Drift]) -> None:
    """Raise ReconcileFailed if a sink of the report could not be compared."""
    failed = [drift for drift in report if drift.error]
    if failed:
        raise ReconcileFailed("; ".join(str(drift) for drift in failed))


def _queued_key(sink: str) -> str:
    return f"consent:reconcile-queued:{sink}"


def reconcile_queue(*, sink: str, repair: bool, requested_by_id: int | None) -> bool:
    """Queue a whole comparison of one sink for a worker, unless one is queued or running."""
    # False if one is; ReconcileFailed if the broker does not take it.
    try:
        if not cache.add(_queued_key(sink), 1, settings.CONSENT_RECONCILE_BUDGET + 900):
            return False
    except Exception:
        logger.warning("The cache did not answer: a comparison queued without it.")
    try:
        current_app.send_task(RECONCILE_TASK, args=(sink, repair, requested_by_id))
    except Exception as error:
        reconcile_unqueue(sink)
        raise ReconcileFailed(f"The broker did not take a comparison of {sink}.") from error
    return True


def reconcile_unqueue(sink: str) -> None:
    """Let another comparison of the sink be queued."""
    with suppress(Exception):  # a cache that does not answer forgets by itself
        cache.delete(_queued_key(sink))
