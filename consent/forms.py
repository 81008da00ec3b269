from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from consent.services import Seen

ON_OFF = [("on", _("On")), ("off", _("Off"))]


class PolicyForm(forms.Form):
    """A post about the policy version the page showed; refuses fields it does not know.

    The signed-in user is the only subject: a field naming another user (or anything else
    unexpected) makes the whole post invalid, so a forged request changes nothing. Whether the
    version is still the current one is for the service to check, in its transaction.
    """

    expected_extra = frozenset({"csrfmiddlewaretoken"})

    policy_version = forms.IntegerField(min_value=1)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        unknown = set(self.data) - set(self.fields) - self.expected_extra
        if unknown:
            raise forms.ValidationError(
                _("Unexpected fields: %(names)s."), params={"names": ", ".join(sorted(unknown))}
            )
        return cleaned


class ChoiceForm(PolicyForm):
    """The toggle, on or off.

    The page sends a hidden "off" before the checkbox, whose "on" comes last and wins when it is
    checked: a missing field is a forged post, never a silent "off".
    """

    allowed = forms.ChoiceField(choices=ON_OFF)

    @property
    def allowed_value(self) -> bool:
        return self.cleaned_data["allowed"] == "on"


class SettingsChoiceForm(ChoiceForm):
    """The settings page's toggle, with what the page showed of the setting when it was sent."""

    seen = forms.CharField(label=_("Page"), required=False, max_length=100, strip=False)

    def clean_seen(self) -> Seen | None:
        """Return what the page showed; before a first change it showed nothing to send."""
        text = self.cleaned_data["seen"]
        if not text:
            return None
        seen = Seen.parse(text)
        if seen is None:
            raise forms.ValidationError(_("This page is out of date. Reload it and try again."))
        return seen


class DeferForm(PolicyForm):
    """ "Not now"."""
