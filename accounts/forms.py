from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import BaseUserCreationForm
from django.http import HttpRequest, QueryDict
from django.utils.translation import gettext_lazy as _

from accounts.models import User, email_normalized


class SignUpForm(BaseUserCreationForm[User]):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        return email_normalized(self.cleaned_data["email"])

    # Say nothing of whether the address has an account: signup_request handles that.
    def validate_unique(self) -> None:
        pass

    def validate_constraints(self) -> None:
        pass


class AccountDeleteForm(forms.Form):
    """The password again, checked as a sign-in checks it: failures count towards the same
    limit (django-axes), so a session left open cannot be used to guess it."""

    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, request: HttpRequest, user: User, data: QueryDict | None = None) -> None:
        self.request, self.user = request, user
        super().__init__(data)

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        signed_in = authenticate(self.request, username=self.user.email, password=password)
        if signed_in is None or signed_in.pk != self.user.pk:
            raise forms.ValidationError(_("That is not your password."), code="password")
        return password
