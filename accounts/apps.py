from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from accounts import checks  # noqa: F401 - registers the checks
        from accounts.services import sign_in_failures_forget

        user_logged_in.connect(sign_in_failures_forget, dispatch_uid="accounts.failures_forget")
