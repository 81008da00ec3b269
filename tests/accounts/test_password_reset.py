import re

import pytest
from django.db import connection
from django.test import Client, TestCase
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tasks import password_reset_mail
from tests.accounts.test_views import link_in, sign_up, without_csrf
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "another-long-password-456"


def ask_for_a_link(client, email):
    """Ask, then do here what a worker does with the task the answer queued (test_mail.py has
    a real worker do it)."""
    with TestCase.captureOnCommitCallbacks() as queued:
        answer = client.post("/accounts/password_reset/", {"email": email})
    for queue in queued:
        assert queue.func == password_reset_mail.delay
        password_reset_mail(**queue.keywords)
    return answer


def reset_link_in(message) -> str:
    found = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body)
    assert found is not None, message.body
    return found[1]


def choose(client, link, password=NEW_PASSWORD):
    """Follow the link from the mail and send the new password; return the answer to that."""
    form = client.get(link)
    assert form.status_code == 302  # to the same page without the token in its address
    return client.post(form["Location"], {"new_password1": password, "new_password2": password})


def signs_in(email, password) -> bool:
    answer = Client().post("/accounts/login/", {"username": email, "password": password})
    return answer.status_code == 302


def test_the_sign_in_page_leads_to_a_new_password(client):
    page = client.get("/accounts/login/").content.decode()

    assert 'href="/accounts/password_reset/"' in page
    assert "Forgot your password?" in page


def test_a_link_asked_for_in_any_case_sets_a_new_password_and_signs_in(
    client, consumer, mailoutbox
):
    asked = ask_for_a_link(client, consumer.email.upper())

    assert asked.status_code == 302
    assert asked["Location"] == "/accounts/password_reset/done/"
    (message,) = mailoutbox
    assert message.to == [consumer.email]
    link = reset_link_in(message)

    chosen = choose(client, link)

    assert chosen.status_code == 302
    assert client.get(chosen["Location"]).status_code == 200  # the page saying it is done
    assert client.get("/").status_code == 200  # signed in
    assert signs_in(consumer.email, NEW_PASSWORD)
    assert not signs_in(consumer.email, PASSWORD)


def test_the_pages_that_carry_the_token_are_never_cached(client, consumer, mailoutbox):
    ask_for_a_link(client, consumer.email)
    link = reset_link_in(mailoutbox[0])

    with_token = client.get(link)
    form = client.get(with_token["Location"])

    assert form.status_code == 200 and "new_password1" in form.content.decode()
    for answer in (with_token, form):
        cache_control = answer["Cache-Control"]
        assert "no-store" in cache_control and "private" in cache_control


def test_an_unknown_address_gets_the_same_answer_and_no_mail(client, consumer, mailoutbox):
    known = ask_for_a_link(client, consumer.email)
    known_done = without_csrf(client.get(known["Location"]).content)
    mailoutbox.clear()

    unknown = ask_for_a_link(client, "nobody@example.com")

    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    assert without_csrf(client.get(unknown["Location"]).content) == known_done
    assert "If an account has the address you entered" in known_done
    assert mailoutbox == []


def test_the_answer_does_the_same_work_for_any_address(client, consumer, mailoutbox):
    # What makes its time: the queries, the mail sent, the tasks queued. The lookup and the mail
    # are the worker's, or an address with an account would be answered more slowly.
    work = []
    for email in (consumer.email, "nobody@example.com", "NEW@example.com"):
        with (
            CaptureQueriesContext(connection) as queries,
            TestCase.captureOnCommitCallbacks() as queued,
        ):
            client.post("/accounts/password_reset/", {"email": email})
        work.append(([query["sql"] for query in queries], len(mailoutbox), len(queued)))

    assert work[0] == work[1] == work[2]
    assert work[0][1:] == (0, 1)


def test_an_unconfirmed_account_gets_no_link_nor_a_password_from_its_signup_link(
    client, mailoutbox
):
    sign_up(client, "new@example.com")
    signup_link = link_in(mailoutbox[0])
    user_id, token = signup_link.rstrip("/").split("/")[-2:]

    ask_for_a_link(client, "new@example.com")
    assert len(mailoutbox) == 1  # the sign-up's only

    # The sign-up's link is made as a reset link is: it must not set a password.
    refused = client.get(f"/accounts/reset/{user_id}/{token}/")
    assert refused.status_code == 200
    assert "no longer good" in refused.content.decode()
    user = User.objects.get(email="new@example.com")
    assert not user.is_active and user.check_password(PASSWORD)


@pytest.mark.parametrize(
    "password",
    ["short1", "password123", "12345678901234", " " * 12, "user0example.com"],
    ids=["short", "common", "numeric", "spaces", "like-the-email"],
)
def test_a_weak_new_password_is_refused(client, mailoutbox, password):
    user = User.objects.create_user("user0@example.com", PASSWORD)
    ask_for_a_link(client, user.email)

    refused = choose(client, reset_link_in(mailoutbox[0]), password)

    assert refused.status_code == 200
    assert refused.context["form"].errors
    assert User.objects.get(pk=user.pk).check_password(PASSWORD)
    assert client.get("/").status_code == 302


def test_a_used_link_is_refused(client, consumer, mailoutbox):
    ask_for_a_link(client, consumer.email)
    link = reset_link_in(mailoutbox[0])
    choose(client, link)
    client.post("/accounts/logout/")

    again = client.get(link)

    assert again.status_code == 200
    assert "no longer good" in again.content.decode()
    assert client.post(link, {"new_password1": "x", "new_password2": "x"}).status_code == 200
    assert signs_in(consumer.email, NEW_PASSWORD)


def test_a_new_password_signs_out_every_other_session(client, consumer, mailoutbox):
    elsewhere = Client()
    elsewhere.post("/accounts/login/", {"username": consumer.email, "password": PASSWORD})
    assert elsewhere.get("/").status_code == 200

    ask_for_a_link(client, consumer.email)
    choose(client, reset_link_in(mailoutbox[0]))

    assert elsewhere.get("/").status_code == 302
    assert client.get("/").status_code == 200


def test_a_new_password_lifts_the_lock_that_failed_sign_ins_put_on_the_account(
    client, consumer, mailoutbox
):
    for _ in range(5):
        client.post("/accounts/login/", {"username": consumer.email, "password": "wrong"})
    assert signs_in(consumer.email, PASSWORD) is False  # locked

    ask_for_a_link(client, consumer.email)
    choose(client, reset_link_in(mailoutbox[0]))
    client.post("/accounts/logout/")

    assert signs_in(consumer.email.upper(), NEW_PASSWORD)
