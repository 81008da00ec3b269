import io
import re

import pytest
from django.core.mail.backends.console import EmailBackend as ConsoleBackend
from django.test import Client

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_every_mail_holds_its_link_whole_as_sent_and_as_make_run_prints_it(mailoutbox):
    # make run's address makes every link longer than a mail's usual 78 characters a line.
    client = Client(HTTP_HOST="127.0.0.1:8000")
    User.objects.create_user("old@example.com", PASSWORD)
    form = {"password1": PASSWORD, "password2": PASSWORD}
    client.post("/accounts/signup/", {"email": "new@example.com", **form})
    client.post("/accounts/signup/", {"email": "old@example.com", **form})
    client.post("/accounts/password_reset/", {"email": "old@example.com"})
    printed = io.StringIO()
    ConsoleBackend(stream=printed).send_messages(mailoutbox)

    assert [message.subject for message in mailoutbox] == [
        "Confirm your account",
        "You already have an account",
        "Choose a new password",
    ]
    for message in mailoutbox:
        (link,) = re.findall(r"http://127\.0\.0\.1:8000/\S+", message.body)
        assert link.encode() in message.message().as_bytes()
        assert link in printed.getvalue()
        assert "Content-Transfer-Encoding: 7bit" in message.message().as_string()
