"""The one writer of policies: drafts, publication, and deadlines that only move later."""

import hashlib
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from consent.exceptions import ConsentError
from consent.models import ConsentPolicy, PolicyEvent

MOST_EXTENDED = timedelta(days=366)


def policy_content_hash(*, title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n\n{text}".encode()).hexdigest()


def _check_terms(policy: ConsentPolicy) -> None:
    if not policy.title.strip() or not policy.text.strip():
        raise ConsentError("A policy needs a title and a text.")
    try:  # the bounds the model's fields and constraints declare, as the admin's form checks them
        policy.full_clean(exclude=["version", "content_hash"], validate_unique=False)
    except ValidationError as error:
        raise ConsentError(" ".join(dict.fromkeys(error.messages))) from error


def _check_admin(actor: User | None) -> None:
    if actor is None or not actor.is_staff:
        raise ConsentError("Only an admin can do this.")


def _next_version() -> int:
    """Lock the newest policy and return the next version; refuse while a draft waits."""
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
    """Publish a draft, fixing its text and hash; users are asked again if it asks a new choice."""
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
    # Asking again needs no write per user: every consumer whose choice was made under an older
    # version is prompted from now on (consent.selectors.needs_choice).
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
        raise ConsentError(
            f"A deadline can only move later than {locked.decision_deadline:%Y-%m-%d %H:%M} UTC,"
            " never earlier."
        )
    now = now or timezone.now()
    # An extension cannot be taken back: a year at a time, so that a mistyped year is refused.
    furthest = max(locked.decision_deadline, now) + MOST_EXTENDED
    if decision_deadline > furthest:
        raise ConsentError(
            f"A deadline moves at most a year at a time: {furthest:%Y-%m-%d %H:%M} UTC at the "
            "latest. Check the year."
        )
    event = PolicyEvent.objects.create(
        policy=locked,
        kind=PolicyEvent.Kind.DEADLINE_EXTENDED,
        actor=actor,
        reason=reason.strip(),
        deadline_before=locked.decision_deadline,
        deadline_after=decision_deadline,
        created_at=now,
    )
    locked.decision_deadline = decision_deadline
    locked.save(update_fields=["decision_deadline"])
    policy.decision_deadline = decision_deadline
    return event


# Copies outside the database (consent.audit keeps them beside the checkpoints): the terms a
# restore of the database from an older backup would lose, to be published again as they were.


def policy_copy_fields(policy: ConsentPolicy) -> dict[str, Any]:
    """Return everything a published policy holds, as its copy outside the database keeps it."""
    assert policy.published_at is not None
    return {
        "version": policy.version,
        "title": policy.title,
        "text": policy.text,
        "content_hash": policy.content_hash,
        "effective_at": policy.effective_at.isoformat(),
        "decision_deadline": policy.decision_deadline.isoformat(),
        "default_allowed": policy.default_allowed,
        "retention_days_allowed": policy.retention_days_allowed,
        "retention_days_declined": policy.retention_days_declined,
        "defer_for_seconds": policy.defer_for.total_seconds(),
        "requires_new_choice": policy.requires_new_choice,
        "published_at": policy.published_at.isoformat(),
    }


def policy_from_copy(fields: dict[str, Any]) -> ConsentPolicy:
    """Return the published policy a copy outside the database describes, unsaved."""
    policy = ConsentPolicy(
        version=fields["version"],
        title=fields["title"],
        text=fields["text"],
        content_hash=fields["content_hash"],
        effective_at=datetime.fromisoformat(fields["effective_at"]),
        decision_deadline=datetime.fromisoformat(fields["decision_deadline"]),
        default_allowed=fields["default_allowed"],
        retention_days_allowed=fields["retention_days_allowed"],
        retention_days_declined=fields["retention_days_declined"],
        defer_for=timedelta(seconds=fields["defer_for_seconds"]),
        requires_new_choice=fields["requires_new_choice"],
        published_at=datetime.fromisoformat(fields["published_at"]),
    )
    if policy.content_hash != policy_content_hash(title=policy.title, text=policy.text):
        raise ValueError(f"the copy of terms version {policy.version} does not match its hash")
    return policy


@transaction.atomic
def policy_restore(copy: ConsentPolicy, *, now: datetime | None = None) -> None:
    """Take back from their copy the published terms, or their deadline, a restore lost."""
    # The terms published again as they were, or the extension of their deadline.
    now = now or timezone.now()
    held = ConsentPolicy.objects.select_for_update().filter(version=copy.version).first()
    lost = "a restore of the database from an older backup had lost it"
    if held is None or not held.is_published:
        if held is not None:  # a draft waiting under its number moves to the next one
            held.version = copy.version + 1
            held.save(update_fields=["version"])
        copy.save(force_insert=True)
        PolicyEvent.objects.create(
            policy=copy,
            kind=PolicyEvent.Kind.PUBLISHED,
            reason=(
                f"Published again from its signed copy outside the database, as first published "
                f"on {copy.published_at:%Y-%m-%d %H:%M} UTC: {lost}."
            ),
            deadline_after=copy.decision_deadline,
            created_at=now,
        )
        return
    if held.content_hash != copy.content_hash:
        raise ConsentError(
            f"Terms version {copy.version} in the database are not the text of its copy outside "
            "it: the number was published again after the restore."
        )
    if copy.decision_deadline > held.decision_deadline:
        PolicyEvent.objects.create(
            policy=held,
            kind=PolicyEvent.Kind.DEADLINE_EXTENDED,
            reason=f"The extension, taken back from the terms' signed copy: {lost}.",
            deadline_before=held.decision_deadline,
            deadline_after=copy.decision_deadline,
            created_at=now,
        )
        held.decision_deadline = copy.decision_deadline
        held.save(update_fields=["decision_deadline"])
