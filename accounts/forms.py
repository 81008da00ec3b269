from django.contrib.auth.forms import BaseUserCreationForm

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
