from django.contrib.auth.backends import AllowAllUsersModelBackend

from accounts.models import User


class SignInBackend(AllowAllUsersModelBackend):
    """Django's ModelBackend, except that it knows an account not confirmed yet by its password,
    so that the sign-in form can say what is missing (its confirm_login_allowed refuses every
    inactive account); a session is still never an inactive user's."""

    def get_user(self, user_id: int) -> User | None:
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None
