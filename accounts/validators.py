from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


class NotOnlySpacesValidator:
    """Refuse a password that is nothing but spaces: Django's validators let 8 of them through."""

    def validate(self, password: str, user: object = None) -> None:
        if not password.strip():
            raise ValidationError(_("A password cannot be only spaces."), code="password_blank")

    def get_help_text(self) -> str:
        return _("Your password cannot be only spaces.")
