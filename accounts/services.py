"""The writers of accounts: sign-up confirmed by a mailed link, and API tokens."""

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime

from axes.utils import reset as axes_reset
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.db import transaction
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from accounts.mail import mail_send
from accounts.models import ApiToken, User, api_token_hash, email_normalized


class SignupTokenGenerator(PasswordResetTokenGenerator):
    """The sign-up link's token, made as a password reset link's is."""

    # A salt of its own, so that neither link does the other's work.
    key_salt = "accounts.services.SignupTokenGenerator"


signup_tokens = SignupTokenGenerator()


@transaction.atomic
def signup_request(
    *, email: str, password: str, confirm_url: Callable[[str, str], str], reset_url: str
) -> None:
    """Mail a new address the link that confirms its account, or tell the account's owner."""
    existing = User.objects.select_for_update().filter(email=email_normalized(email)).first()
    # The owner is told, with the way to a new password; either way the answer is the same. One
    # switched off in the admin is an existing account: signing up never switches it on again.
    if existing is not None and (existing.is_active or not existing.signup_pending):
        make_password(password)  # as long as for a new account: the answer's time tells nothing
        told = "signup_existing" if existing.is_active else "signup_switched_off"
        mail_send(existing.email, told, {"user": existing, "reset_link": reset_url})
        return
    if existing is None:
        user = User.objects.create_user(email, password, is_active=False, signup_pending=True)
    else:
        # Never confirmed: it takes the new password, and its link asks for it. Only the link
        # proves the inbox, and only the password that the inbox's owner chose switches it on.
        user = existing
        user.set_password(password)
        user.save(update_fields=["password"])
    link = confirm_url(urlsafe_base64_encode(force_bytes(user.pk)), signup_tokens.make_token(user))
    mail_send(user.email, "signup_confirm", {"user": user, "link": link})


class SignupPasswordWrong(Exception):
    """The link is good, but the password is not the one its sign-up chose; nothing changed."""


def signup_confirm(*, user_id: str, token: str, password: str) -> User | None:
    """Switch on the account the link names and return it; None for a link no longer good."""
    try:
        user = User.objects.get(pk=int(force_str(urlsafe_base64_decode(user_id))))
    except (ValueError, OverflowError, User.DoesNotExist):
        return None
    if user.is_active or not user.signup_pending or not signup_tokens.check_token(user, token):
        return None
    # The link proves the inbox; the password proves the sign-up was its owner's, not that of
    # someone who signed up with the address since.
    if not user.check_password(password):
        raise SignupPasswordWrong
    user.is_active, user.signup_pending = True, False
    user.save(update_fields=["is_active", "signup_pending"])
    return user


def sign_in_failures_forget(*, user: User, **kwargs: object) -> None:
    """Forget an account's failed sign-ins once it is signed in to (user_logged_in)."""
    # A new password's first sign-in included; not the failures of others from the same address.
    axes_reset(username=user.email)


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
    name = name.strip()
    if not name:
        raise TokenError("A token needs a name.")
    if len(name) > ApiToken.NAME_LENGTH:
        raise TokenError(f"A token's name is at most {ApiToken.NAME_LENGTH} characters.")
    if not scopes or unknown:
        raise TokenError(f"Scopes must be among {', '.join(ApiToken.Scope.values)}.")
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenError("A token cannot expire in the past.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name,
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


def api_token_use(*, secret: str, scope: str) -> ApiToken | None:
    """Return the usable token with this secret, or None; mark it used now if it has the scope."""
    token = ApiToken.objects.usable().filter(key_hash=api_token_hash(secret)).first()
    if token is not None and scope in token.scopes:
        token.last_used_at = timezone.now()
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=token.last_used_at)
    return token
