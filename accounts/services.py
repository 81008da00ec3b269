"""The one writer of API tokens: made (and shown once), revoked, and marked as used."""

import secrets
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from accounts.models import ApiToken, User, api_token_hash

TOKEN_PREFIX = "cst_"  # noqa: S105 - a prefix that tells a token apart, not a secret


class TokenError(Exception):
    """A token that cannot be made as asked; nothing was written."""


def api_token_create(
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    created_by: User | None = None,
) -> tuple[ApiToken, str]:
    """Make a token; return it and its secret, which is not kept and cannot be shown again."""
    scopes = sorted(set(scopes))
    unknown = set(scopes) - set(ApiToken.Scope.values)
    if not name.strip():
        raise TokenError("A token needs a name.")
    if not scopes or unknown:
        raise TokenError(f"Scopes must be among {', '.join(ApiToken.Scope.values)}.")
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenError("A token cannot expire in the past.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name.strip(),
        prefix=secret[:12],
        key_hash=api_token_hash(secret),
        scopes=scopes,
        expires_at=expires_at,
        created_by=created_by,
    )
    return token, secret


def api_token_revoke(*, tokens: Iterable[ApiToken]) -> int:
    """Revoke the tokens at once; return how many were still in use."""
    return ApiToken.objects.filter(
        pk__in=[token.pk for token in tokens], revoked_at__isnull=True
    ).update(revoked_at=timezone.now())


def api_token_use(secret: str) -> ApiToken | None:
    """Return the usable token with this secret, marked as used now; None if there is none."""
    token = ApiToken.objects.usable().filter(key_hash=api_token_hash(secret)).first()
    if token is not None:
        token.last_used_at = timezone.now()
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=token.last_used_at)
    return token
