from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from consent.selectors import MAX_EVENT_NUMBER

ON_OFF = [("on", _("On")), ("off", _("Off"))]


class PolicyForm(forms.Form):
    """A post about the policy version the page showed, refusing fields it does not know."""

    expected_extra = frozenset({"csrfmiddlewaretoken"})

    # Whether it is still the current version is for the service to check, in its transaction.
    policy_version = forms.IntegerField(min_value=1)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The signed-in user is the only subject: a field naming another user (or anything else
        # unexpected) makes the whole post invalid, so a forged request changes nothing.
        unknown = set(self.data) - set(self.fields) - self.expected_extra
        if unknown:
            raise forms.ValidationError(
                _("Unexpected fields: %(names)s."), params={"names": ", ".join(sorted(unknown))}
            )
        return cleaned


class ChoiceForm(PolicyForm):
    """The toggle, on or off."""

    # The page sends a hidden "off" before the checkbox, whose "on" comes last and wins when it
    # is checked: a missing field is a forged post, never a silent "off".
    allowed = forms.ChoiceField(choices=ON_OFF)

    def clean(self) -> dict[str, Any]:
        # Sent by the pop-up's hidden first button: Enter on the switch, without JavaScript.
        if "enter" in self.data:
            raise forms.ValidationError(
                _("Nothing was saved: choose with “Save my choice” or “Decline”."), code="enter"
            )
        return super().clean()

    @property
    def allowed_value(self) -> bool:
        return self.cleaned_data["allowed"] == "on"


class DeferForm(PolicyForm):
    """ "Not now"."""


class HistoryQueryForm(forms.Form):
    """What the history page's address may ask for: an export, or the events before a number."""

    format = forms.ChoiceField(choices=[("csv", "CSV"), ("json", "JSON")], required=False)
    before = forms.IntegerField(min_value=1, max_value=MAX_EVENT_NUMBER, required=False)
