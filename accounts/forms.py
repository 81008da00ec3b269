from collections.abc import Iterator
from functools import partial
from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm, PasswordResetForm
from django.db import transaction
from django.http import HttpRequest, QueryDict
from django.utils.translation import gettext_lazy as _

from accounts.mail import mail_send
from accounts.models import User, email_normalized
from accounts.tasks import password_reset_mail


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


class SignInForm(AuthenticationForm):
    # One answer whether the account is missing, not confirmed yet or given the wrong password:
    # anyone may sign up with an address and then try that password. Django's says both fields
    # "may be case-sensitive"; an address here is not.
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _(
            "That email address and password do not match a confirmed account. Just signed up? "
            "Open the link we mailed you first. The password is case-sensitive; forgot it? "
            "Choose a new one below."
        ),
    }

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except forms.ValidationError:
            # The fields are wrong together: each says so, and is described by the message.
            for field in self.fields.values():
                field.widget.attrs.update(
                    {"aria-invalid": "true", "aria-describedby": "sign-in-error"}
                )
            raise


class PasswordResetRequestForm(PasswordResetForm):
    email = forms.EmailField(
        label=_("Email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    def get_users(self, email: str) -> Iterator[User]:
        """Return the confirmed account of this address, whatever its case; none unconfirmed."""
        users = User.objects.filter(email=email_normalized(email), is_active=True)
        return (user for user in users if user.has_usable_password())

    def save(self, *args: Any, **options: Any) -> None:
        """Leave the lookup and the mail to a worker: the answer takes as long for any address."""
        # Django's view gives the request and whether it came by HTTPS.
        queue = partial(
            password_reset_mail.delay,
            email=self.cleaned_data["email"],
            domain=options["request"].get_host(),
            use_https=options["use_https"],
        )
        transaction.on_commit(queue, robust=True)  # a broker away is logged; the answer stands

    def mail_now(self, *, domain: str, use_https: bool) -> None:
        """Mail the link to the account of this address, if it has one (Django's way)."""
        super().save(domain_override=domain, use_https=use_https)

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict,
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        """Send the link as our other mails go."""
        mail_send(to_email, "password_reset", context)


class SignupConfirmForm(forms.Form):
    password = forms.CharField(
        label=_("The password you chose when signing up"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )


class AccountDeleteForm(forms.Form):
    # The password again, checked as a sign-in is: failures count towards axes' limit, so that
    # a session left open cannot be used to guess it.

    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=_(
            "A wrong password here counts as a failed sign-in: after too many, signing in and "
            "this page both pause for a while."
        ),
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
