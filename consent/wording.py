"""What the privacy settings page says about the user's choice, as sentences.

The part of the page below the switch is rendered again after every change of the setting. Made
here, its sentences cost a fraction of what the template's blocktranslate and date tags did.
"""

from datetime import datetime

from django.utils.dates import MONTHS
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from consent.models import TrainingConsent
from consent.selectors import Propagation
from consent.templatetags.consent_format import period


def day_and_time(when: datetime) -> str:
    """Say a moment as the date filter's "j F Y, H:i e" would, in the current time zone."""
    when = localtime(when)
    return (
        f"{when.day} {MONTHS[when.month]} {when.year}, {when:%H:%M} {when.tzname() or ''}".strip()
    )


def choice_sentence(consent: TrainingConsent, *, choice_ended: bool) -> str:
    """Say what the user chose, when and under which policy version, or why there is no choice."""
    if consent.decided_at is not None:
        chosen = _("chosen on %(when)s under policy version %(version)s.") % {
            "when": day_and_time(consent.decided_at),
            "version": consent.policy.version if consent.policy else "",
        }
        return f"{_('Allowed') if consent.allowed else _('Declined')}, {chosen}"
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
        return _("Up to %(kept)s, because you allow training.") % {"kept": period(retention_days)}
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
