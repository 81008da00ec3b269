import logging

from celery import Task, shared_task
from django.conf import settings
from django.core.management import call_command

from accounts.limits import counted_over
from accounts.mail import PlainTextMail

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, soft_time_limit=600, time_limit=900)
def clear_sessions() -> None:
    """Delete the sessions past their expiry: Django keeps them until asked."""
    call_command("clearsessions")


@shared_task(bind=True, max_retries=14)
def mail_deliver(self: Task, mailer: str, fields: dict) -> None:
    """Send a mail the web process queued (accounts.mail.QueuedEmailBackend); while the mail
    server is away (an SMTP error is an OSError), try again 5 s later, then 10 s, 20 s... up to
    10 minutes apart: about an hour and a half in all."""
    # Anyone may ask for a sign-up or a new password for any address, as often as they like.
    to = ",".join(sorted(fields["to"]))
    if self.request.retries == 0 and counted_over(f"mail to {to}", settings.ACCOUNT_MAIL_RATE):
        logger.warning("Mail not sent (%s): too many to the address this hour", fields["subject"])
        return
    try:
        PlainTextMail(**fields).send(using=mailer)
    except OSError as error:
        logger.warning(
            "Mail not sent (%s), try %d: %r", fields["subject"], self.request.retries + 1, error
        )
        raise self.retry(exc=error, countdown=min(600, 5 * 2**self.request.retries)) from error


@shared_task
def password_reset_mail(*, email: str, domain: str, use_https: bool) -> None:
    """Mail a link to choose a new password if a confirmed account has this address: looked up
    here, so that the request's answer takes as long for any address."""
    from accounts.forms import PasswordResetRequestForm  # which imports this module

    form = PasswordResetRequestForm({"email": email})
    if form.is_valid():
        form.mail_now(domain=domain, use_https=use_https)
