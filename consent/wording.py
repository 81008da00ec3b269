"""What the pages say about a user's choice, as sentences: to the user, and to staff."""

from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import User
from consent.models import ConsentEvent, TrainingConsent
from consent.selectors import Propagation, RunsSeen
from consent.templatetags.consent_format import period

Role = ConsentEvent.Role


def staff_choice_sentence(user: User, consent: TrainingConsent) -> str:
    """Say to support and admins what the user chose, since when and under which terms."""
    if not user.is_consumer:
        return _("Not eligible for training (commercial plan)")
    if consent.decided_at is None:
        return _("Not decided: not trained on until they choose")
    return _("%(choice)s, since %(when)s, under policy version %(version)s") % {
        "choice": _("Allows training") if consent.allowed else _("Declines training"),
        "when": date_format(localtime(consent.decided_at), "j M Y, H:i e"),
        "version": consent.policy.version if consent.policy else "?",
    }


def choice_sentence(
    consent: TrainingConsent, *, choice_ended: bool, by: str | None = Role.USER
) -> str:
    """Say what the user chose, when, under which version and who set it; or why there is none."""
    if consent.decided_at is not None:
        facts = {
            "when": date_format(localtime(consent.decided_at), "j F Y, H:i e"),
            "version": consent.policy.version if consent.policy else "",
        }
        if by == Role.SUPPORT:
            how = _(
                "set by our support team at your request on %(when)s, under policy version "
                "%(version)s."
            )
        elif by == Role.ADMIN:
            how = _("set by an administrator on %(when)s, under policy version %(version)s.")
        else:
            how = _("chosen on %(when)s under policy version %(version)s.")
        return f"{_('Allowed') if consent.allowed else _('Declined')}, {how % facts}"
    if choice_ended:
        return _(
            "Not chosen under the current terms: your earlier choice ended when the terms "
            "changed. Until you choose again, your chats and coding sessions are not used for "
            "training."
        )
    return _(
        "Not chosen yet. Until you choose, your chats and coding sessions are not used for "
        "training."
    )


def kept_sentence(consent: TrainingConsent, retention_days: int) -> str:
    """Say how long chats and coding sessions are kept under the choice, and why."""
    if consent.allowed:
        return _("Up to %(kept)s after you last use them, because you allow training.") % {
            "kept": period(retention_days)
        }
    return _("%(kept)s after you delete them, because training is not allowed.") % {
        "kept": period(retention_days)
    }


def reach_sentence(propagation: Propagation | None) -> str:
    """Say how many of the systems that act on the choice have applied it, and any that failed."""
    if propagation is None:  # no recent change, or no system to reach
        return ""
    applied = ngettext(
        "Applied to %(applied)d of %(total)d system that acts on this choice.",
        "Applied to %(applied)d of %(total)d systems that act on this choice.",
        propagation.total,
    ) % {"applied": propagation.applied, "total": propagation.total}
    if not propagation.failed:
        return applied
    failed = ngettext(
        "%(failed)d could not be reached; our team sees this and will apply your choice there.",
        "%(failed)d could not be reached; our team sees this and will apply your choice there.",
        propagation.failed,
    ) % {"failed": propagation.failed}
    return f"{applied} {failed}"


def runs_sentence(runs: RunsSeen, *, allowed: bool) -> str:
    """Say how many registered training runs selected the user's data while they allowed it."""
    if not runs.count or runs.latest is None:
        return _("No training run has selected your chats and coding sessions.")
    selected = ngettext(
        "%(count)d training run selected your chats and coding sessions while this setting "
        "allowed it, on %(date)s.",
        "%(count)d training runs selected your chats and coding sessions while this setting "
        "allowed it, the latest on %(date)s.",
        runs.count,
    ) % {"count": runs.count, "date": date_format(localtime(runs.latest), "j F Y")}
    if allowed:
        return selected
    return f"{selected} {_('Runs from now on will not use your stored chats.')}"
