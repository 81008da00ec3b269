"""Reads for the support console: finding users, the facts about one, their filtered history."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import User
from consent.changes import PROPAGATED_KINDS
from consent.history import choice_label, event_summary
from consent.models import ConsentEvent, ConsentPolicy, ConsentState, Delivery, TrainingConsent
from consent.selectors import (
    HistoryPage,
    SinkStatus,
    consent_and_policy,
    consent_standing,
    deferred_until,
    history_page,
    needs_choice,
    policies_published,
    policy_in_force,
    propagation_for,
    retention_days_now,
)
from consent.wording import staff_choice_sentence

MAX_USER_ID = 2**63 - 1
Kind, Channel, Role = ConsentEvent.Kind, ConsentEvent.Channel, ConsentEvent.Role


@dataclass(frozen=True)
class SearchPage:
    """Users matching a query by email, or the subject id of a deleted account it named."""

    users: list[User]
    after: str | None  # the email to continue after
    deleted_subject: UUID | None = None


def user_search(query: str, *, after: str = "", size: int = 20) -> SearchPage:
    """Find users by email (exact or prefix), by user id, or by pseudonymous subject id."""
    query = query.strip()
    if not query:
        return SearchPage([], None)
    try:
        subject_id: UUID | None = UUID(query)
    except ValueError:
        subject_id = None
    if subject_id is not None:
        match = Q(subject_id=subject_id)
    else:
        match = Q(email__startswith=query.lower())
        if query.isascii() and query.isdigit() and int(query) <= MAX_USER_ID:
            match |= Q(pk=int(query))
    users = User.objects.filter(match).order_by("email")
    if after:
        users = users.filter(email__gt=after)
    rows = list(users[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if not rows and subject_id is not None and account_deletion(subject_id) is not None:
        return SearchPage([], None, deleted_subject=subject_id)
    return SearchPage(rows, after=rows[-1].email if more else None)


def account_deletion(subject_id: UUID) -> ConsentEvent | None:
    """Return the event that deleted the subject's account, if no account has the subject id."""
    if User.objects.filter(subject_id=subject_id).exists():
        return None
    deleted = ConsentEvent.objects.filter(
        subject_id=subject_id, kind=ConsentEvent.Kind.ACCOUNT_DELETED
    )
    return deleted.order_by("-number").first()


@dataclass(frozen=True)
class UserFacts:
    """What support needs to know first about one user's setting."""

    consent: TrainingConsent
    choice: str
    policy: ConsentPolicy | None
    waits_for_choice: bool
    deadline_passed: bool
    deferred_until: datetime | None
    retention_days: int | None
    in_force: ConsentPolicy | None  # policy itself, or an older one until it comes into force


def user_facts(user: User, *, now: datetime | None = None) -> UserFacts:
    now = now or timezone.now()
    consent, policy = consent_and_policy(user)
    # What it says stands now; whether the user is asked, as the pop-up decides it.
    standing = consent_standing(consent, now=now)
    return UserFacts(
        consent=standing,
        choice=staff_choice_sentence(user, standing),
        policy=policy,
        waits_for_choice=needs_choice(consent, policy),
        deadline_passed=policy is not None and now >= policy.decision_deadline,
        deferred_until=deferred_until(consent, policy, now=now),
        retention_days=retention_days_now(standing, policy) if user.is_consumer else None,
        in_force=policy_in_force(policies_published()),
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
    where = Q()
    if filters.kind:
        where &= Q(kind=filters.kind)
    if filters.channel:
        where &= Q(channel=filters.channel)
    if filters.since:
        where &= Q(created_at__gte=_start_of(filters.since))
    if filters.until:
        where &= Q(created_at__lt=_start_of(filters.until + timedelta(days=1)))
    return history_page(subject_id, where=where, older_than=older_than, size=size)


@dataclass(frozen=True)
class EventRow:
    """One event of the history in the words the support page shows, and where it has reached."""

    event: ConsentEvent
    summary: str
    facts: list[str]
    note: str
    propagated: bool
    sinks: list[tuple[SinkStatus, str]] = field(default_factory=list)

    @property
    def pruned(self) -> bool:
        """Tell whether the event's deliveries were pruned (consent.outbox.outbox_prune)."""
        kept = timedelta(days=settings.CONSENT_DELIVERY_RETENTION_DAYS)
        return self.propagated and not self.sinks and self.event.created_at < timezone.now() - kept

    @property
    def reach_label(self) -> str:
        return _("Where event %(number)s has reached") % {"number": self.event.number}


def event_rows(events: Iterable[ConsentEvent]) -> list[EventRow]:
    """Return the events with their propagation and, for support and admin acts, who acted."""
    events = list(events)
    statuses = propagation_for(event.pk for event in events)
    emails = staff_emails(
        {actor for e in events if (actor := e.actor_subject_id) and actor != e.subject_id}
    )
    return [
        EventRow(
            event,
            summary=event_summary(event),
            facts=_facts(event, emails.get(event.actor_subject_id)),
            note=_note(event),
            propagated=event.kind in PROPAGATED_KINDS,
            sinks=[(status, _sink_text(status)) for status in statuses.get(event.pk, [])],
        )
        for event in events
    ]


def staff_emails(actors: Iterable[UUID] | QuerySet) -> dict[UUID | None, str]:
    """Return the emails of the accounts that acted (support, admin) by their subject ids."""
    accounts = User.objects.filter(subject_id__in=actors)
    return dict(accounts.values_list("subject_id", "email"))


def staff_who_acted(subject_id: UUID) -> dict[UUID | None, str]:
    """Return staff_emails() of every account but the subject's own that acted in its history."""
    others = ConsentEvent.objects.filter(subject_id=subject_id).exclude(actor_subject_id=subject_id)
    return staff_emails(others.values("actor_subject_id"))


def _facts(event: ConsentEvent, actor_email: str | None) -> list[str]:
    """Say what the event did, on which channel, to what, under which terms, and who acted."""
    who = _("By: %(who)s") % {"who": choice_label(Role, event.actor_role)}
    facts = [
        choice_label(Kind, event.kind),
        _("Channel: %(channel)s") % {"channel": choice_label(Channel, event.channel)},
        f"{who} ({actor_email})" if actor_email else who,
        f"{choice_label(ConsentState, event.before)} → {choice_label(ConsentState, event.after)}",
    ]
    if event.shown_default is not None:
        facts.append(_("Shown On by default") if event.shown_default else _("Shown Off by default"))
    if event.gpc:
        facts.append(_("Browser opt-out signal present"))
    return facts


def _note(event: ConsentEvent) -> str:
    parts = []
    if event.reason:
        parts.append(_("Reason: %(reason)s") % {"reason": event.reason})
    if event.reference:
        parts.append(_("Reference: %(reference)s") % {"reference": event.reference})
    return " ".join(parts)


def _sink_text(status: SinkStatus) -> str:
    if status.state == Delivery.State.APPLIED:
        if status.applied_at is None:
            return _("applied")
        when = date_format(localtime(status.applied_at), "j M Y, H:i:s")
        return _("applied %(when)s") % {"when": when}
    if status.state == Delivery.State.SUPERSEDED:
        return _("skipped: a newer change of this user goes in its place")
    if status.state == Delivery.State.DEAD:
        return ngettext(
            "dead after %(attempts)d attempt: %(error)s",
            "dead after %(attempts)d attempts: %(error)s",
            status.attempts,
        ) % {"attempts": status.attempts, "error": status.last_error}
    if status.retrying:
        return ngettext(
            "retrying after %(attempts)d failed attempt: %(error)s",
            "retrying after %(attempts)d failed attempts: %(error)s",
            status.attempts,
        ) % {"attempts": status.attempts, "error": status.last_error}
    return _("pending")
