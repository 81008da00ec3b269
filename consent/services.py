"""The one writer of consent: every change of the setting, and every audit event, goes through here.

Each function runs in one transaction: it locks the user's TrainingConsent row, appends the next
ConsentEvent of the user's hash chain, writes one outbox Delivery per configured sink (for events
that change what sinks hold), and updates the current state. consent_change first tries one
statement without the lock, written only if the row is still as the change was made from it: as
the settings page said it showed it, or else as it was read (see its docstring).
A call that would change nothing records nothing, sends nothing and returns None.
"""

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from consent.audit import GENESIS_HASH, event_hash
from consent.metadata import RequestMeta
from consent.models import (
    ConsentEvent,
    ConsentPolicy,
    ConsentState,
    PolicyEvent,
    TrainingConsent,
)
from consent.outbox import outbox_deliveries, schedule_drain_after_commit
from consent.selectors import (
    last_decision,
    needs_choice,
    policy_current,
    shown_default,
)
from consent.sql import (
    change_save,
    consent_lock,
    consent_read,
    consent_read_with_decision,
    decision_nth_latest,
    guarded_writes,
)

Channel = ConsentEvent.Channel
Role = ConsentEvent.Role

ROLE_BY_CHANNEL = {
    Channel.POPUP: Role.USER,
    Channel.SETTINGS: Role.USER,
    Channel.API: Role.USER,
    Channel.GPC: Role.USER,
    Channel.SUPPORT: Role.SUPPORT,
    Channel.ADMIN: Role.ADMIN,
    Channel.SYSTEM: Role.SYSTEM,
}
NO_META = RequestMeta()
CONSENT_FIELDS = (
    "state",
    "policy",
    "version",
    "head_hash",
    "decided_at",
    "deferred_until",
    "updated_at",
)


@dataclass(frozen=True)
class Seen:
    """The consent a page showed, sent back with a change made on it: its version, state and
    head. A change is made from it without reading the row, written only if it still holds."""

    version: int
    state: str
    head_hash: str

    # At most nine digits: the number of the event that follows must fit PostgreSQL's integer.
    FORMAT = re.compile(r"([1-9][0-9]{0,8})\.(allowed|declined|undecided)\.([0-9a-f]{64})")

    def __str__(self) -> str:
        return f"{self.version}.{self.state}.{self.head_hash}"

    @classmethod
    def of(cls, consent: TrainingConsent) -> "Seen | None":
        if not consent.version:
            return None
        return cls(consent.version, consent.state, consent.head_hash)

    @classmethod
    def parse(cls, text: str) -> "Seen | None":
        """Return the claim the text states, or None if it states none."""
        match = cls.FORMAT.fullmatch(text)
        if match is None:
            return None
        return cls(int(match[1]), match[2], match[3])


# The published policies this process has read, by version. What a policy's publication fixed
# never changes again (database triggers refuse it); its deadline may still move later, so
# nothing on the claimed path reads that.
_published_by_version: dict[int, ConsentPolicy] = {}


class ConsentError(Exception):
    """A consent change that cannot be made; nothing was written."""


class ConsentThrottled(ConsentError):
    """The setting changed as often as the rate allows; retry_after says when it may again."""

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(f"Too many changes: try again in {retry_after} s.")
        self.retry_after = retry_after


def _check_actor(*, user: User, actor: User | None, channel: str, reason: str, reference: str):
    if channel not in ROLE_BY_CHANNEL:
        raise ConsentError(f"Unknown channel {channel!r}.")
    role = ROLE_BY_CHANNEL[Channel(channel)]
    if role == Role.USER and actor not in (None, user):
        raise ConsentError("Only the user can act on this channel.")
    if role == Role.SYSTEM and actor is not None:
        raise ConsentError("The system channel has no acting user.")
    if role == Role.SUPPORT:
        if actor is None or not actor.has_perm("consent.view_consent_history"):
            raise ConsentError("Only a support agent can act on the support channel.")
        if not reason.strip() or not reference.strip():
            raise ConsentError("A support change needs a reason and a reference.")
    if role == Role.ADMIN:
        if actor is None or not actor.is_staff:
            raise ConsentError("Only an admin can act on the admin channel.")
        if not reason.strip():
            raise ConsentError("An admin change needs a reason.")
    return role


def _published(policy: ConsentPolicy | None) -> ConsentPolicy:
    if policy is None:
        raise ConsentError("No consent policy has been published.")
    return policy


def _require_consumer(user: User) -> None:
    if not user.is_consumer:
        raise ConsentError("Users on commercial plans are not asked and cannot be changed.")


def _lock_consent(user: User) -> tuple[TrainingConsent, ConsentPolicy | None]:
    """Lock the user's consent row, created on the first touch; return it and the current policy."""
    locked = consent_lock(user.pk)
    if locked is None:  # a concurrent first touch may win the insert
        TrainingConsent.objects.bulk_create([TrainingConsent(user=user)], ignore_conflicts=True)
        locked = consent_lock(user.pk)
        assert locked is not None
    consent, policy = locked
    consent.user = user
    if policy is not None and consent.policy_id == policy.pk:
        consent.policy = policy
    return consent, policy


def _next_event(
    consent: TrainingConsent,
    *,
    kind: str,
    after: str,
    policy: ConsentPolicy | None,
    channel: str,
    role: str,
    actor: User | None = None,
    meta: RequestMeta = NO_META,
    shown_default: bool | None = None,
    reason: str = "",
    reference: str = "",
    now: datetime,
) -> ConsentEvent:
    user = consent.user
    event = ConsentEvent(
        subject_id=user.subject_id,
        number=consent.version + 1,
        kind=kind,
        before=consent.state,
        after=after,
        plan=user.plan,
        policy=policy,
        shown_default=shown_default,
        gpc=meta.gpc,
        channel=channel,
        actor_role=role,
        actor_subject_id=actor.subject_id if actor else None,
        reason=reason.strip(),
        reference=reference.strip(),
        ip_prefix=meta.ip_prefix,
        user_agent=meta.user_agent,
        created_at=now,
        prev_hash=consent.head_hash or GENESIS_HASH,
    )
    event.hash = event_hash(event)
    consent.version, consent.head_hash, consent.state = event.number, event.hash, after
    return event


def _save(
    consent: TrainingConsent,
    event: ConsentEvent,
    *,
    claimed: bool = False,
    nth_decision_by: tuple[int, datetime] | None = None,
) -> bool:
    """Write the event, its deliveries and the row's new state, if the row is still at the
    version the event follows (and the other conditions of change_save hold); drain after
    commit. Tell whether it was written."""
    deliveries = outbox_deliveries(event)
    written = change_save(
        event,
        deliveries,
        consent,
        CONSENT_FIELDS,
        read_version=event.number - 1,
        claimed=claimed,
        nth_decision_by=nth_decision_by,
    )
    if written and deliveries:
        transaction.on_commit(schedule_drain_after_commit)
    return written


def _save_locked(consent: TrainingConsent, event: ConsentEvent) -> None:
    if not _save(consent, event):
        raise ConsentError("The consent row changed under its lock; nothing was written.")


def consent_change(
    *,
    user: User,
    allowed: bool,
    channel: str,
    actor: User | None = None,
    policy_version: int | None = None,
    shown_default: bool | None = None,
    reason: str = "",
    reference: str = "",
    meta: RequestMeta = NO_META,
    rate: tuple[int, int] | None = None,
    seen: Seen | None = None,
    now: datetime | None = None,
) -> ConsentEvent | None:
    """Record the user's choice, from the pop-up, settings, support, admin or the API.

    The change is made from an unlocked read and written in one statement only if the consent
    row's version is still the one read: the statement is the transaction, and the row is locked
    only while it runs. If the row moved meanwhile (or does not exist yet), the change is made
    again under the row's lock. With a rate of (limit, seconds), a change is refused with
    ConsentThrottled when the user made that many decisions themselves in that many seconds.

    A page that sends what it showed (seen) and the policy version it showed, for a change of
    the state, spares the read: the change is made from them and written only if the row, the
    newest policy and the rate still agree. Whatever does not (a stale or a forged claim) is
    made again from a read, as above, so a claim never puts a wrong link in the chain. The
    event's policy is then this process's copy of it, whose decision deadline may be older
    than the database's.
    """
    if not isinstance(allowed, bool):
        raise ConsentError("The choice must be allowed or declined.")
    role = _check_actor(user=user, actor=actor, channel=channel, reason=reason, reference=reference)
    _require_consumer(user)
    if channel == Channel.POPUP and not isinstance(shown_default, bool):
        raise ConsentError("A pop-up decision records the default that was shown.")
    decide = partial(
        _decision,
        allowed=allowed,
        channel=channel,
        role=role,
        actor=actor,
        policy_version=policy_version,
        shown_default=shown_default,
        reason=reason,
        reference=reference,
        meta=meta,
        now=now,
    )
    if guarded_writes():
        event = _claimed_change(user, allowed, seen, policy_version, rate, decide)
        if event is not None:
            return event
        consent, current, nth_latest_at = _read(user, rate)
        if consent is not None:
            event = decide(consent, current)
            if event is None:
                return None
            _check_rate(rate, nth_latest_at)
            if _save(consent, event):
                return event
    with transaction.atomic():
        consent, current = _lock_consent(user)
        event = decide(consent, current)
        if event is not None:
            if rate is not None:
                _check_rate(rate, decision_nth_latest(user.subject_id, rate[0] - 1))
            _save_locked(consent, event)
        return event


def _claimed_change(
    user: User,
    allowed: bool,
    seen: Seen | None,
    policy_version: int | None,
    rate: tuple[int, int] | None,
    decide: Callable[[TrainingConsent, ConsentPolicy], ConsentEvent | None],
) -> ConsentEvent | None:
    """Make and write the change from what the page showed, if it said enough to make it from;
    return None if it was not written."""
    shown = None if policy_version is None else _published_by_version.get(policy_version)
    chosen = ConsentState.ALLOWED if allowed else ConsentState.DECLINED
    # Choosing the state the page showed may be no change or a confirmation under new terms:
    # only the row and the policy it was chosen under tell, so that is left to a read.
    if seen is None or shown is None or seen.state == chosen:
        return None
    consent = TrainingConsent(
        user=user, state=seen.state, version=seen.version, head_hash=seen.head_hash
    )
    event = decide(consent, shown)
    assert event is not None  # a change of state is never a no-op
    nth_decision_by = None
    if rate is not None:
        limit, seconds = rate
        nth_decision_by = (limit - 1, event.created_at - timedelta(seconds=seconds))
    written = _save(consent, event, claimed=True, nth_decision_by=nth_decision_by)
    return event if written else None


def _read(
    user: User, rate: tuple[int, int] | None
) -> tuple[TrainingConsent | None, ConsentPolicy | None, datetime | None]:
    """Read the consent, the current policy and, under a rate of (limit, seconds), the time of the
    user's limit-th latest decision."""
    if rate is None:
        consent, decided_under, current = consent_read(user.pk)
        nth_latest_at = None
    else:
        consent, decided_under, current, nth_latest_at = consent_read_with_decision(
            user.pk, user.subject_id, rate[0] - 1
        )
    if consent is not None:
        consent.user, consent.policy = user, decided_under
    if current is not None:
        _published_by_version[current.version] = current
    return consent, current, nth_latest_at


def _check_rate(rate: tuple[int, int] | None, nth_latest_at: datetime | None) -> None:
    """Refuse a change while the user's limit-th latest decision is younger than the period."""
    if rate is None or nth_latest_at is None:
        return
    wait = nth_latest_at + timedelta(seconds=rate[1]) - timezone.now()
    if wait > timedelta(0):
        raise ConsentThrottled(retry_after=math.ceil(wait.total_seconds()))


def _decision(
    consent: TrainingConsent,
    current: ConsentPolicy | None,
    *,
    allowed: bool,
    channel: str,
    role: str,
    actor: User | None,
    policy_version: int | None,
    shown_default: bool | None,
    reason: str,
    reference: str,
    meta: RequestMeta,
    now: datetime | None,
) -> ConsentEvent | None:
    """Return the decision event the choice makes of this consent, applied to it, or None.

    Its time is taken after the read it is made from, so times follow the numbers of a history.
    """
    policy = _published(current)
    if policy_version is not None and policy_version != policy.version:
        raise ConsentError(
            f"Policy version {policy_version} is not the current one ({policy.version})."
        )
    after = ConsentState.ALLOWED if allowed else ConsentState.DECLINED
    if consent.state == after and not needs_choice(consent, policy):
        return None
    now = now or timezone.now()
    event = _next_event(
        consent,
        kind=ConsentEvent.Kind.DECISION,
        after=after,
        policy=policy,
        channel=channel,
        role=role,
        actor=actor,
        meta=meta,
        shown_default=shown_default,
        reason=reason,
        reference=reference,
        now=now,
    )
    consent.policy, consent.decided_at, consent.deferred_until = policy, now, None
    return event


@transaction.atomic
def consent_defer(
    *, user: User, meta: RequestMeta = NO_META, now: datetime | None = None
) -> ConsentEvent | None:
    """Record "Not now": hide the pop-up for the policy's interval, never past the deadline."""
    _require_consumer(user)
    consent, current = _lock_consent(user)
    policy = _published(current)
    now = now or timezone.now()
    if now >= policy.decision_deadline:
        raise ConsentError("The decision deadline has passed; a choice is required.")
    if not needs_choice(consent, policy):
        raise ConsentError("There is no pending choice to defer.")
    if consent.deferred_until is not None and consent.deferred_until > now:
        return None
    event = _next_event(
        consent,
        kind=ConsentEvent.Kind.DEFERRED,
        after=consent.state,
        policy=policy,
        channel=Channel.POPUP,
        role=Role.USER,
        meta=meta,
        now=now,
    )
    consent.deferred_until = min(now + policy.defer_for, policy.decision_deadline)
    _save_locked(consent, event)
    return event


def _record_once_per_policy(
    *, user: User, kind: str, channel: str, meta: RequestMeta, shown_default: bool | None, now
) -> ConsentEvent | None:
    _require_consumer(user)
    consent, current = _lock_consent(user)
    policy = _published(current)
    seen = ConsentEvent.objects.filter(subject_id=user.subject_id, kind=kind, policy=policy)
    if seen.exists():
        return None
    event = _next_event(
        consent,
        kind=kind,
        after=consent.state,
        policy=policy,
        channel=channel,
        role=Role.USER,
        meta=meta,
        shown_default=shown_default,
        now=now or timezone.now(),
    )
    _save_locked(consent, event)
    return event


@transaction.atomic
def notice_record_served(
    *, user: User, meta: RequestMeta = NO_META, now: datetime | None = None
) -> ConsentEvent | None:
    """Record, once per policy version, that the pop-up was shown to the user, and its default."""
    policy = _published(policy_current())
    default = shown_default(policy, gpc=meta.gpc, last=last_decision(user))
    return _record_once_per_policy(
        user=user,
        kind=ConsentEvent.Kind.NOTICE_SERVED,
        channel=Channel.POPUP,
        meta=meta,
        shown_default=default,
        now=now,
    )


@transaction.atomic
def gpc_record_signal(
    *, user: User, meta: RequestMeta = NO_META, now: datetime | None = None
) -> ConsentEvent | None:
    """Record, once per policy version, that the user's browser sent Sec-GPC: 1.

    The signal turns the pop-up's default off; it never changes a choice the user made.
    """
    return _record_once_per_policy(
        user=user,
        kind=ConsentEvent.Kind.GPC_SIGNAL,
        channel=Channel.GPC,
        meta=RequestMeta(meta.ip_prefix, meta.user_agent, gpc=True),
        shown_default=None,
        now=now,
    )


@transaction.atomic
def user_change_plan(
    *,
    user: User,
    plan: str,
    channel: str,
    actor: User | None = None,
    reason: str = "",
    meta: RequestMeta = NO_META,
    now: datetime | None = None,
) -> ConsentEvent | None:
    """Move the user to another plan; on a commercial plan their data is never eligible."""
    if plan not in User.Plan.values:
        raise ConsentError(f"Unknown plan {plan!r}.")
    role = _check_actor(user=user, actor=actor, channel=channel, reason=reason, reference="-")
    consent, policy = _lock_consent(user)
    if User.objects.values_list("plan", flat=True).get(pk=user.pk) == plan:
        return None
    user.plan = plan
    User.objects.filter(pk=user.pk).update(plan=plan)
    event = _next_event(
        consent,
        kind=ConsentEvent.Kind.PLAN_CHANGED,
        after=consent.state,
        policy=policy,
        channel=channel,
        role=role,
        actor=actor,
        meta=meta,
        reason=reason,
        now=now or timezone.now(),
    )
    _save_locked(consent, event)
    return event


@transaction.atomic
def account_delete(
    *,
    user: User,
    channel: str,
    actor: User | None = None,
    reason: str = "",
    meta: RequestMeta = NO_META,
    now: datetime | None = None,
) -> ConsentEvent:
    """Delete the account; the audit events stay, under the pseudonymous subject id only."""
    role = _check_actor(user=user, actor=actor, channel=channel, reason=reason, reference="-")
    consent, policy = _lock_consent(user)
    event = _next_event(
        consent,
        kind=ConsentEvent.Kind.ACCOUNT_DELETED,
        after=ConsentState.UNDECIDED,
        policy=policy,
        channel=channel,
        role=role,
        actor=actor,
        meta=meta,
        reason=reason,
        now=now or timezone.now(),
    )
    _save_locked(consent, event)
    user.delete()
    return event


def consent_expire_for_new_terms(*, now: datetime | None = None) -> int:
    """Expire choices made under older terms once terms asking for a new choice are in force.

    Until then the old choice stands; from then on those users are undecided (and so not
    eligible anywhere) until they choose again. Return how many choices expired.
    """
    now = now or timezone.now()
    policy = (
        ConsentPolicy.objects.filter(
            published_at__isnull=False, requires_new_choice=True, effective_at__lte=now
        )
        .order_by("-version")
        .first()
    )
    if policy is None:
        return 0
    stale = TrainingConsent.objects.filter(policy__version__lt=policy.version).exclude(
        state=ConsentState.UNDECIDED
    )
    expired = 0
    for user in User.objects.filter(training_consent__in=stale).iterator(chunk_size=500):
        with transaction.atomic():
            consent, _current = _lock_consent(user)
            if consent.state == ConsentState.UNDECIDED or not needs_choice(consent, policy):
                continue  # the user chose again meanwhile
            event = _next_event(
                consent,
                kind=ConsentEvent.Kind.CHOICE_EXPIRED,
                after=ConsentState.UNDECIDED,
                policy=policy,
                channel=Channel.SYSTEM,
                role=Role.SYSTEM,
                now=now,
            )
            consent.policy, consent.decided_at = None, None
            _save_locked(consent, event)
            expired += 1
    return expired


def policy_content_hash(*, title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n\n{text}".encode()).hexdigest()


def _check_terms(policy: ConsentPolicy) -> None:
    if not policy.title.strip() or not policy.text.strip():
        raise ConsentError("A policy needs a title and a text.")
    if policy.decision_deadline < policy.effective_at:
        raise ConsentError("The decision deadline cannot be before the effective date.")
    if (
        policy.defer_for <= timedelta(0)
        or min(policy.retention_days_allowed, policy.retention_days_declined) < 1
    ):
        raise ConsentError("Deferral and retention must be positive.")


def _check_admin(actor: User | None) -> None:
    if actor is None or not actor.is_staff:
        raise ConsentError("Only an admin can do this.")


def _next_version() -> int:
    """Lock the newest policy and return the next number; refuse while a draft waits."""
    latest = ConsentPolicy.objects.select_for_update().order_by("-version").first()
    if latest is not None and not latest.is_published:
        raise ConsentError(f"Draft v{latest.version} is waiting: publish or delete it first.")
    return latest.version + 1 if latest else 1


def _publish(policy: ConsentPolicy, *, actor: User | None, now: datetime) -> ConsentPolicy:
    policy.content_hash = policy_content_hash(title=policy.title, text=policy.text)
    policy.published_at = now
    policy.save()
    PolicyEvent.objects.create(
        policy=policy,
        kind=PolicyEvent.Kind.PUBLISHED,
        actor=actor,
        deadline_after=policy.decision_deadline,
        created_at=now,
    )
    return policy


@transaction.atomic
def policy_publish(
    *,
    title: str,
    text: str,
    effective_at: datetime,
    decision_deadline: datetime,
    default_allowed: bool = True,
    retention_days_allowed: int = 1825,
    retention_days_declined: int = 30,
    defer_for: timedelta = timedelta(days=1),
    requires_new_choice: bool = True,
    now: datetime | None = None,
) -> ConsentPolicy:
    """Publish the next policy version at once, its text fixed by a content hash."""
    policy = ConsentPolicy(
        title=title.strip(),
        text=text.strip(),
        effective_at=effective_at,
        decision_deadline=decision_deadline,
        default_allowed=default_allowed,
        retention_days_allowed=retention_days_allowed,
        retention_days_declined=retention_days_declined,
        defer_for=defer_for,
        requires_new_choice=requires_new_choice,
    )
    _check_terms(policy)
    policy.version = _next_version()
    return _publish(policy, actor=None, now=now or timezone.now())


@transaction.atomic
def policy_draft_save(*, policy: ConsentPolicy) -> ConsentPolicy:
    """Save a new or edited draft of the next policy version; a published one cannot change."""
    _check_terms(policy)
    if policy.pk is None:
        policy.version = _next_version()
    elif ConsentPolicy.objects.select_for_update().get(pk=policy.pk).is_published:
        raise ConsentError("A published policy cannot be edited.")
    policy.title, policy.text = policy.title.strip(), policy.text.strip()
    policy.content_hash, policy.published_at = "", None
    policy.save()
    return policy


@transaction.atomic
def policy_draft_publish(
    *, policy: ConsentPolicy, actor: User, now: datetime | None = None
) -> ConsentPolicy:
    """Publish a draft: fix its text and hash. If it asks for a new choice, users are asked again.

    Asking again needs no write per user: every consumer whose choice was made under an older
    version is prompted from now on (see consent.selectors.needs_choice).
    """
    _check_admin(actor)
    now = now or timezone.now()
    draft = ConsentPolicy.objects.select_for_update().get(pk=policy.pk)
    if draft.is_published:
        raise ConsentError("This policy is already published.")
    _check_terms(draft)
    if draft.decision_deadline <= now:
        raise ConsentError("The decision deadline has passed: move it later before publishing.")
    newest = ConsentPolicy.objects.filter(published_at__isnull=False).order_by("-version").first()
    if newest is not None and newest.version >= draft.version:
        raise ConsentError("A newer version is already published.")
    return _publish(draft, actor=actor, now=now)


@transaction.atomic
def policy_deadline_extend(
    *,
    policy: ConsentPolicy,
    decision_deadline: datetime,
    actor: User,
    reason: str,
    now: datetime | None = None,
) -> PolicyEvent:
    """Move a published policy's decision deadline later, recording who did it, when and why."""
    _check_admin(actor)
    if not reason.strip():
        raise ConsentError("Extending a deadline needs a reason.")
    locked = ConsentPolicy.objects.select_for_update().get(pk=policy.pk)
    if not locked.is_published:
        raise ConsentError("A draft's deadline is edited with the draft.")
    if decision_deadline <= locked.decision_deadline:
        raise ConsentError("A deadline can only move later, never earlier.")
    event = PolicyEvent.objects.create(
        policy=locked,
        kind=PolicyEvent.Kind.DEADLINE_EXTENDED,
        actor=actor,
        reason=reason.strip(),
        deadline_before=locked.decision_deadline,
        deadline_after=decision_deadline,
        created_at=now or timezone.now(),
    )
    locked.decision_deadline = decision_deadline
    locked.save(update_fields=["decision_deadline"])
    policy.decision_deadline = decision_deadline
    return event
