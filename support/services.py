"""The one writer of access records: every look at a user's data by support leaves one."""

from uuid import UUID

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType

from accounts.models import User
from consent.metadata import RequestMeta
from consent.models import SUPPORT_CODENAME, ConsentEvent
from consent.services import NO_META
from support.models import AccessRecord

SUPPORT_GROUP = "Support"


def support_group_ensure() -> Group:
    """Return the Support group with its permission, making either again if it is missing."""
    # A data migration creates both; a database flushed since (as tests do) has neither.
    permission, _ = Permission.objects.get_or_create(
        codename=SUPPORT_CODENAME,
        content_type=ContentType.objects.get_for_model(ConsentEvent),
        defaults={"name": "Can view users' consent history"},
    )
    group, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    group.permissions.add(permission)
    return group


def access_record(
    *, agent: User, subject_id: UUID, action: str, detail: str = "", meta: RequestMeta = NO_META
) -> AccessRecord:
    """Record that the agent looked at a user's consent data, and what they asked for."""
    return AccessRecord.objects.create(
        agent=agent,
        subject_id=subject_id,
        action=action,
        detail=detail[:200],
        ip_prefix=meta.ip_prefix,
    )
