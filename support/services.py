"""The one writer of access records: every look at a user's data by support leaves one."""

from accounts.models import User
from consent.metadata import RequestMeta
from consent.services import NO_META
from support.models import AccessRecord


def access_record(
    *, agent: User, user: User, action: str, detail: str = "", meta: RequestMeta = NO_META
) -> AccessRecord:
    """Record that the agent looked at the user's consent data, and what they asked for."""
    return AccessRecord.objects.create(
        agent=agent,
        subject_id=user.subject_id,
        action=action,
        detail=detail[:200],
        ip_prefix=meta.ip_prefix,
    )
