import email.message
import email.policy
from collections.abc import Sequence
from functools import partial
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.template.loader import render_to_string

# The longest line RFC 5322 allows. Python sends a body with any line longer than its policy's 78
# characters (a link, most often) as quoted-printable, which cuts the link with "=" breaks
# wherever the message is read raw: in the terminal the console backend prints it to, say.
LONGEST_LINE = 998


class PlainTextMail(EmailMessage):
    """A mail whose lines go as written, links whole, up to the longest line a mail may have."""

    def message(self, *, policy: email.policy.Policy | None = None) -> email.message.EmailMessage:
        policy = (policy or email.policy.default).clone(max_line_length=LONGEST_LINE)
        return super().message(policy=policy)


def mail_send(to: str, template: str, context: dict) -> None:
    """Send accounts/email/<template>.txt, under its _subject.txt, to one address."""
    subject = render_to_string(f"accounts/email/{template}_subject.txt", context)
    PlainTextMail(
        subject="".join(subject.splitlines()),  # a header holds one line
        body=render_to_string(f"accounts/email/{template}.txt", context),
        to=[to],
    ).send()


class QueuedEmailBackend(BaseEmailBackend):
    """A backend that queues each plain-text mail for a worker once the transaction commits."""

    def __init__(self, *, deliver_with: str, **options: Any) -> None:
        super().__init__(**options)
        self.deliver_with = deliver_with

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        from accounts.tasks import mail_deliver  # the tasks import this module

        # The worker sends with the mailer named deliver_with, retrying while the server is away:
        # a request never waits for the mail server, nor fails with it, nor takes longer for an
        # address that has an account.
        for message in email_messages:
            if message.attachments or getattr(message, "alternatives", None):
                raise ValueError("Only plain-text mail can be queued.")
            fields = {
                "subject": message.subject,
                "body": message.body,
                "from_email": message.from_email,
                "to": message.to,
                "cc": message.cc,
                "bcc": message.bcc,
                "reply_to": message.reply_to,
                "headers": message.extra_headers,
            }
            # Robust: a broker that is away is logged, and the answer already given stands.
            transaction.on_commit(
                partial(mail_deliver.delay, self.deliver_with, fields), robust=True
            )
        return len(email_messages)
