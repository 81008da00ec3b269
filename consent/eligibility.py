"""Whether a subject's data from a moment may go into a training run that selects at another."""

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import batched
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Exists, Max, OuterRef, Q, QuerySet

from accounts.models import User
from consent.changes import PROPAGATED_KINDS
from consent.models import (
    ConsentEvent,
    ConsentPolicy,
    ConsentState,
    Delivery,
    EligibilityInterval,
    EligibilityRecord,
)
from consent.sinks.base import SUBJECTS_A_BATCH, Interval

Kind = ConsentEvent.Kind
# The most subjects one read of the history store names: within SQLite's default limit of
# 32,766 parameters a statement, yet few reads, as each may scan the whole table.
SUBJECTS_A_QUERY = 30_000
STATE_KINDS = (
    Kind.DECISION,
    Kind.PLAN_CHANGED,
    Kind.ACCOUNT_DELETED,
    Kind.CHOICE_EXPIRED,
    Kind.RESTORED,
)
# What history_intervals reads of each event, in order.
EVENT_FIELDS = (
    "kind",
    "after",
    "plan",
    "created_at",
    "policy__version",
    "policy__retention_days_allowed",
)


def history_intervals(events: Iterable[tuple]) -> list[Interval]:
    """Return the intervals during which the subject allowed training, from their state events."""
    # The events are EVENT_FIELDS tuples, in the order of their numbers.
    intervals: list[Interval] = []
    opened: tuple[datetime, int, int] | None = None  # since when, under which version, retention
    decision: tuple[bool, int, int] | None = None  # allowed, its policy version, its retention
    deleted = False
    for kind, after, plan, at, version, retention in events:
        if kind == Kind.DECISION or (kind == Kind.RESTORED and after != ConsentState.UNDECIDED):
            decision = (after == ConsentState.ALLOWED, version, retention)
        elif kind in (Kind.CHOICE_EXPIRED, Kind.RESTORED):
            decision = None
        elif kind == Kind.ACCOUNT_DELETED:
            deleted = True
        allowing = decision is not None and decision[0] and plan in User.CONSUMER_PLANS
        allowing = allowing and not deleted
        # A new decision starts a new interval.
        if opened is not None and (not allowing or kind in (Kind.DECISION, Kind.RESTORED)):
            if opened[0] < at:
                intervals.append(Interval(opened[0], at, opened[1], opened[2]))
            opened = None
        if allowing and opened is None and decision is not None:
            opened = (at, decision[1], decision[2])
    if opened is not None:
        intervals.append(Interval(opened[0], None, opened[1], opened[2]))
    return intervals


def subjects_intervals(up_to: dict[UUID, int]) -> dict[UUID, tuple[Interval, ...]]:
    """Return each subject's intervals, from their events up to the numbers given."""
    subjects = list(up_to)
    found: dict[UUID, tuple[Interval, ...]] = {}
    for start in range(0, len(subjects), SUBJECTS_A_BATCH):
        batch = subjects[start : start + SUBJECTS_A_BATCH]
        rows = (
            ConsentEvent.objects.filter(subject_id__in=batch, kind__in=STATE_KINDS)
            .order_by("subject_id", "number")
            .values_list("subject_id", "number", *EVENT_FIELDS)
        )
        events: dict[UUID, list[tuple]] = defaultdict(list)
        for subject_id, number, *fields in rows.iterator(chunk_size=10_000):
            if number <= up_to[subject_id]:
                events[subject_id].append(fields)
        found.update({subject: tuple(history_intervals(events[subject])) for subject in batch})
    return found


@dataclass(frozen=True)
class Terms:
    """When each published policy came into force, and whether it asks for a new choice."""

    in_force: tuple[tuple[int, datetime, bool], ...]  # version, from, asks for a new choice

    @classmethod
    def published(cls) -> "Terms":
        policies = ConsentPolicy.objects.filter(published_at__isnull=False)
        return cls(
            tuple(
                (policy.version, policy.in_force_from, policy.requires_new_choice)
                for policy in policies
            )
        )

    @property
    def first_in_force(self) -> datetime | None:
        return min((since for _, since, _ in self.in_force), default=None)

    def expiry(self, version: int) -> datetime | None:
        """Return when a decision made under this version expires, if it does."""
        # When a newer version that asks for a new choice comes into force.
        return min(
            (since for newer, since, asks in self.in_force if newer > version and asks),
            default=None,
        )

    def as_of(self, intervals: Iterable[Interval], moment: datetime) -> list[Interval]:
        """Return the intervals as they stood at the moment, within the terms in force."""
        start = self.first_in_force
        if start is None:
            return []
        clipped = []
        for interval in intervals:
            begin = max(interval.allowed_from, start)
            ends = (interval.allowed_until, self.expiry(interval.policy_version))
            end = min((end for end in ends if end is not None), default=None)
            if begin > moment or (end is not None and end <= begin):
                continue
            # One still under way at the moment has no end.
            until = end if end is not None and end <= moment else None
            clipped.append(Interval(begin, until, interval.policy_version, interval.retention_days))
        return clipped


# A piece of data is a subject's chat or coding session, new or resumed at moment t; a run selects
# its data at moment R. It is eligible only if:
# 1. at t the subject was on a consumer plan, a published policy was in force, and their latest
#    decision at or before t allowed training, not expired by newer terms that ask a new choice;
# 2. at R all of that still holds for them, and they have not deleted their account;
# 3. R - t is within the retention for allowed data of the policy that decision was made under.
def is_eligible(intervals: Sequence[Interval], at: datetime, as_of: datetime) -> bool:
    """Tell whether data from `at` may go into a run at `as_of`, given Terms.as_of's intervals."""
    if at > as_of or not any(interval.allowed_until is None for interval in intervals):
        return False
    for interval in intervals:
        if interval.allowed_from <= at and (
            interval.allowed_until is None or at < interval.allowed_until
        ):
            return as_of - at <= timedelta(days=interval.retention_days)
    return False


def history_store() -> str:
    """Return the database that holds every subject's intervals: the eligibility sink's."""
    sink: dict[str, Any] = settings.CONSENT_SINKS[settings.CONSENT_ELIGIBILITY_SINK]
    return sink.get("OPTIONS", {}).get("database", "warehouse")


def subjects_withheld(as_of: datetime, among: Collection[UUID] | None = None) -> set[UUID]:
    """Return the subjects (of among, if given) whose changes by as_of the store may lack."""
    # Their answers could be out of date, so they are not eligible: fail closed. A subject with
    # no delivery to the store pending or dead has every change in it. Of the others, those it
    # holds up to their newest change made by as_of are current as of then: a change still
    # pending may have superseded older ones, made by as_of, that never reached the store; and a
    # dead one may since have been carried there by a newer one, with the whole history.
    deliveries = Delivery.objects.filter(sink=settings.CONSENT_ELIGIBILITY_SINK)
    overtaken = deliveries.filter(
        subject_id=OuterRef("subject_id"),
        event_number__gt=OuterRef("event_number"),
        state=Delivery.State.APPLIED,
    )
    # Asked apart, each reads its partial index; `state IN (...)` would read every delivery.
    pending = deliveries.filter(state=Delivery.State.PENDING).values_list("subject_id", flat=True)
    dead = (
        deliveries.filter(state=Delivery.State.DEAD)
        .exclude(Exists(overtaken))
        .values_list("subject_id", flat=True)
    )
    waiting = set(pending.union(dead, all=True))
    if among is not None:
        waiting &= set(among)
    withheld: set[UUID] = set()
    for batch in batched(waiting, SUBJECTS_A_QUERY, strict=False):
        made = dict(
            ConsentEvent.objects.filter(
                subject_id__in=batch, kind__in=PROPAGATED_KINDS, created_at__lte=as_of
            )
            .values("subject_id")
            .annotate(newest=Max("number"))
            .values_list("subject_id", "newest")
        )
        held = dict(
            EligibilityRecord.objects.using(history_store())
            .filter(subject_id__in=list(made))
            .values_list("subject_id", "version")
        )
        withheld.update(
            subject for subject, newest in made.items() if held.get(subject, 0) < newest
        )
    return withheld


def intervals_stored_as_of(
    as_of: datetime, still_at: datetime | None = None
) -> QuerySet[EligibilityInterval]:
    """Return the stored intervals of the subjects who allowed training at as_of (and still_at)."""
    store = EligibilityInterval.objects.using(history_store())

    def under_way(moment: datetime) -> Exists:
        at = store.filter(subject_id=OuterRef("subject_id"), allowed_from__lte=moment)
        return Exists(at.filter(Q(allowed_until__isnull=True) | Q(allowed_until__gt=moment)))

    if still_at is None:
        # Begun by as_of, of subjects with one under way then: what is_eligible reads.
        return store.filter(allowed_from__lte=as_of).filter(under_way(as_of))
    # Begun by the later still_at, of subjects with one under way at both moments.
    return store.filter(allowed_from__lte=still_at).filter(under_way(as_of), under_way(still_at))


def stored_intervals(subjects: Iterable[UUID], as_of: datetime) -> dict[UUID, list[Interval]]:
    """Return the intervals begun by as_of of those subjects who allowed training at as_of."""
    intervals: dict[UUID, list[Interval]] = defaultdict(list)
    for batch in batched(subjects, SUBJECTS_A_QUERY, strict=False):
        rows = (
            intervals_stored_as_of(as_of)
            .filter(subject_id__in=batch)
            .order_by("subject_id", "allowed_from")
            .values_list(
                "subject_id", "allowed_from", "allowed_until", "policy_version", "retention_days"
            )
        )
        for subject_id, since, until, version, retention in rows:
            intervals[subject_id].append(Interval(since, until, version, retention))
    return intervals


def eligibility(pairs: Sequence[tuple[UUID, datetime]], *, as_of: datetime) -> list[bool]:
    """Answer, in order, whether a run selecting at as_of may use each (subject, moment) pair."""
    subjects = {subject_id for subject_id, _ in pairs}
    subjects -= subjects_withheld(as_of, among=subjects)
    terms = Terms.published()
    intervals = {
        subject_id: terms.as_of(stored, as_of)
        for subject_id, stored in stored_intervals(subjects, as_of).items()
    }
    return [is_eligible(intervals.get(subject_id, ()), at, as_of) for subject_id, at in pairs]
