import hashlib
import uuid
from typing import ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def email_normalized(email: str) -> str:
    """Return the form every email address is kept and looked up in: trimmed, lower case."""
    return email.strip().lower()


def sign_in_username(request: object, credentials: dict | None) -> str:
    """Return the email a sign-in tried, as sign-in throttling counts it (django-axes)."""
    return email_normalized(str((credentials or {}).get("username") or ""))


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: object) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=email_normalized(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: object) -> "User":
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username: str | None) -> "User":
        return self.get(email=email_normalized(username or ""))


class User(AbstractUser):
    class Plan(models.TextChoices):
        FREE = "free", _("Free")
        PRO = "pro", _("Pro")
        MAX = "max", _("Max")
        TEAM = "team", _("Team")
        ENTERPRISE = "enterprise", _("Enterprise")
        EDUCATION = "education", _("Education")
        GOVERNMENT = "government", _("Government")
        API = "api", _("API")

    CONSUMER_PLANS: ClassVar[frozenset[str]] = frozenset({Plan.FREE, Plan.PRO, Plan.MAX})

    username = None  # type: ignore[assignment]
    first_name = None  # type: ignore[assignment]
    last_name = None  # type: ignore[assignment]
    email = models.EmailField(_("email address"), unique=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    plan = models.CharField(_("plan"), max_length=16, choices=Plan.choices, default=Plan.FREE)
    subject_id = models.UUIDField(
        _("pseudonymous subject id"),
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text=_("The only identifier the audit log and downstream stores carry."),
    )

    signup_pending = models.BooleanField(
        _("awaiting confirmation"),
        default=False,
        editable=False,
        help_text=_(
            "Signed up, the mailed link not followed yet. Only such an account is switched on by "
            "that link, or takes a new password from signing up again: an account switched off "
            "here stays off."
        ),
    )

    objects = UserManager()  # type: ignore[assignment,misc]

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="one_account_per_email_in_any_case"),
        ]
        indexes = [
            # Support finds users by the start of their email address, whatever the collation.
            models.Index(
                fields=["email"], name="user_email_prefix", opclasses=["varchar_pattern_ops"]
            )
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = email_normalized(self.email)

    @property
    def is_consumer(self) -> bool:
        return self.plan in self.CONSUMER_PLANS

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email


def api_token_hash(token: str) -> str:
    """Return what is kept of a token: its SHA-256 (a token is 256 random bits, not a password)."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def usable(self) -> "ApiTokenQuerySet":
        """Return the tokens neither revoked nor expired."""
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now())
        )


class ApiToken(models.Model):
    """A machine client's credential for /api/v1/: shown once when made, kept only as a hash."""

    class Scope(models.TextChoices):
        ELIGIBILITY = "eligibility", _("Ask whether data is eligible")
        RUNS = "runs", _("Register training runs and read their snapshots")

    NAME_LENGTH = 100

    name = models.CharField(_("name"), max_length=NAME_LENGTH, help_text=_("Who or what uses it."))
    prefix = models.CharField(
        _("starts with"), max_length=12, editable=False, help_text=_("To tell tokens apart.")
    )
    key_hash = models.CharField(_("SHA-256 of the token"), max_length=64, unique=True)
    scopes = models.JSONField(_("scopes"), default=list)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name=_("made by"),
    )
    created_at = models.DateTimeField(_("made at"), default=timezone.now, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("API token")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
