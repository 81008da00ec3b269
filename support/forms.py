from datetime import date
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils.translation import gettext_lazy as _

from consent.forms import PolicyForm
from consent.models import ConsentEvent
from consent.selectors import MAX_EVENT_NUMBER
from support.selectors import HistoryFilter


class SearchForm(forms.Form):
    q = forms.CharField(
        label=_("Email, user id or subject id"),
        max_length=254,
        required=False,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )
    after = forms.CharField(max_length=254, required=False, widget=forms.HiddenInput)


# Wide enough for any real history, and narrow enough that a day can be added to its end.
DATE_RANGE = [MinValueValidator(date(2000, 1, 1)), MaxValueValidator(date(9000, 12, 31))]


class HistoryFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label=_("Kind"),
        choices=[("", _("All kinds")), *ConsentEvent.Kind.choices],
        required=False,
    )
    channel = forms.ChoiceField(
        label=_("Channel"),
        choices=[("", _("All channels")), *ConsentEvent.Channel.choices],
        required=False,
    )
    since = forms.DateField(
        label=_("From (UTC)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=DATE_RANGE,
    )
    until = forms.DateField(
        label=_("To (UTC)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=DATE_RANGE,
    )
    before = forms.IntegerField(
        min_value=1, max_value=MAX_EVENT_NUMBER, required=False, widget=forms.HiddenInput
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since: date | None = cleaned.get("since")
        until: date | None = cleaned.get("until")
        if since and until and since > until:
            # Said at the field, which is then marked invalid and described by it.
            self.add_error("until", _("The end of the date range is before its start."))
        return cleaned

    @property
    def filters(self) -> HistoryFilter:
        data = self.cleaned_data
        return HistoryFilter(data["kind"], data["channel"], data["since"], data["until"])


class SupportChangeForm(PolicyForm):
    """A change the user asked support for, with the reason and the ticket it came in on."""

    # The user is the one in the URL: a field naming anyone else makes the post invalid.
    allowed = forms.ChoiceField(
        label=_("The user asks to"),
        choices=[
            ("off", _("Decline training on their chats and coding sessions (opt out)")),
            ("on", _("Allow training on their chats and coding sessions (opt in)")),
        ],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("What the user asked for, and how they asked."),
    )
    reference = forms.CharField(
        label=_("Reference"),
        max_length=100,
        help_text=_("The ticket or message id of the user's request."),
    )

    @property
    def allowed_value(self) -> bool:
        return self.cleaned_data["allowed"] == "on"
