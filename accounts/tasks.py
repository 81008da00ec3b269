import hashlib
import logging

from celery import Task, shared_task
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command

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
    if self.request.retries == 0 and _too_many_for(fields["to"]):
        logger.warning("Mail not sent (%s): too many to the address this hour", fields["subject"])
        return
    try:
        PlainTextMail(**fields).send(using=mailer)
    except OSError as error:
        logger.warning(
            "Mail not sent (%s), try %d: %r", fields["subject"], self.request.retries + 1, error
        )
        raise self.retry(exc=error, countdown=min(600, 5 * 2**self.request.retries)) from error


def _too_many_for(to: list[str]) -> bool:
    """Count a mail to these addresses; tell whether ACCOUNT_MAIL_RATE's limit is passed: anyone
    may ask for a sign-up or a new password for any address, as often as they like."""
    limit, seconds = settings.ACCOUNT_MAIL_RATE
    key = "mail-to:" + hashlib.sha256(",".join(sorted(to)).encode()).hexdigest()
    try:
        cache.add(key, 0, timeout=seconds)
        return cache.incr(key) > limit
    except Exception:  # the cache is away: send it, as if there were no limit
        logger.warning("Mail counted by no limit: the cache is not answering", exc_info=True)
        return False


@shared_task
def password_reset_mail(*, email: str, domain: str, use_https: bool) -> None:
    """Mail a link to choose a new password if a confirmed account has this address: looked up
    here, so that the request's answer takes as long for any address."""
    from accounts.forms import PasswordResetRequestForm  # which imports this module

    form = PasswordResetRequestForm({"email": email})
    if form.is_valid():
        form.mail_now(domain=domain, use_https=use_https)
