"""What a consent event means downstream: which kinds reach the sinks, and what they must hold."""

from accounts.models import User
from consent.models import ConsentEvent, ConsentState
from consent.sinks.base import Change, Interval

PROPAGATED_KINDS = frozenset(
    {
        ConsentEvent.Kind.DECISION,
        ConsentEvent.Kind.PLAN_CHANGED,
        ConsentEvent.Kind.ACCOUNT_DELETED,
        ConsentEvent.Kind.CHOICE_EXPIRED,
        ConsentEvent.Kind.RESTORED,
    }
)


def change_for(
    event: ConsentEvent, *, delivery_id: int = 0, intervals: tuple[Interval, ...] = ()
) -> Change:
    """Return what sinks must hold after this event, a fact about a pseudonymous subject."""
    deleted = event.kind == ConsentEvent.Kind.ACCOUNT_DELETED
    allowed = event.allows_training and event.plan in User.CONSUMER_PLANS and not deleted
    policy = event.policy
    decided = event.after != ConsentState.UNDECIDED and not deleted
    return Change(
        delivery_id=delivery_id,
        message_id=f"msg_{event.hash[:32]}",
        subject_id=event.subject_id,
        version=event.number,
        allowed=allowed,
        deleted=deleted,
        plan=event.plan,
        policy_version=policy.version if policy else None,
        retention_days=policy.retention_days(allowed=allowed) if policy and decided else None,
        changed_at=event.created_at,
        intervals=intervals,  # for a sink that keeps them: the subject's, up to the event
    )
