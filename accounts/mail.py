import email.message
import email.policy

from django.core.mail import EmailMessage
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
