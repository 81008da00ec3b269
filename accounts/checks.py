from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks.mail import NON_PRODUCTION_EMAIL_BACKENDS


@register(Tags.mail, deploy=True)
def mail_delivery_check(**kwargs: object) -> list[CheckMessage]:
    """Check that the mailer the workers send with is a real one."""
    # Django's own check reads the default mailer, which here only queues the mail.
    backend = settings.MAILERS["delivery"]["BACKEND"]
    if backend not in NON_PRODUCTION_EMAIL_BACKENDS:
        return []
    return [
        Error(
            f"Mail is not sent: the workers hand it to {backend}.",
            hint="Set EMAIL_HOST (and its user and password) to send it by SMTP.",
            id="accounts.E001",
        )
    ]
