"""A user deletes their own account: the password again, then the audit keeps a pseudonym only."""

import pytest
from axes.models import AccessAttempt
from django.test import Client

from accounts.models import User
from consent import services
from consent.models import ConsentEvent, ConsentState, Delivery
from consent.services import Channel
from support.services import access_record
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db
URL = "/accounts/delete/"


@pytest.fixture
def signed_in(client, consumer):
    client.force_login(consumer)
    return client


def test_the_page_says_what_goes_and_what_stays(policy, signed_in):
    page = signed_in.get(URL).content.decode()

    assert "cannot be undone" in page
    assert "told to drop you" in page and "pseudonymous id, without your email" in page
    assert 'href="/settings/privacy/history/"' in page
    assert 'type="password"' in page and 'autocomplete="current-password"' in page
    assert 'href="/accounts/delete/"' in signed_in.get("/settings/privacy/").content.decode()


def test_with_the_password_the_account_goes_and_its_record_stays(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    response = signed_in.post(URL, {"password": PASSWORD})

    assert response.status_code == 200
    assert "Your account is deleted" in response.content.decode()
    assert not User.objects.filter(pk=consumer.pk).exists()
    event = ConsentEvent.objects.filter(subject_id=consumer.subject_id).latest("number")
    assert event.kind == ConsentEvent.Kind.ACCOUNT_DELETED
    assert (event.channel, event.actor_role) == (Channel.SETTINGS, ConsentEvent.Role.USER)
    assert event.after == ConsentState.UNDECIDED
    assert Delivery.objects.filter(event=event).exists()  # every sink is told to drop the user
    assert "_auth_user_id" not in signed_in.session  # signed out
    assert signed_in.get("/settings/privacy/").status_code == 302
    signing_in = Client().post(
        "/accounts/login/", {"username": consumer.email, "password": PASSWORD}
    )
    assert signing_in.status_code == 200  # the form again: no such account


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"password": "not the password"}, "That is not your password."),
        ({"password": ""}, "This field is required."),
        ({}, "This field is required."),
    ],
)
def test_without_the_password_nothing_changes(policy, consumer, signed_in, data, said):
    response = signed_in.post(URL, data)

    assert response.status_code == 400
    assert said in response.content.decode()
    assert User.objects.filter(pk=consumer.pk).exists()
    assert not ConsentEvent.objects.filter(subject_id=consumer.subject_id).exists()


def test_wrong_passwords_count_towards_the_sign_in_limit(policy, consumer, signed_in, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        signed_in.post(URL, {"password": "guess"})

    assert AccessAttempt.objects.get().failures_since_start == settings.AXES_FAILURE_LIMIT
    response = signed_in.post(URL, {"password": PASSWORD})  # the right one, once locked

    assert response.status_code == 429  # axes' answer to a locked-out request
    page = response.content.decode()
    assert "Too many wrong passwords" in page and "Wait 15 minutes" in page
    assert 'href="/settings/privacy/"' in page and "Back to sign in" not in page  # signed in
    assert User.objects.filter(pk=consumer.pk).exists()


def test_a_commercial_user_may_delete_too(policy, commercial, client):
    client.force_login(commercial)

    assert client.post(URL, {"password": PASSWORD}).status_code == 200
    assert not User.objects.filter(pk=commercial.pk).exists()


def test_staff_are_sent_to_an_administrator(policy, admin_user, client):
    client.force_login(admin_user)

    assert client.get(URL).status_code == 403
    assert client.post(URL, {"password": PASSWORD}).status_code == 403
    assert User.objects.filter(pk=admin_user.pk).exists()
    assert 'href="/accounts/delete/"' not in client.get("/settings/privacy/").content.decode()


def test_support_agents_are_sent_to_an_administrator(policy, consumer, support_agent, client):
    client.force_login(support_agent)

    assert 'href="/accounts/delete/"' not in client.get("/settings/privacy/").content.decode()
    response = client.post(URL, {"password": PASSWORD})
    assert (
        response.status_code == 403
        and "removed or deactivated by an administrator" in response.content.decode()
    )
    assert User.objects.filter(pk=support_agent.pk).exists()


def test_a_former_agent_whose_looks_are_on_record_is_refused_and_nothing_is_written(
    policy, consumer, support_agent, client
):
    access_record(agent=support_agent, subject_id=consumer.subject_id, action="viewed")
    support_agent.groups.clear()
    client.force_login(support_agent)

    response = client.post(URL, {"password": PASSWORD})

    assert response.status_code == 403
    assert User.objects.filter(pk=support_agent.pk).exists()
    assert not ConsentEvent.objects.filter(subject_id=support_agent.subject_id).exists()


def test_signed_out_visitors_are_asked_to_sign_in(client):
    response = client.post(URL, {"password": PASSWORD})

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
