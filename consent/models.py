import functools
import operator
import uuid
from datetime import datetime, timedelta

import pgtrigger
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import User

# What users were shown is fixed once a policy is published; only its deadline may move, later.
FIXED_ON_PUBLISH = [
    "version",
    "title",
    "text",
    "content_hash",
    "effective_at",
    "default_allowed",
    "retention_days_allowed",
    "retention_days_declined",
    "defer_for",
    "requires_new_choice",
    "published_at",
]


# Bounds that keep every computation with them within what dates and databases can hold.
_DEFERRAL = _("'Not now' defers the pop-up for a minute to a year, for example 1 day.")
DEFERRAL_BOUNDS = [
    MinValueValidator(timedelta(minutes=1), _DEFERRAL),
    MaxValueValidator(timedelta(days=365), _DEFERRAL),
]
_RETENTION = _("Retention is 1 to 36500 days.")
RETENTION_DAYS_BOUNDS = [MinValueValidator(1, _RETENTION), MaxValueValidator(36_500, _RETENTION)]


@pgtrigger.register(
    pgtrigger.Protect(
        name="published_terms_fixed",
        operation=pgtrigger.Update,
        condition=pgtrigger.Q(old__published_at__isnull=False)
        & (
            functools.reduce(
                operator.or_,
                [
                    pgtrigger.Q(**{f"old__{name}__df": pgtrigger.F(f"new__{name}")})
                    for name in FIXED_ON_PUBLISH
                ],
            )
            | pgtrigger.Q(new__decision_deadline__lt=pgtrigger.F("old__decision_deadline"))
        ),
    ),
    pgtrigger.Protect(
        name="published_policy_kept",
        operation=pgtrigger.Delete,
        condition=pgtrigger.Q(old__published_at__isnull=False),
    ),
)
class ConsentPolicy(models.Model):
    """One version of the terms that ask users whether their data may train models."""

    version = models.PositiveIntegerField(_("version"), unique=True)
    title = models.CharField(_("title"), max_length=200)
    text = models.TextField(_("text shown to the user"))
    content_hash = models.CharField(_("SHA-256 of title and text"), max_length=64, editable=False)
    effective_at = models.DateTimeField(_("effective from"))
    decision_deadline = models.DateTimeField(_("decision deadline"))
    default_allowed = models.BooleanField(_("toggle on by default"), default=True)
    retention_days_allowed = models.PositiveIntegerField(
        _("retention when allowed (days)"), default=1825, validators=RETENTION_DAYS_BOUNDS
    )
    retention_days_declined = models.PositiveIntegerField(
        _("retention when declined (days)"), default=30, validators=RETENTION_DAYS_BOUNDS
    )
    defer_for = models.DurationField(
        _("'Not now' defers the pop-up for"),
        help_text=_("For example 1 day."),
        validators=DEFERRAL_BOUNDS,
    )
    requires_new_choice = models.BooleanField(
        _("asks every consumer user for a new choice"), default=True
    )
    # Empty while a draft, which admins may edit; publishing fixes it (FIXED_ON_PUBLISH).
    published_at = models.DateTimeField(_("published at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent policy")
        verbose_name_plural = _("consent policies")
        ordering = ["-version"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(decision_deadline__gte=models.F("effective_at")),
                name="policy_deadline_not_before_effective_date",
                violation_error_message=_(
                    "The decision deadline cannot be before the effective date."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version}: {self.title}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    @property
    def in_force_from(self) -> datetime:
        """Return when the terms come into force: never before users could be told of them."""
        return max(self.effective_at, self.published_at or self.effective_at)

    @property
    def is_in_force(self) -> bool:
        return self.is_published and self.in_force_from <= timezone.now()

    @property
    def deadline_passed(self) -> bool:
        return self.decision_deadline <= timezone.now()

    def retention_days(self, *, allowed: bool) -> int:
        return self.retention_days_allowed if allowed else self.retention_days_declined


class ConsentState(models.TextChoices):
    UNDECIDED = "undecided", _("Not decided")
    ALLOWED = "allowed", _("Allowed")
    DECLINED = "declined", _("Declined")


class TrainingConsent(models.Model):
    """The current choice of one user; the history that led to it is in ConsentEvent."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="training_consent"
    )
    state = models.CharField(
        _("state"), max_length=16, choices=ConsentState.choices, default=ConsentState.UNDECIDED
    )
    policy = models.ForeignKey(
        ConsentPolicy,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("The policy version under which the current choice was made."),
    )
    head_number = models.PositiveIntegerField(_("number of the latest event"), default=0)
    head_hash = models.CharField(
        _("hash of the latest event"), max_length=64, blank=True, editable=False
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    deferred_until = models.DateTimeField(_("'Not now' until"), null=True, blank=True)
    # The toggle's rate limit as a generic cell rate algorithm: the moment the user's next change
    # would be due if they changed the setting at exactly the allowed pace.
    paced_until = models.DateTimeField(
        _("rate limit: next change due at"), null=True, blank=True, editable=False
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("training consent")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state=ConsentState.UNDECIDED)
                | models.Q(policy__isnull=False, decided_at__isnull=False),
                name="decided_consent_names_policy_and_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.get_state_display()}"

    @property
    def allowed(self) -> bool:
        return self.state == ConsentState.ALLOWED


# What the Support group gives: reading any user's consent history, and changing it on request.
SUPPORT_CODENAME = "view_consent_history"
SUPPORT_PERMISSION = f"consent.{SUPPORT_CODENAME}"


@pgtrigger.register(
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
)
class ConsentEvent(models.Model):
    """One entry of the append-only, hash-chained audit log of a user's consent."""

    class Kind(models.TextChoices):
        NOTICE_SERVED = "notice_served", _("Notice shown")
        DEFERRED = "deferred", _("Deferred ('Not now')")
        DECISION = "decision", _("Decision")
        GPC_SIGNAL = "gpc_signal", _("Browser opt-out signal")
        PLAN_CHANGED = "plan_changed", _("Plan changed")
        ACCOUNT_DELETED = "account_deleted", _("Account deleted")
        CHOICE_EXPIRED = "choice_expired", _("Choice expired: new terms ask for a new choice")
        RESTORED = "restored", _("Restored after the database was restored from a backup")

    class Channel(models.TextChoices):
        POPUP = "popup", _("Pop-up")
        SETTINGS = "settings", _("Privacy settings")
        SUPPORT = "support", _("Support")
        ADMIN = "admin", _("Admin")
        API = "api", _("API")
        GPC = "gpc", _("Browser signal (GPC)")
        SYSTEM = "system", _("System")

    class Role(models.TextChoices):
        USER = "user", _("The user")
        SUPPORT = "support", _("Support agent")
        ADMIN = "admin", _("Admin")
        SYSTEM = "system", _("System")

    subject_id = models.UUIDField(_("pseudonymous subject id"), db_index=False)
    number = models.PositiveIntegerField(_("number in the subject's history"))
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    before = models.CharField(_("before"), max_length=16, choices=ConsentState.choices)
    after = models.CharField(_("after"), max_length=16, choices=ConsentState.choices)
    plan = models.CharField(_("plan at the time"), max_length=16, choices=User.Plan.choices)
    policy = models.ForeignKey(
        ConsentPolicy, on_delete=models.PROTECT, null=True, related_name="events"
    )
    shown_default = models.BooleanField(_("default shown to the user"), null=True)
    gpc = models.BooleanField(_("request carried Sec-GPC: 1"), default=False)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    actor_role = models.CharField(_("acted as"), max_length=16, choices=Role.choices)
    actor_subject_id = models.UUIDField(_("actor's subject id"), null=True)
    reason = models.TextField(_("reason"), blank=True)
    reference = models.CharField(_("reference (ticket)"), max_length=100, blank=True)
    ip_prefix = models.CharField(_("truncated IP address"), max_length=64, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("at"))
    prev_hash = models.CharField(_("hash of the previous event"), max_length=64)
    # Not indexed: the app never looks an event up by its hash (the admin's search by hash reads
    # the table: an index would cost every change), and two events cannot share one, as it covers
    # their subject and number (one_number_per_subject).
    hash = models.CharField(_("hash"), max_length=64)

    class Meta:
        verbose_name = _("consent event")
        ordering = ["subject_id", "number"]
        permissions = [(SUPPORT_CODENAME, _("Can view users' consent history"))]
        constraints = [
            models.UniqueConstraint(fields=["subject_id", "number"], name="one_number_per_subject"),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="numbers_start_at_1"),
        ]
        indexes = [
            models.Index(fields=["kind", "created_at"], name="event_kind_time"),
            # The admin's search: what staff did, and support's ticket references. Partial, so
            # that a user's own change writes neither.
            models.Index(
                fields=["actor_subject_id"],
                condition=models.Q(actor_subject_id__isnull=False),
                name="event_actor",
            ),
            models.Index(
                fields=["reference"], condition=~models.Q(reference=""), name="event_reference"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject_id} #{self.number} {self.kind}"

    @property
    def allows_training(self) -> bool:
        return self.after == ConsentState.ALLOWED


class Delivery(models.Model):
    """The outbox: one consent event to be applied by one downstream sink."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        APPLIED = "applied", _("Applied")
        SUPERSEDED = "superseded", _("Superseded by a newer change")
        DEAD = "dead", _("Dead (gave up)")

    # No index of its own: one_delivery_per_event_and_sink starts with the event.
    event = models.ForeignKey(
        ConsentEvent, on_delete=models.PROTECT, related_name="deliveries", db_index=False
    )
    sink = models.CharField(_("sink"), max_length=64)
    subject_id = models.UUIDField(_("subject id"))
    event_number = models.PositiveIntegerField(_("event number"))
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    last_attempt_at = models.DateTimeField(_("last attempt at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    applied_at = models.DateTimeField(_("applied at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    # The request that made the change: the worker that applies it logs it.
    request_id = models.CharField(_("request id"), max_length=64, blank=True, default="")

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["event", "sink"], name="one_delivery_per_event_and_sink"
            )
        ]
        indexes = [
            models.Index(
                fields=["sink", "next_attempt_at", "id"],
                condition=models.Q(state="pending"),
                name="delivery_pending_due",
            ),
            models.Index(
                fields=["sink", "subject_id", "event_number"], name="delivery_sink_subject"
            ),
            models.Index(fields=["sink"], condition=models.Q(state="dead"), name="delivery_dead"),
        ]

    def __str__(self) -> str:
        return f"{self.sink} ← {self.subject_id} #{self.event_number} ({self.state})"


class Reconciliation(models.Model):
    """What one comparison of a sink with the audit log found, and when it finished or failed."""

    ERROR_LENGTH = 1000

    class Origin(models.TextChoices):
        SWEEP = "sweep", _("the hourly sweep")
        COMMAND = "command", _("a command")
        ADMIN = "admin", _("asked for in the admin")
        RESTORE = "restore", _("the recovery after a restore")

    sink = models.CharField(_("sink"), max_length=64)
    origin = models.CharField(_("origin"), max_length=16, choices=Origin, default=Origin.COMMAND)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"))
    missing = models.PositiveIntegerField(_("missing"))
    stale = models.PositiveIntegerField(_("stale"))
    extra = models.PositiveIntegerField(_("extra"))
    in_flight = models.PositiveIntegerField(_("in flight"))
    repaired = models.BooleanField(_("repaired"))
    # A sweep of the subjects in order may take several parts, each with its time budget, each
    # going on from where the last part that finished stopped.
    part = models.BooleanField(_("part of a sweep"), default=False)
    began_after = models.UUIDField(_("went on after subject"), null=True)
    stopped_after = models.UUIDField(_("stopped after subject"), null=True)  # empty: the end
    # The sink's store did not answer, or the task ran out of time: what is counted was found
    # before it failed.
    error = models.TextField(_("error"), blank=True, default="", max_length=ERROR_LENGTH)
    # The admin who asked for it, while their account lasts.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )

    class Meta:
        verbose_name = _("reconciliation")
        ordering = ["-finished_at", "-id"]
        indexes = [models.Index(fields=["sink", "-finished_at"], name="reconciliation_sink_latest")]

    def __str__(self) -> str:
        return f"{self.sink} at {self.finished_at:%Y-%m-%d %H:%M}"

    @property
    def in_sync(self) -> bool:
        return not (self.missing or self.stale or self.extra)


class EligibilityRecord(models.Model):
    """The training-data eligibility store, in the warehouse database: one row per subject."""

    subject_id = models.UUIDField(primary_key=True)
    allowed = models.BooleanField()
    deleted = models.BooleanField(default=False)
    version = models.PositiveIntegerField()
    plan = models.CharField(max_length=16)
    policy_version = models.PositiveIntegerField(null=True)
    retention_days = models.PositiveIntegerField(null=True)
    changed_at = models.DateTimeField()
    applied_at = models.DateTimeField()

    class Meta:
        db_table = "training_eligibility"
        verbose_name = _("eligibility record")

    def __str__(self) -> str:
        return f"{self.subject_id} v{self.version} allowed={self.allowed}"


class EligibilityInterval(models.Model):
    """In the warehouse database: a stretch of time during which a subject allowed training."""

    # Written with the subject's EligibilityRecord, from their whole history, each time a newer
    # change is applied; the terms in force clip it when it is read (consent.eligibility).
    subject_id = models.UUIDField()
    allowed_from = models.DateTimeField()
    allowed_until = models.DateTimeField(null=True)
    policy_version = models.PositiveIntegerField()
    retention_days = models.PositiveIntegerField()

    class Meta:
        db_table = "training_eligibility_interval"
        verbose_name = _("eligibility interval")
        indexes = [
            models.Index(fields=["subject_id", "allowed_from"], name="interval_subject_from"),
        ]

    def __str__(self) -> str:
        return f"{self.subject_id} from {self.allowed_from} until {self.allowed_until}"


class TrainingRun(models.Model):
    """A training run a pipeline registered, and the eligibility snapshot fixed for it."""

    NAME_LENGTH = 200

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(_("name"), max_length=NAME_LENGTH, unique=True)
    as_of = models.DateTimeField(_("selects data as of"))
    registered_by = models.ForeignKey(
        "accounts.ApiToken",
        on_delete=models.PROTECT,
        null=True,
        related_name="+",
        verbose_name=_("registered with the token"),
    )
    snapshot = models.JSONField(_("snapshot manifest"))
    created_at = models.DateTimeField(_("registered at"), default=timezone.now)

    class Meta:
        verbose_name = _("training run")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["as_of"], name="run_as_of")]

    def __str__(self) -> str:
        return f"{self.name} (as of {self.as_of:%Y-%m-%d %H:%M})"

    @property
    def rows(self) -> int:
        return int(self.snapshot.get("rows", 0))


@pgtrigger.register(
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
)
class PolicyEvent(models.Model):
    """What an admin did to a policy after drafting it: published it, extended its deadline."""

    class Kind(models.TextChoices):
        PUBLISHED = "published", _("Published")
        DEADLINE_EXTENDED = "deadline_extended", _("Deadline extended")

    policy = models.ForeignKey(
        ConsentPolicy, on_delete=models.PROTECT, related_name="changes", verbose_name=_("policy")
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        related_name="+",
        verbose_name=_("by"),
        help_text=_("Empty when a command did it."),
    )
    reason = models.TextField(_("reason"), blank=True)
    deadline_before = models.DateTimeField(_("deadline before"), null=True)
    deadline_after = models.DateTimeField(_("deadline after"))
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("policy event")
        ordering = ["policy", "created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(deadline_before__isnull=True)
                | models.Q(deadline_after__gt=models.F("deadline_before")),
                name="policy_deadline_only_moves_later",
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.policy.version} {self.kind} at {self.created_at:%Y-%m-%d %H:%M}"


# The audit log's tamper evidence: a Merkle tree over every event, in the order of their ids,
# whose size and root are signed every minute and copied outside this database (consent.audit).


@pgtrigger.register(
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
)
class AuditCheckpoint(models.Model):
    """A signed statement of how many events the audit log held and their Merkle root."""

    tree_size = models.PositiveBigIntegerField(_("events"), unique=True)
    last_event_id = models.BigIntegerField(_("id of the last event it covers"))
    root_hash = models.CharField(_("Merkle root"), max_length=64)
    # The roots of the tree's perfect subtrees along its right edge: the next checkpoint extends
    # the tree from them without reading the events before.
    frontier = models.JSONField(_("right edge of the tree"))
    note = models.TextField(_("signed note"))
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("audit checkpoint")
        ordering = ["-tree_size"]

    def __str__(self) -> str:
        return f"{self.tree_size} events at {self.created_at:%Y-%m-%d %H:%M}"


@pgtrigger.register(
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
)
class AuditNode(models.Model):
    """The hash of a perfect subtree of 1024 leaves or more."""

    # Kept to prove a leaf's inclusion without hashing the whole log again.
    level = models.PositiveSmallIntegerField()
    index = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("audit tree node")
        constraints = [
            models.UniqueConstraint(fields=["level", "index"], name="one_node_per_place")
        ]

    def __str__(self) -> str:
        return f"level {self.level} #{self.index}"


@pgtrigger.register(
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
)
class AuditVerification(models.Model):
    """What one verification of the whole audit log against its checkpoints found."""

    class Verdict(models.TextChoices):
        INTACT = "intact", _("Intact")
        RESTORED = "restored", _("Restored from an older backup")
        TAMPERED = "tampered", _("Tampered with")
        INCOMPLETE = "incomplete", _("Not fully checked")

    verdict = models.CharField(_("verdict"), max_length=16, choices=Verdict.choices)
    events = models.PositiveBigIntegerField(_("events checked"))
    checkpoint_size = models.PositiveBigIntegerField(_("size of the latest checkpoint"), null=True)
    detail = models.TextField(_("detail"))
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("audit verification")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} at {self.created_at:%Y-%m-%d %H:%M}"


@pgtrigger.register(
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
)
class AuditRestore(models.Model):
    """A signed statement that the database was restored from a backup."""

    # Its log agreed with the checkpoint of `kept` events; the checkpoints signed before this of
    # more events describe events it lost: verify_audit sets those aside, and holds the log to the
    # ones after.
    kept = models.PositiveBigIntegerField(_("events kept"))
    lost_through = models.PositiveBigIntegerField(_("events signed before the restore"))
    detail = models.TextField(_("what was lost and what was recovered"))
    note = models.TextField(_("signed note"))
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("audit restore")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"restore of {self.created_at:%Y-%m-%d %H:%M}: {self.kept} events kept"


class TermsCopy(models.Model):
    """In the warehouse database, outside the app's own: a signed copy of published terms."""

    # So that a restore of the app's database from an older backup can take back the terms
    # published after the backup (consent.recovery).

    version = models.PositiveIntegerField()
    # Unique by its digest: a note holds the whole text, too long for an index entry.
    sha256 = models.CharField(max_length=64, unique=True)
    note = models.TextField()  # a new one after a deadline's extension, or a new key
    copied_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "consent_terms_copy"
        verbose_name = _("terms copy")

    def __str__(self) -> str:
        return f"terms version {self.version}"


class CheckpointCopy(models.Model):
    """In the warehouse database, outside the app's own: a copy of each signed note."""

    tree_size = models.PositiveBigIntegerField()
    note = models.TextField(unique=True)
    copied_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "audit_checkpoint_copy"
        verbose_name = _("checkpoint copy")

    def __str__(self) -> str:
        return f"checkpoint of {self.tree_size} events"
