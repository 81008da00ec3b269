"""The one writer of a user's consent: decisions, "Not now", notices, GPC, plans, deletion."""

import math
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from consent.audit import GENESIS_HASH, event_hash
from consent.exceptions import (
    AccountDeleted,
    ChoiceMade,
    ConsentError,
    ConsentThrottled,
    NoPolicy,
    NotAsked,
    TermsChanged,
)
from consent.metadata import RequestMeta
from consent.metrics import DECISIONS
from consent.models import (
    SUPPORT_PERMISSION,
    ConsentEvent,
    ConsentPolicy,
    ConsentState,
    Delivery,
    TrainingConsent,
)
from consent.outbox import deliveries_for, drain_soon
from consent.selectors import (
    acted_for_others,
    deferred_until,
    last_decision,
    needs_choice,
    policy_asking_again,
    policy_current,
    shown_default,
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
CONSENT_FIELDS = [
    "state",
    "policy",
    "head_number",
    "head_hash",
    "decided_at",
    "deferred_until",
    "paced_until",
    "updated_at",
]


# Each change is one transaction: it locks the user's TrainingConsent row (_lock), appends the
# next event of the user's hash chain with one outbox Delivery per configured sink for an event
# that changes what sinks hold, and updates the row (_append); the sinks are drained after commit.
# A call that would change nothing records nothing, sends nothing and returns None.


def _check_actor(*, user: User, actor: User | None, channel: str, reason: str, reference: str):
    if channel not in ROLE_BY_CHANNEL:
        raise ConsentError(f"Unknown channel {channel!r}.")
    role = ROLE_BY_CHANNEL[Channel(channel)]
    if role == Role.USER and actor not in (None, user):
        raise ConsentError("Only the user can act on this channel.")
    if role == Role.SYSTEM and actor is not None:
        raise ConsentError("The system channel has no acting user.")
    if role == Role.SUPPORT:
        if actor is None or not actor.has_perm(SUPPORT_PERMISSION):
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
        raise NoPolicy
    return policy


def _check_terms_shown(version: int | None, policy: ConsentPolicy) -> None:
    """Refuse a choice made on a page that showed other terms than the current ones."""
    if version is not None and version != policy.version:
        raise TermsChanged(shown=version, current=policy.version)


def _require_consumer(user: User) -> None:
    if not user.is_consumer:
        raise NotAsked


def _lock(user: User) -> TrainingConsent:
    """Lock the user's consent row until the transaction ends; create it on the first touch."""
    # Callers read what needs no lock (the current policy) first: the lock is held from here to
    # the commit, and every other change of the same user waits for it.
    rows = TrainingConsent.objects.select_for_update(of=("self",)).select_related("policy")
    consent = rows.filter(user=user).first()
    if consent is None:  # a concurrent first touch may win the insert
        # Locked until the commit, so that an account deleted meanwhile is refused, not revived.
        if not User.objects.select_for_update().filter(pk=user.pk).exists():
            raise AccountDeleted
        TrainingConsent.objects.bulk_create([TrainingConsent(user=user)], ignore_conflicts=True)
        consent = rows.get(user=user)
    consent.user = user
    return consent


def _append(
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
    number: int | None = None,
    now: datetime,
) -> ConsentEvent:
    """Append the user's next event (or the one numbered so) and its deliveries; save the head."""
    user = consent.user
    event = ConsentEvent(
        subject_id=user.subject_id,
        number=number or consent.head_number + 1,
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
    event.save(force_insert=True)
    if kind in (ConsentEvent.Kind.DECISION, ConsentEvent.Kind.GPC_SIGNAL):
        transaction.on_commit(DECISIONS.labels(channel, after).inc)
    deliveries = deliveries_for(event)
    if deliveries:
        Delivery.objects.bulk_create(deliveries)
        transaction.on_commit(drain_soon)
    consent.head_number, consent.head_hash, consent.state = event.number, event.hash, after
    consent.save(update_fields=CONSENT_FIELDS)
    return event


def _pace(consent: TrainingConsent, rate: tuple[int, int], now: datetime) -> None:
    """Refuse a change faster than the rate allows, else count it (generic cell rate algorithm)."""
    # (limit, seconds) lets a user make `limit` changes at once, then one every seconds / limit.
    limit, seconds = rate
    interval = timedelta(seconds=seconds / limit)
    due = max(consent.paced_until or now, now)
    wait = due - now - interval * (limit - 1)
    if wait > timedelta(0):
        raise ConsentThrottled(retry_after=math.ceil(wait.total_seconds()))
    consent.paced_until = due + interval


@transaction.atomic
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
    now: datetime | None = None,
) -> ConsentEvent | None:
    """Record the user's choice, from the pop-up, settings, support, admin or the API."""
    if not isinstance(allowed, bool):
        raise ConsentError("The choice must be allowed or declined.")
    role = _check_actor(user=user, actor=actor, channel=channel, reason=reason, reference=reference)
    _require_consumer(user)
    if channel == Channel.POPUP and not isinstance(shown_default, bool):
        raise ConsentError("A pop-up decision records the default that was shown.")
    policy = _published(policy_current())
    consent = _lock(user)
    # policy_version is the one the choice was shown under: if no longer current, nothing is
    # recorded.
    _check_terms_shown(policy_version, policy)
    if channel == Channel.POPUP and not needs_choice(consent, policy):
        raise ChoiceMade  # a pop-up left open while the user chose in another tab
    after = ConsentState.ALLOWED if allowed else ConsentState.DECLINED
    if consent.state == after and not needs_choice(consent, policy):
        return None  # the value already held is no change, and never refused
    now = now or timezone.now()
    # Support and admins act on the user's documented request and are not paced.
    if rate is not None and role == Role.USER:
        _pace(consent, rate, now)
    consent.policy, consent.decided_at, consent.deferred_until = policy, now, None
    return _append(
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


@transaction.atomic
def consent_defer(
    *,
    user: User,
    policy_version: int | None = None,
    meta: RequestMeta = NO_META,
    now: datetime | None = None,
) -> ConsentEvent | None:
    """Record "Not now": hide the pop-up for the policy's interval, never past the deadline."""
    _require_consumer(user)
    policy = _published(policy_current())
    consent = _lock(user)
    _check_terms_shown(policy_version, policy)
    now = now or timezone.now()
    if now >= policy.decision_deadline:
        raise ConsentError("The decision deadline has passed; a choice is required.")
    if not needs_choice(consent, policy):
        raise ConsentError("There is no pending choice to defer.")
    if deferred_until(consent, policy, now=now) is not None:
        return None  # said already to these terms
    consent.deferred_until = min(now + policy.defer_for, policy.decision_deadline)
    return _append(
        consent,
        kind=ConsentEvent.Kind.DEFERRED,
        after=consent.state,
        policy=policy,
        channel=Channel.POPUP,
        role=Role.USER,
        meta=meta,
        now=now,
    )


def _record_once_per_policy(
    *,
    user: User,
    kind: str,
    channel: str,
    meta: RequestMeta,
    shown_default: bool | None,
    now: datetime | None,
) -> ConsentEvent | None:
    _require_consumer(user)
    policy = _published(policy_current())
    consent = _lock(user)
    seen = ConsentEvent.objects.filter(subject_id=user.subject_id, kind=kind, policy=policy)
    if seen.exists():
        return None
    return _append(
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


@transaction.atomic
def notice_record_served(
    *,
    user: User,
    channel: str = Channel.POPUP,
    meta: RequestMeta = NO_META,
    now: datetime | None = None,
) -> ConsentEvent | None:
    """Record, once per policy version, that its notice was shown to the user, and its default."""
    # By the pop-up or the settings page, whichever asked first.
    default = shown_default(policy_current(), gpc=meta.gpc, last=last_decision(user))
    return _record_once_per_policy(
        user=user,
        kind=ConsentEvent.Kind.NOTICE_SERVED,
        channel=channel,
        meta=meta,
        shown_default=default,
        now=now,
    )


@transaction.atomic
def gpc_record_signal(
    *, user: User, meta: RequestMeta = NO_META, now: datetime | None = None
) -> ConsentEvent | None:
    """Record, once per policy version, that the user's browser sent Sec-GPC: 1."""
    # The signal turns the pop-up's default off; it never changes a choice the user made.
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
    """Move the user to another plan; return the newest event recorded, None if already on it."""
    # On a commercial plan their data is never eligible.
    if plan not in User.Plan.values:
        raise ConsentError(f"Unknown plan {plan!r}.")
    role = _check_actor(user=user, actor=actor, channel=channel, reason=reason, reference="-")
    consent = _lock(user)
    if User.objects.values_list("plan", flat=True).get(pk=user.pk) == plan:
        return None
    user.plan = plan
    User.objects.filter(pk=user.pk).update(plan=plan)
    now = now or timezone.now()
    event = _append(
        consent,
        kind=ConsentEvent.Kind.PLAN_CHANGED,
        after=consent.state,
        # The terms the standing choice was made under, whose retention applies; if none, the
        # terms the user is asked under.
        policy=consent.policy or policy_current(),
        channel=channel,
        role=role,
        actor=actor,
        meta=meta,
        reason=reason,
        now=now,
    )
    # New terms in force that ask again ended the choice while the plan kept the user out of
    # their reach: back on a consumer plan, it ends at once, never sent as allowed.
    asking = policy_asking_again(now)
    decided = consent.state != ConsentState.UNDECIDED
    if asking is not None and decided and needs_choice(consent, asking):
        return _choice_expire(consent, asking, now)
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
    if acted_for_others(user):  # who did it stays answerable, by name, in their histories
        raise ConsentError(
            "This account changed other users' settings or plans, and their histories name it: "
            "an administrator can deactivate it, not delete it."
        )
    policy = policy_current()
    consent = _lock(user)
    event = _append(
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
    user.delete()
    return event


def _choice_expire(consent: TrainingConsent, policy: ConsentPolicy, now: datetime) -> ConsentEvent:
    # Undecided, and so eligible nowhere, until they choose again. Recorded at the latest a
    # minute after it happened (the task's); the reason says when.
    consent.policy, consent.decided_at = None, None
    return _append(
        consent,
        kind=ConsentEvent.Kind.CHOICE_EXPIRED,
        after=ConsentState.UNDECIDED,
        policy=policy,
        channel=Channel.SYSTEM,
        role=Role.SYSTEM,
        reason=(
            f"Version {policy.version} of the terms came into force on "
            f"{policy.in_force_from:%Y-%m-%d %H:%M:%S} UTC and asks everyone again: the choice "
            "ended then."
        ),
        now=now,
    )


def consent_expire_for_new_terms(*, now: datetime | None = None) -> int:
    """Expire choices made under older terms once terms asking for a new choice are in force."""
    now = now or timezone.now()
    policy = policy_asking_again(now)
    if policy is None:
        return 0
    stale = TrainingConsent.objects.filter(policy__version__lt=policy.version).exclude(
        state=ConsentState.UNDECIDED
    )
    expired = 0
    for user in User.objects.filter(training_consent__in=stale).iterator(chunk_size=500):
        with transaction.atomic():
            consent = _lock(user)
            if consent.state == ConsentState.UNDECIDED or not needs_choice(consent, policy):
                continue  # the user chose again meanwhile
            _choice_expire(consent, policy, now)
            expired += 1
    return expired


@transaction.atomic
def consent_restore(
    *,
    user: User,
    number: int,
    allowed: bool | None,
    deleted: bool,
    plan: str,
    policy: ConsentPolicy | None,
    decided_at: datetime | None,
    detail: str,
    lost_after: datetime | None = None,
    now: datetime | None = None,
) -> ConsentEvent:
    """Re-establish the newest state the sinks hold for the user after a restore from a backup."""
    consent = _lock(user)
    # One event, numbered past every number the sinks were sent, that says what was lost.
    if number <= consent.head_number:
        raise ConsentError(f"Event {number} is not past the user's head ({consent.head_number}).")
    # A state that cannot be established (allowed is None, or its policy is gone) becomes
    # undecided: eligible nowhere, and asked again (fail closed). The detail says which.
    established = allowed is not None and policy is not None and not deleted
    after = (
        (ConsentState.ALLOWED if allowed else ConsentState.DECLINED)
        if established
        else ConsentState.UNDECIDED
    )
    if plan != user.plan and plan in User.Plan.values:
        user.plan = plan
        User.objects.filter(pk=user.pk).update(plan=plan)
    now = now or timezone.now()
    # Dated when the changes were lost, not now: as of any moment since, the user's data is
    # eligible only where the stores knew it was. The lost changes came after the user's newest
    # event kept, and after lost_after (the backup's); of them only the newest state is known.
    # So from then on nothing counts as allowed, and an allowed state from when it was chosen.
    head = ConsentEvent.objects.filter(subject_id=user.subject_id, number=consent.head_number)
    kept = [t for t in (head.values_list("created_at", flat=True).first(), lost_after) if t]
    lost_from = min(max(kept, default=now) + timedelta(microseconds=1), now)
    # A time the stores give before the changes were lost (a clock behind) says nothing: from now.
    chosen_at = now
    if decided_at is not None and lost_from <= decided_at <= now:
        chosen_at = decided_at
    restore = partial(
        _append,
        consent,
        kind=ConsentEvent.Kind.RESTORED,
        channel=Channel.SYSTEM,
        role=Role.SYSTEM,
    )
    if after == ConsentState.ALLOWED and chosen_at > lost_from:
        restore(
            after=ConsentState.UNDECIDED,
            policy=policy_current(),
            reason=(
                f"The database was restored from a backup: the changes made after "
                f"{lost_from:%Y-%m-%d %H:%M:%S} UTC were lost. Until the newest of them, at "
                f"{chosen_at:%Y-%m-%d %H:%M:%S} UTC, nothing counts as allowed."
            ),
            number=number,
            now=lost_from,
        )
        number += 1
    consent.policy = policy if established else None
    consent.decided_at = chosen_at if established else None
    consent.deferred_until = None
    event = restore(
        after=after,
        policy=policy if established else policy_current(),
        reason=detail,
        number=number,
        now=chosen_at if after == ConsentState.ALLOWED else lost_from,
    )
    if deleted:
        user.delete()
    return event
