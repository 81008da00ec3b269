import pgtrigger
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


@pgtrigger.register(
    pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
)
class AccessRecord(models.Model):
    """One look by a support agent at a user's consent data: who, whose, what and when."""

    class Action(models.TextChoices):
        VIEWED = "viewed", _("Opened the user's page")
        EXPORTED_CSV = "exported_csv", _("Exported the history as CSV")
        EXPORTED_JSON = "exported_json", _("Exported the history as JSON")

    # The agent's account cannot be deleted while records name it.
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("agent"),
    )
    # Pseudonymous, as in the audit log, so that the record outlives the user's account.
    subject_id = models.UUIDField(_("user's pseudonymous subject id"))
    action = models.CharField(_("what"), max_length=16, choices=Action.choices)
    detail = models.CharField(
        _("detail"),
        max_length=200,
        blank=True,
        help_text=_("The filters or page of the history that were asked for."),
    )
    ip_prefix = models.CharField(_("truncated IP address"), max_length=64, blank=True)
    at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        verbose_name = _("access record")
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["subject_id", "at"], name="access_subject_time"),
            models.Index(fields=["agent", "at"], name="access_agent_time"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.action} {self.subject_id} at {self.at:%Y-%m-%d %H:%M}"
