import ipaddress
import re
import uuid

import pytest
from axes.models import AccessLog
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts import tasks
from accounts.models import User
from support.services import support_group_ensure
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def without_csrf(page: bytes) -> str:
    return re.sub(r'csrf[a-z]*[^>]*(value|Token)["=: ]+"[^"]*"', "", page.decode(), flags=re.I)


def sign_up(client, email, password=PASSWORD):
    return client.post(
        "/accounts/signup/", {"email": email, "password1": password, "password2": password}
    )


def link_in(message) -> str:
    found = re.search(r"http://testserver(/accounts/signup/confirm/\S+/)", message.body)
    assert found is not None, message.body
    return found[1]


def test_signing_up_mails_a_link_that_makes_a_free_consumer_and_signs_in(client, mailoutbox):
    response = sign_up(client, " New@Example.com ")

    assert response.status_code == 200
    assert "Check your email" in response.content.decode()
    user = User.objects.get(email="new@example.com")
    assert (user.plan, user.is_active) == (User.Plan.FREE, False)
    (message,) = mailoutbox
    assert message.to == ["new@example.com"]
    link = link_in(message)
    assert "Confirm and sign in" in client.get(link).content.decode()  # a GET changes nothing
    assert not User.objects.get(pk=user.pk).is_active

    confirmed = client.post(link, {"password": PASSWORD})

    assert confirmed.status_code == 302
    assert User.objects.get(pk=user.pk).is_active
    assert client.get("/").status_code == 200
    assert client.post(link).status_code == 302  # signed in now: the form answers with home


def test_a_used_or_forged_link_confirms_nothing(client, mailoutbox):
    sign_up(client, "new@example.com")
    link = link_in(mailoutbox[0])
    client.post(link, {"password": PASSWORD})
    client.post("/accounts/logout/")

    for used_or_forged in (
        link,
        "/accounts/signup/confirm/MQ/forged-token/",
        "/accounts/signup/confirm/%%%/x/",
    ):
        refused = client.post(used_or_forged, {"password": PASSWORD})
        assert refused.status_code == 400 and "no longer good" in refused.content.decode()


@pytest.mark.parametrize(
    "form",
    [
        {"email": "not-an-email", "password1": PASSWORD, "password2": PASSWORD},
        {"email": "a@example.com", "password1": PASSWORD, "password2": "different-123456"},
        {"email": "a@example.com", "password1": "123", "password2": "123"},
        {"email": "a@example.com", "password1": " " * 8, "password2": " " * 8},
        {"email": "a@example.com", "password1": " " * 20, "password2": " " * 20},
        {"password1": PASSWORD, "password2": PASSWORD},
    ],
    ids=["email", "mismatch", "short", "eight-spaces", "spaces", "no-email"],
)
def test_bad_signups_get_a_form_error_and_create_nobody(client, form, mailoutbox):
    response = client.post("/accounts/signup/", form)

    assert response.status_code == 200
    assert response.context["form"].errors
    assert not User.objects.exists()
    assert mailoutbox == []


def test_signing_up_again_answers_the_same_and_tells_the_owner(client, consumer, mailoutbox):
    fresh = without_csrf(sign_up(Client(), "someone-new@example.com").content)

    again = without_csrf(sign_up(client, consumer.email.upper()).content)

    assert again == fresh.replace("someone-new@example.com", consumer.email)
    assert User.objects.filter(email=consumer.email).count() == 1
    owner = mailoutbox[-1]
    assert owner.to == [consumer.email] and "already has an account" in owner.body
    assert "/confirm/" not in owner.body
    assert "http://testserver/accounts/password_reset/" in owner.body


def test_an_unconfirmed_signup_can_be_asked_again_with_a_new_password(client, mailoutbox):
    sign_up(client, "new@example.com", "first-long-password-1")
    sign_up(client, "new@example.com", "second-long-password-2")

    client.post(link_in(mailoutbox[-1]), {"password": "second-long-password-2"})
    client.post("/accounts/logout/")

    response = client.post(
        "/accounts/login/", {"username": "new@example.com", "password": "second-long-password-2"}
    )
    assert response.status_code == 302


def test_a_signup_made_with_someone_elses_address_is_never_theirs_to_confirm(client, mailoutbox):
    sign_up(client, "owner@example.com", "chosen-by-the-owner-1")
    sign_up(Client(), "OWNER@example.com", "chosen-by-a-stranger-1")  # replaces the password

    # The owner follows the newest link, which the stranger's sign-up sent them, and is asked
    # for the password: theirs is not the one that sign-up chose.
    refused = client.post(link_in(mailoutbox[-1]), {"password": "chosen-by-the-owner-1"})

    assert (
        refused.status_code == 400 and "That is not the password chosen" in refused.content.decode()
    )
    assert not User.objects.get(email="owner@example.com").is_active
    assert client.get("/").status_code == 302  # not signed in
    sign_up(client, "owner@example.com", "chosen-by-the-owner-1")  # as the page says: again
    assert (
        client.post(link_in(mailoutbox[-1]), {"password": "chosen-by-the-owner-1"}).status_code
        == 302
    )
    account = User.objects.get(email="owner@example.com")
    assert account.is_active and account.check_password("chosen-by-the-owner-1")


def test_confirming_without_a_password_is_a_form_error_and_changes_nothing(client, mailoutbox):
    sign_up(client, "new@example.com")

    refused = client.post(link_in(mailoutbox[0]), {"password": ""})

    assert refused.status_code == 400 and refused.context["form"].errors
    assert not User.objects.get(email="new@example.com").is_active


def test_emails_are_one_account_whatever_their_case(client, consumer):
    response = client.post(
        "/accounts/login/", {"username": consumer.email.upper(), "password": PASSWORD}
    )

    assert response.status_code == 302
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email=consumer.email.title(), password="x")


def test_signing_in_by_email_and_out(client, consumer):
    response = client.post("/accounts/login/", {"username": consumer.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200

    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_a_wrong_password_is_a_form_error(client, consumer):
    response = client.post("/accounts/login/", {"username": consumer.email, "password": "nope"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "do not match a confirmed account" in page and "password is case-sensitive" in page
    assert "both fields may be case-sensitive" not in page  # an address is not


def test_signing_in_before_confirming_says_to_confirm_first(client, mailoutbox):
    sign_up(client, "new@example.com")

    response = client.post(
        "/accounts/login/", {"username": "New@Example.com", "password": PASSWORD}
    )

    assert response.status_code == 200
    assert "Open the link we mailed you first" in response.content.decode()
    assert client.get("/").status_code == 302  # not signed in


def test_signing_up_then_in_tells_nothing_of_an_existing_account(client, consumer, mailoutbox):
    # Anyone may sign up with an address and then try the password they gave.
    sign_up(client, "new@example.com", "chosen-by-the-prober-1")
    sign_up(client, consumer.email, "chosen-by-the-prober-1")

    answers = [
        client.post("/accounts/login/", {"username": email, "password": "chosen-by-the-prober-1"})
        for email in ("new@example.com", consumer.email)
    ]

    assert answers[0].context["form"].errors == answers[1].context["form"].errors
    assert answers[0].status_code == answers[1].status_code == 200


def test_a_deactivated_user_is_signed_out(client, consumer):
    client.post("/accounts/login/", {"username": consumer.email, "password": PASSWORD})
    assert client.get("/").status_code == 200

    User.objects.filter(pk=consumer.pk).update(is_active=False)

    assert client.get("/").status_code == 302


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_pages_carry_a_strict_content_security_policy(client):
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_sign_in_is_locked_after_five_failures_and_says_nothing_of_the_account(client, consumer):
    def attempt(email, password="wrong-password", *, browser=client):
        return browser.post("/accounts/login/", {"username": email, "password": password})

    for _ in range(4):
        assert attempt(consumer.email).status_code == 200
    assert attempt(consumer.email).status_code == 429  # the fifth failure
    locked = attempt(consumer.email, PASSWORD)
    assert locked.status_code == 429
    assert "Too many wrong passwords" in locked.content.decode()
    assert 'href="/accounts/password_reset/"' in locked.content.decode()
    assert client.get("/").status_code == 302  # the right password did not sign in

    other = Client(REMOTE_ADDR="198.51.100.9")
    for _ in range(5):
        attempt("nobody@example.com", browser=other)
    nobody = attempt("nobody@example.com", browser=other)
    assert nobody.status_code == 429
    assert without_csrf(nobody.content) == without_csrf(locked.content)


def test_signing_in_to_ones_own_account_forgets_its_failures_and_no_one_elses(client, consumer):
    own = User.objects.create_user("own@example.com", PASSWORD)

    def attempt(email, password="wrong-password"):
        return Client().post("/accounts/login/", {"username": email, "password": password})

    for _ in range(4):
        assert attempt(own.email).status_code == 200
    assert attempt(own.email, PASSWORD).status_code == 302  # forgets own's four
    for _ in range(4):
        assert attempt(consumer.email).status_code == 200
        assert attempt(own.email, PASSWORD).status_code == 302  # and not these

    assert attempt(consumer.email).status_code == 429  # the fifth guess at someone else's
    assert attempt(consumer.email, PASSWORD).status_code == 429


def test_a_sign_in_leaves_no_record_of_its_address(client, consumer):
    response = client.post("/accounts/login/", {"username": consumer.email, "password": PASSWORD})

    assert response.status_code == 302
    assert not AccessLog.objects.exists()


def test_expired_sessions_are_cleared_and_live_ones_kept(client, consumer):
    client.force_login(consumer)
    live = client.session.session_key
    stale = SessionStore()
    stale.set_expiry(-1)  # expired a second ago
    stale.create()

    tasks.clear_sessions()  # as beat's daily run has a worker do

    assert list(Session.objects.values_list("session_key", flat=True)) == [live]


@pytest.mark.parametrize("role", ["staff", "support"])
def test_an_account_switched_off_stays_off_whoever_signs_up_with_its_address(
    client, mailoutbox, role
):
    switched_off = User.objects.create_user(
        "former@example.com", PASSWORD, is_active=False, is_staff=role == "staff"
    )
    if role == "support":
        switched_off.groups.add(support_group_ensure())

    sign_up(client, "former@example.com", "chosen-by-them-again-1")

    (told,) = mailoutbox
    assert told.subject == "Your account is switched off" and "/confirm/" not in told.body
    switched_off.refresh_from_db()
    assert not switched_off.is_active and switched_off.check_password(PASSWORD)


def test_a_link_to_choose_a_new_password_confirms_no_signup(client):
    switched_off = User.objects.create_user("former@example.com", PASSWORD, is_active=False)
    switched_off.signup_pending = True  # even one awaiting its own link
    switched_off.save()
    reset_token = default_token_generator.make_token(switched_off)
    user_id = urlsafe_base64_encode(force_bytes(switched_off.pk))

    refused = client.post(
        f"/accounts/signup/confirm/{user_id}/{reset_token}/", {"password": PASSWORD}
    )

    assert refused.status_code == 400
    assert not User.objects.get(pk=switched_off.pk).is_active
    assert client.get("/").status_code == 302


def signing_up(n: int) -> dict[str, str]:
    return {"email": f"new{n}@example.com", "password1": PASSWORD, "password2": PASSWORD}


@pytest.mark.parametrize(
    ("path", "form", "done"),
    [
        ("/accounts/signup/", signing_up, 200),
        ("/accounts/password_reset/", lambda n: {"email": f"new{n}@example.com"}, 302),
    ],
    ids=["sign-up", "new-password"],
)
def test_asks_from_one_client_are_limited(settings, path, form, done):
    settings.ACCOUNT_REQUEST_RATE = (3, 3600)
    network = ipaddress.IPv6Network((uuid.uuid4().int >> 64 << 64, 64))  # new to the cache
    here, also_here = (Client(REMOTE_ADDR=str(network[n])) for n in (1, 2))  # one host's /64
    elsewhere = Client(REMOTE_ADDR=str(ipaddress.IPv6Address(uuid.uuid4().int)))

    answers = [(here if n % 2 else also_here).post(path, form(n)) for n in range(4)]

    assert [answer.status_code for answer in answers] == [done, done, done, 429]
    assert answers[3]["Retry-After"] == "3600"
    assert "Too many requests from your network" in answers[3].content.decode()
    invalid = here.post(path, {"email": "not an address"})  # costs nothing: not counted
    assert invalid.status_code == 200 and invalid.context["form"].errors
    assert elsewhere.post(path, form(9)).status_code == done


def test_a_signup_switched_on_in_the_admin_is_an_account_like_any_other(client, admin_client):
    sign_up(client, "new@example.com", "chosen-by-the-owner-1")
    pending = User.objects.get(email="new@example.com")
    form = admin_client.get(f"/admin/accounts/user/{pending.pk}/change/").context["adminform"]
    data = {name: value for name, value in form.form.initial.items() if value is not None}
    data |= {"is_active": "on", "groups": [], "plan_change_reason": ""}
    data.pop("password", None)
    assert admin_client.post(f"/admin/accounts/user/{pending.pk}/change/", data).status_code == 302

    sign_up(client, "new@example.com", "chosen-by-a-stranger-1")  # then, switched off again:
    User.objects.filter(pk=pending.pk).update(is_active=False)
    sign_up(client, "new@example.com", "chosen-by-a-stranger-2")

    account = User.objects.get(pk=pending.pk)
    assert account.check_password("chosen-by-the-owner-1")
    assert not account.signup_pending and not account.is_active  # switched off stays off


def test_an_active_account_still_marked_pending_takes_no_password_from_a_signup(client):
    # As the admin left one before it cleared the mark.
    User.objects.create_user("live@example.com", PASSWORD, signup_pending=True)

    sign_up(client, "live@example.com", "chosen-by-a-stranger-1")

    assert User.objects.get(email="live@example.com").check_password(PASSWORD)
