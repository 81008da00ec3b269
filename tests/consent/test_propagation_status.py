"""The settings page tells the user how far their latest change has reached."""

import pytest
from django.test import Client

from consent import services
from consent.models import Delivery
from consent.services import Channel

pytestmark = pytest.mark.django_db
State = Delivery.State


@pytest.fixture
def three_sinks(settings):
    settings.CONSENT_SINKS = {name: {} for name in ("warehouse", "redis", "webhook")}


@pytest.fixture
def signed_in(client: Client, consumer) -> Client:
    client.force_login(consumer)
    return client


def test_a_fresh_change_shows_it_is_being_applied_and_polls(
    policy, consumer, signed_in, three_sinks
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    page = signed_in.get("/settings/privacy/").content.decode()

    assert "Applied to 0 of 3 systems" in page
    assert 'hx-get="/settings/privacy/propagation/"' in page


def test_the_poll_stops_once_every_sink_applied_the_change(
    policy, consumer, signed_in, three_sinks
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    Delivery.objects.update(state=State.APPLIED)

    fragment = signed_in.get("/settings/privacy/propagation/", HTTP_HX_REQUEST="true")

    assert "Applied to 3 of 3 systems" in fragment.content.decode()
    assert "hx-get" not in fragment.content.decode()


def test_a_dead_delivery_is_said_plainly_and_stops_the_poll(
    policy, consumer, signed_in, three_sinks
):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    Delivery.objects.filter(sink="webhook").update(state=State.DEAD)
    Delivery.objects.exclude(sink="webhook").update(state=State.APPLIED)

    fragment = signed_in.get("/settings/privacy/propagation/").content.decode()

    assert "Applied to 2 of 3 systems" in fragment
    assert "1 could not be reached" in fragment
    assert "hx-get" not in fragment


def test_the_toggle_response_carries_the_status(policy, consumer, signed_in, three_sinks):
    response = signed_in.post(
        "/settings/privacy/",
        {"policy_version": policy.version, "allowed": "on"},
        HTTP_HX_REQUEST="true",
    )

    assert "Applied to 0 of 3 systems" in response.content.decode()


def test_the_status_only_ever_speaks_of_the_signed_in_users_own_change(
    policy, consumer, commercial, client, three_sinks
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    client.force_login(commercial)

    fragment = client.get("/settings/privacy/propagation/").content.decode()

    assert "Applied to" not in fragment


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get("/settings/privacy/propagation/")
    assert response.status_code == 302


def test_the_history_says_how_far_each_change_reached(policy, consumer, signed_in, three_sinks):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    Delivery.objects.filter(event_number=1).update(state=State.SUPERSEDED)
    Delivery.objects.filter(event_number=2).exclude(sink="redis").update(state=State.APPLIED)

    page = signed_in.get("/settings/privacy/history/").content.decode()

    assert page.index("Applied to 2 of 3 systems") < page.index("Applied to 0 of 3 systems")
    assert "A later change overtook it in 3 systems before it was sent." in page
