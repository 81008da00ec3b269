"""Reads of the consent state: the current policy, what a user must be asked, eligibility."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from accounts.models import User
from consent.eligibility import Terms, subjects_intervals
from consent.models import (
    ConsentEvent,
    ConsentPolicy,
    ConsentState,
    Delivery,
    Reconciliation,
    TrainingConsent,
    TrainingRun,
)

MAX_EVENT_NUMBER = 2**31 - 1  # an event's number is a PostgreSQL integer


def policy_current() -> ConsentPolicy | None:
    """Return the newest published policy, the one users are asked about."""
    return ConsentPolicy.objects.filter(published_at__isnull=False).order_by("-version").first()


def policy_asking_again(now: datetime | None = None) -> ConsentPolicy | None:
    """Return the newest terms in force that ask every consumer user for a new choice."""
    return (
        ConsentPolicy.objects.filter(
            published_at__isnull=False,
            requires_new_choice=True,
            effective_at__lte=now or timezone.now(),
        )
        .order_by("-version")
        .first()
    )


def policy_in_force(published: list[ConsentPolicy]) -> ConsentPolicy | None:
    """Return the newest of policies_published() in force now."""
    return next((policy for policy in published if policy.is_in_force), None)


def policies_published() -> list[ConsentPolicy]:
    """Return every version of the terms users were ever shown, newest first."""
    return list(ConsentPolicy.objects.filter(published_at__isnull=False).order_by("-version"))


def consent_for(user: User) -> TrainingConsent:
    """Return the user's current consent, an unsaved undecided one if nothing was recorded."""
    consent = TrainingConsent.objects.select_related("policy").filter(user=user).first()
    if consent is None:
        return TrainingConsent(user=user)
    consent.user = user
    return consent


def consent_standing(consent: TrainingConsent, *, now: datetime | None = None) -> TrainingConsent:
    """Return the consent as it stands now, a choice ended by terms in force counted out."""
    # Terms in force that ask again end a choice before the minute task records its expiry.
    if consent.state == ConsentState.UNDECIDED:
        return consent
    asking = policy_asking_again(now)
    if asking is None or not needs_choice(consent, asking):
        return consent
    return TrainingConsent(
        user=consent.user,
        state=ConsentState.UNDECIDED,
        head_number=consent.head_number,
        head_hash=consent.head_hash,
        deferred_until=consent.deferred_until,
    )


def consent_and_policy(user: User) -> tuple[TrainingConsent, ConsentPolicy | None]:
    """Return consent_for(user) and policy_current()."""
    return consent_for(user), policy_current()


def needs_choice(consent: TrainingConsent, policy: ConsentPolicy | None) -> bool:
    """Tell whether the current policy still waits for this user's choice."""
    if policy is None or not consent.user.is_consumer:
        return False
    if consent.state == ConsentState.UNDECIDED:
        return True
    assert consent.policy is not None
    return policy.requires_new_choice and consent.policy.version < policy.version


def acted_for_others(user: User) -> bool:
    """Tell whether the account changed someone else's setting or plan (as support, an admin)."""
    acted = ConsentEvent.objects.filter(actor_subject_id=user.subject_id)
    return acted.exclude(subject_id=user.subject_id).exists()


def deferred_until(
    consent: TrainingConsent, policy: ConsentPolicy | None, *, now: datetime | None = None
) -> datetime | None:
    """Return until when the user's "Not now" hides these terms' pop-up; None if it does not."""
    if consent.deferred_until is None or consent.deferred_until <= (now or timezone.now()):
        return None
    # Said to these terms, not to older ones: new terms are shown, whatever was said before.
    said_to = (
        ConsentEvent.objects.filter(
            subject_id=consent.user.subject_id, kind=ConsentEvent.Kind.DEFERRED
        )
        .order_by("-number")
        .values_list("policy_id", flat=True)
        .first()
    )
    return consent.deferred_until if policy is not None and said_to == policy.pk else None


@dataclass(frozen=True)
class Prompt:
    """What the first-run pop-up should do for one user right now."""

    policy: ConsentPolicy | None
    show: bool
    can_defer: bool
    blocking: bool


def prompt_for(user: User, *, now: datetime | None = None) -> Prompt:
    now = now or timezone.now()
    consent, policy = consent_and_policy(user)
    if policy is None or not needs_choice(consent, policy):
        return Prompt(policy, show=False, can_defer=False, blocking=False)
    past_deadline = now >= policy.decision_deadline
    deferred = deferred_until(consent, policy, now=now) is not None
    return Prompt(
        policy,
        show=past_deadline or not deferred,
        can_defer=not past_deadline,
        blocking=past_deadline,
    )


@dataclass(frozen=True)
class HistoryPage:
    """One page of a subject's events, newest first, and the cursor to the older ones."""

    events: list[ConsentEvent]
    older_than: int | None


def history_page(
    subject_id: UUID, *, where: Q | None = None, older_than: int | None = None, size: int = 20
) -> HistoryPage:
    """Return the subject's newest events below older_than (a keyset) that match `where`."""
    events = ConsentEvent.objects.filter(subject_id=subject_id).select_related("policy")
    if where is not None:
        events = events.filter(where)
    if older_than is not None:
        events = events.filter(number__lt=older_than)
    rows = list(events.order_by("-number")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return HistoryPage(rows, older_than=rows[-1].number if more else None)


def decision_of(subject_id: UUID, number: int) -> ConsentEvent | None:
    """Return the subject's own decision event with this number, if there is one."""
    return (
        ConsentEvent.objects.filter(
            subject_id=subject_id, number=number, kind=ConsentEvent.Kind.DECISION
        )
        .select_related("policy")
        .first()
    )


def latest_decision(user: User) -> ConsentEvent | None:
    """Return the user's latest decision: what it allowed, who made it (actor_role) and when."""
    return (
        ConsentEvent.objects.filter(subject_id=user.subject_id, kind=ConsentEvent.Kind.DECISION)
        .order_by("-number")
        .only("pk", "after", "actor_role", "created_at")
        .first()
    )


def last_decision(user: User) -> bool | None:
    """Return whether the user's latest decision allowed training; None if they never decided."""
    latest = latest_decision(user)
    return None if latest is None else latest.allows_training


def shown_default(policy: ConsentPolicy | None, *, gpc: bool, last: bool | None) -> bool:
    """Return where the toggle starts: Off under GPC, else the last choice, or default."""
    if policy is None or gpc:
        return False
    # Where the user's last decision left it: new terms never turn a "no" into a preset "yes".
    return policy.default_allowed if last is None else last


def retention_days_now(consent: TrainingConsent, policy: ConsentPolicy | None) -> int | None:
    """Return how long the user's chats and coding sessions are kept under their current choice."""
    terms = consent.policy or policy
    if terms is None:
        return None
    return terms.retention_days(allowed=consent.allowed)


def consent_after(event: ConsentEvent, user: User) -> TrainingConsent:
    """Return the user's consent as a decision event left it, without reading it back."""
    return TrainingConsent(
        user=user,
        state=event.after,
        policy=event.policy,
        head_number=event.number,
        head_hash=event.hash,
        decided_at=event.created_at,
    )


@dataclass(frozen=True)
class SinkStatus:
    """Where one change stands in one downstream store."""

    sink: str
    state: str
    applied_at: datetime | None
    attempts: int
    last_error: str

    @property
    def retrying(self) -> bool:
        return self.state == Delivery.State.PENDING and self.attempts > 0


@dataclass(frozen=True)
class Propagation:
    """How far one change has reached: applied in how many of its sinks, and whether any gave up."""

    applied: int
    total: int
    failed: int
    superseded: int

    @property
    def settled(self) -> bool:
        return self.applied + self.failed + self.superseded == self.total


def propagation_just_committed() -> Propagation | None:
    """Return where a change stands right after its commit: pending in every sink."""
    total = len(settings.CONSENT_SINKS)
    return Propagation(applied=0, total=total, failed=0, superseded=0) if total else None


def propagation_of_recent(
    decision: ConsentEvent | None, *, within: timedelta = timedelta(hours=1)
) -> Propagation | None:
    """Return how far a decision (latest_decision) has reached, if it was made recently."""
    if decision is None or decision.created_at < timezone.now() - within:
        return None
    statuses = propagation_for([decision.pk]).get(decision.pk)
    if not statuses:
        return None
    states = {s.sink: s.state for s in statuses}
    skipped = [sink for sink, state in states.items() if state == Delivery.State.SUPERSEDED]
    if skipped:
        # Skipped in a sink for a newer change of the user (a plan change, say), which carries
        # the choice there in its place: as far as the newest of those got.
        later = (
            Delivery.objects.filter(
                sink__in=skipped, subject_id=decision.subject_id, event_number__gt=decision.number
            )
            .exclude(state=Delivery.State.SUPERSEDED)
            .order_by("event_number")
            .values_list("sink", "state")
        )
        states.update(later)
    return _propagation(list(states.values()))


def propagation_summaries(event_ids: Iterable[int]) -> dict[int, Propagation]:
    """Return, for each event that had to reach sinks, how far it got."""
    return {
        event_id: _propagation([s.state for s in statuses])
        for event_id, statuses in propagation_for(event_ids).items()
    }


def _propagation(states: list[str]) -> Propagation:
    return Propagation(
        applied=states.count(Delivery.State.APPLIED),
        total=len(states),
        failed=states.count(Delivery.State.DEAD),
        superseded=states.count(Delivery.State.SUPERSEDED),
    )


def propagation_for(event_ids: Iterable[int]) -> dict[int, list[SinkStatus]]:
    """Return, for each event, its delivery to every sink: applied when, pending, retrying, dead."""
    statuses: dict[int, list[SinkStatus]] = defaultdict(list)
    rows = (
        Delivery.objects.filter(event_id__in=list(event_ids))
        .order_by("event_id", "sink")
        .values_list("event_id", "sink", "state", "applied_at", "attempts", "last_error")
    )
    for event_id, sink, state, applied_at, attempts, error in rows:
        statuses[event_id].append(SinkStatus(sink, state, applied_at, attempts, error))
    return statuses


@dataclass(frozen=True)
class SinkOverview:
    """How one downstream store is keeping up: what waits, what failed, what gave up."""

    sink: str
    pending: int
    failing: int
    dead: int
    oldest_pending_at: datetime | None
    reconciled: Reconciliation | None  # the latest comparison with the audit log, or failure
    compared_at: datetime | None  # when a comparison last finished without failing
    swept_at: datetime | None  # when a comparison last reached the end of the subjects

    def oldest_pending_age(self, now: datetime) -> timedelta | None:
        return now - self.oldest_pending_at if self.oldest_pending_at else None


def sink_overview() -> list[SinkOverview]:
    """Return, for every configured sink and any other with deliveries left, its backlog."""
    pending: dict[str, dict[str, Any]] = {
        row["sink"]: dict(row)
        for row in Delivery.objects.filter(state=Delivery.State.PENDING)
        .values("sink")
        .annotate(
            count=Count("id"),
            failing=Count("id", filter=Q(attempts__gt=0)),
            oldest=Min("created_at"),
        )
    }
    dead: dict[str, int] = dict(
        Delivery.objects.filter(state=Delivery.State.DEAD)
        .values_list("sink")
        .annotate(count=Count("id"))
        .values_list("sink", "count")
    )
    names = sorted(set(settings.CONSENT_SINKS) | pending.keys() | dead.keys())
    reconciled = {name: Reconciliation.objects.filter(sink=name).first() for name in names}
    finished = Reconciliation.objects.filter(error="").values_list("finished_at", flat=True)
    compared = {name: finished.filter(sink=name).first() for name in names}
    swept = {name: finished.filter(sink=name, stopped_after__isnull=True).first() for name in names}
    overview = []
    for name in names:
        row: dict[str, Any] = pending.get(name, {})
        overview.append(
            SinkOverview(
                sink=name,
                pending=int(row.get("count", 0)),
                failing=int(row.get("failing", 0)),
                dead=dead.get(name, 0),
                oldest_pending_at=row.get("oldest"),
                reconciled=reconciled[name],
                compared_at=compared[name],
                swept_at=swept[name],
            )
        )
    return overview


@dataclass(frozen=True)
class RunsSeen:
    """The registered training runs that selected data while the user allowed it."""

    count: int
    latest: datetime | None


def runs_while_allowed(user: User) -> RunsSeen:
    """Return how many registered runs selected data while the user allowed training, and when."""
    runs = list(
        TrainingRun.objects.order_by("as_of").values_list("as_of", "snapshot__still_allowing_at")
    )
    if not runs:
        return RunsSeen(0, None)
    history = subjects_intervals({user.subject_id: MAX_EVENT_NUMBER})[user.subject_id]
    terms = Terms.published()

    def allowed(moment: datetime) -> bool:
        return any(interval.allowed_until is None for interval in terms.as_of(history, moment))

    # A run takes the data of those who allowed training as of its moment, and, since runs were
    # registered as of earlier moments, still did when it was registered (its snapshot says).
    selected = [
        as_of
        for as_of, registered in runs
        if allowed(as_of) and (registered is None or allowed(datetime.fromisoformat(registered)))
    ]
    return RunsSeen(len(selected), selected[-1] if selected else None)
