"""Reads for the support console: finding users, the facts about one, their filtered history."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from consent.models import ConsentEvent, ConsentPolicy, TrainingConsent
from consent.outbox import PROPAGATED_KINDS
from consent.selectors import (
    HistoryPage,
    SinkStatus,
    consent_for,
    history_page,
    needs_choice,
    policy_current,
    propagation_for,
    retention_days_now,
)

MAX_USER_ID = 2**63 - 1


@dataclass(frozen=True)
class SearchPage:
    """Users matching a query, by email, and the email to continue after."""

    users: list[User]
    after: str | None


def user_search(query: str, *, after: str = "", size: int = 20) -> SearchPage:
    """Find users by email (exact or prefix), by user id, or by pseudonymous subject id."""
    query = query.strip()
    if not query:
        return SearchPage([], None)
    try:
        match = Q(subject_id=UUID(query))
    except ValueError:
        match = Q(email__startswith=query.lower())
        if query.isdigit() and int(query) <= MAX_USER_ID:
            match |= Q(pk=int(query))
    users = User.objects.filter(match).order_by("email")
    if after:
        users = users.filter(email__gt=after)
    rows = list(users[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return SearchPage(rows, after=rows[-1].email if more else None)


@dataclass(frozen=True)
class UserFacts:
    """What support needs to know first about one user's setting."""

    consent: TrainingConsent
    policy: ConsentPolicy | None
    waits_for_choice: bool
    deadline_passed: bool
    deferred_until: datetime | None
    retention_days: int | None


def user_facts(user: User, *, now: datetime | None = None) -> UserFacts:
    now = now or timezone.now()
    policy = policy_current()
    consent = consent_for(user)
    return UserFacts(
        consent=consent,
        policy=policy,
        waits_for_choice=needs_choice(consent, policy),
        deadline_passed=policy is not None and now >= policy.decision_deadline,
        deferred_until=(
            consent.deferred_until
            if consent.deferred_until is not None and consent.deferred_until > now
            else None
        ),
        retention_days=retention_days_now(consent, policy) if user.is_consumer else None,
    )


@dataclass(frozen=True)
class HistoryFilter:
    kind: str = ""
    channel: str = ""
    since: date | None = None
    until: date | None = None


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def history_filtered(
    subject_id: UUID,
    *,
    filters: HistoryFilter | None = None,
    older_than: int | None = None,
    size: int = 20,
) -> HistoryPage:
    """Return the subject's newest matching events below older_than (a keyset on the number)."""
    filters = filters or HistoryFilter()
    matching = Q()
    if filters.kind:
        matching &= Q(kind=filters.kind)
    if filters.channel:
        matching &= Q(channel=filters.channel)
    if filters.since:
        matching &= Q(created_at__gte=_start_of(filters.since))
    if filters.until:
        matching &= Q(created_at__lt=_start_of(filters.until + timedelta(days=1)))
    return history_page(subject_id, matching=matching, older_than=older_than, size=size)


@dataclass(frozen=True)
class EventRow:
    """One event of the history and where it stands in each downstream store."""

    event: ConsentEvent
    propagated: bool
    sinks: list[SinkStatus] = field(default_factory=list)
    actor_email: str = ""


def event_rows(events: Iterable[ConsentEvent]) -> list[EventRow]:
    """Return the events with their propagation and, for support and admin acts, who acted."""
    events = list(events)
    statuses = propagation_for(event.pk for event in events)
    staff_acts = {
        event.actor_subject_id
        for event in events
        if event.actor_subject_id and event.actor_subject_id != event.subject_id
    }
    emails = dict(
        User.objects.filter(subject_id__in=staff_acts).values_list("subject_id", "email")
        if staff_acts
        else []
    )
    return [
        EventRow(
            event,
            propagated=event.kind in PROPAGATED_KINDS,
            sinks=statuses.get(event.pk, []),
            actor_email=emails.get(event.actor_subject_id, "") if event.actor_subject_id else "",
        )
        for event in events
    ]
