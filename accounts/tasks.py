import logging
import random
import smtplib

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
    """Send a mail that QueuedEmailBackend queued, retrying while the mail server is away."""
    # Anyone may ask for a sign-up or a new password for any address, as often as they like;
    # counted by kind, so that asking for one kind never holds back the other.
    kind, to = fields["subject"], ",".join(sorted(fields["to"]))
    if self.request.retries == 0 and counted_over(
        f"mail {kind} to {to}", settings.ACCOUNT_MAIL_RATE
    ):
        logger.warning("Mail not sent (%s): too many of them to the address lately", kind)
        return
    try:
        PlainTextMail(**fields).send(using=mailer)
    except OSError as error:  # what smtplib raises, and a connection refused or cut
        if _refused_for_good(error):
            logger.error("Mail not sent (%s): the mail server refused it for good: %r", kind, error)
            return
        logger.warning("Mail not sent (%s), try %d: %r", kind, self.request.retries + 1, error)
        # Away or "later" (4xx): again 2.5 to 5 s later, then up to 10 s, 20 s... up to 10 minutes
        # apart, 40 to 80 minutes in all.
        longest = min(600, 5 * 2**self.request.retries)
        countdown = random.uniform(longest / 2, longest)  # noqa: S311 - spreads a crowd out
        raise self.retry(exc=error, countdown=countdown) from error


def _refused_for_good(error: OSError) -> bool:
    """Tell whether the mail server's reply was a permanent refusal (5xx), never to be retried."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPResponseException) and error.smtp_code >= 500


@shared_task
def password_reset_mail(*, email: str, domain: str, use_https: bool) -> None:
    """Mail a link to choose a new password if a confirmed account has this address."""
    from accounts.forms import PasswordResetRequestForm  # which imports this module

    # Looked up here, not in the request, so that its answer takes as long for any address.
    form = PasswordResetRequestForm({"email": email})
    if form.is_valid():
        form.mail_now(domain=domain, use_https=use_https)
