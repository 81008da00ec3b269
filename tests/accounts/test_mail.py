import io
import logging
import re
import smtplib
import time
import uuid

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.console import EmailBackend as ConsoleBackend
from django.test import Client

from accounts.models import User
from accounts.tasks import mail_deliver
from tests.accounts.test_password_reset import ask_for_a_link
from tests.conftest import free_port
from tests.factories import PASSWORD
from tests.support.celery import celery_broker
from tests.support.mail import QUEUED, RefusingSmtpServer

pytestmark = pytest.mark.django_db


def test_every_mail_holds_its_link_whole_as_sent_and_as_make_run_prints_it(mailoutbox):
    # make run's address makes every link longer than a mail's usual 78 characters a line.
    client = Client(HTTP_HOST="127.0.0.1:8000")
    User.objects.create_user("old@example.com", PASSWORD)
    form = {"password1": PASSWORD, "password2": PASSWORD}
    client.post("/accounts/signup/", {"email": "new@example.com", **form})
    client.post("/accounts/signup/", {"email": "old@example.com", **form})
    ask_for_a_link(client, "old@example.com")
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


def delivered_link(mail) -> str:
    found = re.search(r"http://testserver(/\S+/)", mail.get_content())
    assert found is not None, mail.get_content()
    return found[1]


@pytest.mark.django_db(transaction=True)
def test_a_worker_sends_the_mail_and_looks_up_who_gets_a_new_password(client, mail_worker):
    User.objects.create_user("old@example.com", PASSWORD)
    form = {"password1": PASSWORD, "password2": PASSWORD}
    mail_worker.start()

    client.post("/accounts/password_reset/", {"email": "nobody@example.com"})
    client.post("/accounts/signup/", {"email": "new@example.com", **form})
    client.post("/accounts/signup/", {"email": "old@example.com", **form})
    client.post("/accounts/password_reset/", {"email": "OLD@example.com"})
    mails = mail_worker.wait_for(3)

    # One worker takes the tasks in turn: the unknown address's came first, and mailed nobody.
    assert [(mail["To"], mail["Subject"]) for mail in mails] == [
        ("new@example.com", "Confirm your account"),
        ("old@example.com", "You already have an account"),
        ("old@example.com", "Choose a new password"),
    ]
    confirmed = client.post(delivered_link(mails[0]), {"password": PASSWORD})
    assert confirmed.status_code == 302
    assert User.objects.get(email="new@example.com").is_active
    client.post("/accounts/logout/")
    form = client.get(delivered_link(mails[2]))
    new = {
        "new_password1": "another-long-password-456",
        "new_password2": "another-long-password-456",
    }
    assert client.post(form["Location"], new).status_code == 302
    assert User.objects.get(email="old@example.com").check_password(new["new_password1"])


@pytest.mark.django_db(transaction=True)
def test_a_mail_server_away_delays_the_mail_and_loses_none(client, mail_worker):
    closed = str(free_port())  # nothing listens there
    away = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": closed, "EMAIL_USE_TLS": "false"}
    mail_worker.start(**away)

    answer = client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert answer.status_code == 200  # the request never waited for the mail server
    deadline = time.monotonic() + 30
    while "ConnectionRefusedError" not in mail_worker.stack.worker_logs():
        assert time.monotonic() < deadline, mail_worker.stack.worker_logs()
        time.sleep(0.1)
    mail_worker.stack.workers[0].stop()  # the mail, waiting for its next try, goes back

    mail_worker.start()  # a worker that can send it

    (mail,) = mail_worker.wait_for(1)
    assert (mail["To"], mail["Subject"]) == ("new@example.com", "Confirm your account")


@pytest.mark.django_db(transaction=True)
def test_a_broker_away_leaves_the_answer_as_it_is_and_logs_the_mail_not_queued(
    client, settings, monkeypatch, caplog
):
    settings.MAILERS = {"default": QUEUED, "delivery": settings.MAILERS["delivery"]}
    form = {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD}

    with celery_broker(f"redis://127.0.0.1:{free_port()}/0", monkeypatch):
        signed_up = client.post("/accounts/signup/", form)
        reset = client.post("/accounts/password_reset/", {"email": "new@example.com"})

    assert signed_up.status_code == 200 and "Check your email" in signed_up.content.decode()
    assert reset.status_code == 302
    assert User.objects.filter(email="new@example.com", is_active=False).exists()
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failed) == 2 and all("on_commit()" in message for message in failed)


def test_only_plain_text_mail_is_queued(settings):
    settings.MAILERS = {"default": QUEUED, "delivery": settings.MAILERS["delivery"]}
    message = EmailMultiAlternatives("Subject", "Body", to=["someone@example.com"])
    message.attach_alternative("<p>Body</p>", "text/html")

    with pytest.raises(ValueError, match="plain-text"):
        message.send()


def test_at_most_five_mails_an_hour_go_to_one_address(mailoutbox, caplog):
    to, other = ([f"{uuid.uuid4().hex}@example.com"] for _ in range(2))  # new to the cache
    fields = {"subject": "Choose a new password", "body": "...", "to": to}

    for _ in range(7):
        mail_deliver("delivery", fields)  # as a worker runs each one the web process queues
    mail_deliver("delivery", fields | {"to": other})
    mail_deliver("delivery", fields | {"subject": "Confirm your account"})  # another kind

    assert [(mail.to, mail.subject) for mail in mailoutbox] == [
        *[(to, "Choose a new password")] * 5,
        (other, "Choose a new password"),
        (to, "Confirm your account"),
    ]
    assert "too many of them to the address lately" in caplog.text


@pytest.mark.parametrize(
    ("reply", "tried_again"),
    [("451 4.3.0 try again later", True), ("550 5.1.0 sender refused", False)],
)
def test_a_refusal_for_good_is_logged_once_and_one_for_now_tried_again(
    settings, caplog, reply, tried_again
):
    server = RefusingSmtpServer(reply)
    options = {"host": "127.0.0.1", "port": server.port, "use_tls": False, "timeout": 5}
    settings.MAILERS = settings.MAILERS | {
        "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}
    }
    to = [f"{uuid.uuid4().hex}@example.com"]
    fields = {"subject": "Confirm your account", "body": "...", "to": to}

    try:
        # Run here, a task given up by retry() raises its error; in a worker it comes back.
        if tried_again:
            with pytest.raises(smtplib.SMTPSenderRefused):
                mail_deliver("smtp", fields)
        else:
            mail_deliver("smtp", fields)
    finally:
        server.shutdown()
        server.server_close()

    said = "refused it for good" if not tried_again else "try 1"
    assert said in caplog.text
