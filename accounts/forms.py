from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm
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


class SignInForm(AuthenticationForm):
    # Shown only to whoever gave the account's password (SignInBackend).
    error_messages = {
        **AuthenticationForm.error_messages,
        "inactive": _(
            "This email address is not confirmed yet: open the link we mailed to it when you "
            "signed up. Nothing arrived? Sign up again for a new link."
        ),
    }
