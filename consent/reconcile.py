"""Compare each sink with the source of truth (the audit log) and repair the drift."""

from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from consent.changes import PROPAGATED_KINDS, change_for
from consent.eligibility import subjects_intervals
from consent.metrics import RECONCILE_DRIFT
from consent.models import ConsentEvent, Delivery
from consent.outbox import drain_queue
from consent.sinks import configured_sinks
from consent.sinks.base import Change, Sink


@dataclass
class Drift:
    sink: str
    missing: list[UUID] = field(default_factory=list)
    stale: list[UUID] = field(default_factory=list)
    extra: list[UUID] = field(default_factory=list)
    in_flight: int = 0
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.extra)

    def __str__(self) -> str:
        verdict = (
            "repaired"
            if self.repaired and not self.clean
            else ("in sync" if self.clean else "drift")
        )
        return (
            f"{self.sink}: {len(self.missing)} missing, {len(self.stale)} stale, "
            f"{len(self.extra)} extra, {self.in_flight} in flight ({verdict})"
        )


def expected_changes() -> dict[UUID, Change]:
    """Return what every sink must hold: the change of each subject's latest propagated event."""
    events = ConsentEvent.objects.filter(kind__in=PROPAGATED_KINDS).select_related("policy")
    if connection.features.can_distinct_on_fields:
        events = events.order_by("subject_id", "-number").distinct("subject_id")
    else:
        events = events.order_by("subject_id", "number")
    latest: dict[UUID, ConsentEvent] = {}
    for event in events.iterator(chunk_size=5000):
        latest[event.subject_id] = event
    return {subject_id: change_for(event) for subject_id, event in latest.items()}


# Longer than a change's transaction takes to commit: a change made before the pending
# deliveries are read, but committed after, is left alone too.
SETTLING = timedelta(seconds=10)


def _in_flight(sink: str) -> set[UUID]:
    pending = Delivery.objects.filter(sink=sink, state=Delivery.State.PENDING)
    return set(pending.values_list("subject_id", flat=True))


def _compare_readable(sink: Sink, drift: Drift, repair: bool) -> None:
    # What is on its way is not drift: the deliveries pending before the sink is read, and the
    # changes made since then (the reads take a while, and a change made meanwhile may reach
    # the sink after it was read). Then the sink, then the source: what the sink holds of
    # anyone else can only be as new as the source.
    in_flight = _in_flight(sink.name)
    since = timezone.now() - SETTLING
    observed = sink.entries()
    expected = expected_changes()
    if sink.keeps_history:
        history = subjects_intervals({s: change.version for s, change in expected.items()})
        expected = {s: replace(change, intervals=history[s]) for s, change in expected.items()}
    for subject_id, change in expected.items():
        if subject_id in in_flight or change.changed_at > since:
            drift.in_flight += 1
            continue
        held = observed.get(subject_id)
        if held is None or not held.version:  # not held, or only intervals left of it
            drift.missing.append(subject_id)
        elif (held.version, held.allowed, held.deleted, held.intervals) != (
            change.version,
            change.allowed,
            change.deleted,
            change.intervals,
        ):
            drift.stale.append(subject_id)
    drift.extra = [s for s in observed if s not in expected]
    if repair and not drift.clean:
        fixes = [expected[s] for s in drift.missing + drift.stale]
        ceiling = {
            c.subject_id: max(
                c.version, observed[c.subject_id].version if c.subject_id in observed else 0
            )
            for c in fixes
        }
        sink.repair(fixes, ceiling=ceiling, drop=drift.extra)
        drift.repaired = True


def _compare_by_deliveries(sink: Sink, drift: Drift, repair: bool) -> None:
    """For a sink that cannot be read back, trust its delivery log: was the latest change sent?"""
    expected = expected_changes()
    latest_events = dict(
        ConsentEvent.objects.filter(kind__in=PROPAGATED_KINDS, subject_id__in=list(expected))
        .order_by("subject_id", "number")
        .values_list("subject_id", "pk")
    )
    deliveries = {
        d.event_id: d
        for d in Delivery.objects.filter(sink=sink.name, event_id__in=list(latest_events.values()))
    }
    for subject_id, event_id in latest_events.items():
        delivery = deliveries.get(event_id)
        if delivery is None:
            drift.missing.append(subject_id)
        elif delivery.state == Delivery.State.DEAD:
            drift.stale.append(subject_id)
        elif delivery.state == Delivery.State.PENDING:
            drift.in_flight += 1
    if repair and not drift.clean:
        with transaction.atomic():
            now = timezone.now()
            for subject_id in drift.missing + drift.stale:
                event_id = latest_events[subject_id]
                Delivery.objects.update_or_create(
                    event_id=event_id,
                    sink=sink.name,
                    defaults={
                        "state": Delivery.State.PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                    },
                    create_defaults={
                        "subject_id": subject_id,
                        "event_number": expected[subject_id].version,
                        "next_attempt_at": now,
                    },
                )
            transaction.on_commit(partial(drain_queue, sink.name))
        drift.repaired = True


def reconcile(*, sink: str | None = None, repair: bool = False) -> list[Drift]:
    """Report (and with repair, fix) missing, stale and extra entries of one sink or all."""
    sinks = configured_sinks()
    chosen = [sinks[sink]] if sink else list(sinks.values())
    report = []
    for each in chosen:
        drift = Drift(each.name)
        if each.readable:
            _compare_readable(each, drift, repair)
        else:
            _compare_by_deliveries(each, drift, repair)
        RECONCILE_DRIFT.labels(each.name).inc(len(drift.missing + drift.stale + drift.extra))
        report.append(drift)
    return report
