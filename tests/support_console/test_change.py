"""Recording a change on the user's documented request: through the one writer, or not at all."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from consent import policies, services
from consent.models import ConsentEvent, ConsentState, Delivery
from consent.selectors import consent_for
from consent.services import Channel
from support.models import AccessRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def url(user) -> str:
    return f"/support/users/{user.pk}/change/"


def opt_out(**overrides: str) -> dict[str, str]:
    return {
        "policy_version": "1",
        "allowed": "off",
        "reason": "The user wrote in to opt out of training.",
        "reference": "TICKET-1234",
    } | overrides


def assert_nothing_written() -> None:
    assert not ConsentEvent.objects.exists()
    assert not Delivery.objects.exists()
    assert not AccessRecord.objects.exists()


def test_an_opt_out_is_recorded_with_the_agent_reason_and_reference(
    agent_client, policy, consumer, support_agent
):
    response = agent_client.post(url(consumer), opt_out())

    assert response.status_code == 302
    assert response["Location"] == f"/support/users/{consumer.pk}/"
    event = ConsentEvent.objects.get(subject_id=consumer.subject_id)
    assert (event.kind, event.before, event.after) == ("decision", "undecided", "declined")
    assert event.channel == Channel.SUPPORT
    assert event.actor_role == ConsentEvent.Role.SUPPORT
    assert event.actor_subject_id == support_agent.subject_id
    assert event.reason == "The user wrote in to opt out of training."
    assert event.reference == "TICKET-1234"
    assert event.policy == policy
    assert Delivery.objects.filter(event=event).count() >= 1
    assert consent_for(consumer).state == ConsentState.DECLINED
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == ["Recorded: the user declines training, from now on."]


def test_an_opt_in_is_recorded_too(agent_client, policy, consumer):
    agent_client.post(url(consumer), opt_out(allowed="on"))

    assert consent_for(consumer).state == ConsentState.ALLOWED


def test_the_same_value_again_records_nothing_and_says_so(agent_client, policy, consumer):
    agent_client.post(url(consumer), opt_out())

    response = agent_client.post(url(consumer), opt_out(), follow=True)

    assert ConsentEvent.objects.filter(subject_id=consumer.subject_id).count() == 1
    assert "No change: the setting already was as the user asked." in response.content.decode()


@pytest.mark.parametrize(
    ("post", "error"),
    [
        (opt_out(reason=""), "Reason: This field is required."),
        (opt_out(reason="   "), "Reason: This field is required."),
        (opt_out(reference=""), "Reference: This field is required."),
        (opt_out(reference=" \t "), "Reference: This field is required."),
        (opt_out(reference="T" * 101), "Reference: Ensure this value has at most 100 characters"),
        (opt_out(allowed=""), "The user asks to: This field is required."),
        (opt_out(allowed="maybe"), "Select a valid choice."),
        (opt_out(policy_version="x"), "Enter a whole number."),
        ({k: v for k, v in opt_out().items() if k != "allowed"}, "This field is required."),
    ],
)
def test_bad_input_is_a_form_error_and_writes_nothing(agent_client, policy, consumer, post, error):
    response = agent_client.post(url(consumer), post)

    assert response.status_code == 400
    page = response.content.decode()
    assert error in page
    assert 'role="alert"' in page
    assert_nothing_written()


def test_a_commercial_user_cannot_be_changed(agent_client, policy, commercial):
    response = agent_client.post(url(commercial), opt_out())

    assert response.status_code == 400
    assert "Users on commercial plans are never asked and never trained on" in (
        response.content.decode()
    )
    assert_nothing_written()


def test_an_unknown_user_is_not_found_and_nothing_is_written(agent_client, policy, consumer):
    response = agent_client.post(f"/support/users/{consumer.pk + 1000}/change/", opt_out())

    assert response.status_code == 404
    assert_nothing_written()


@pytest.mark.parametrize("field", ["user", "user_id", "subject_id", "email"])
def test_a_post_naming_another_user_changes_nobody(agent_client, policy, consumer, field):
    other = UserFactory(plan="max")
    forged = opt_out() | {field: str(other.subject_id if field == "subject_id" else other.pk)}

    response = agent_client.post(url(consumer), forged)

    assert response.status_code == 400
    assert "Unexpected fields" in response.content.decode()
    assert_nothing_written()


def test_terms_that_changed_since_the_page_loaded_are_refused(agent_client, policy, consumer):
    now = timezone.now()
    policies.policy_publish(
        title="New terms", text="Again.", effective_at=now, decision_deadline=now + timedelta(9)
    )

    response = agent_client.post(url(consumer), opt_out(policy_version="1"))

    assert response.status_code == 400
    assert "The terms changed since the page was loaded" in response.content.decode()
    assert not ConsentEvent.objects.exists()


def test_nothing_can_be_changed_before_a_policy_is_published(agent_client, consumer):
    response = agent_client.post(url(consumer), opt_out())

    assert response.status_code == 400
    assert "No policy has been published yet" in response.content.decode()
    assert_nothing_written()


def test_the_form_error_page_shows_the_form_again_without_the_history(
    agent_client, policy, consumer
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    page = agent_client.post(url(consumer), opt_out(reason="")).content.decode()

    assert f'<form method="post" action="/support/users/{consumer.pk}/change/"' in page
    assert "The user wrote in to opt out of training." not in page  # the reason field was empty
    assert "TICKET-1234" in page  # what was typed is kept
    assert "Allowed training" not in page  # no history shown, so no look to record


def test_a_change_needs_a_post_with_a_csrf_token(policy, consumer, support_agent):
    client = Client(enforce_csrf_checks=True)
    client.force_login(support_agent)

    assert client.post(url(consumer), opt_out()).status_code == 403
    assert not ConsentEvent.objects.exists()


def test_reloading_a_refused_change_leads_back_to_the_users_page(agent_client, policy, consumer):
    agent_client.post(url(consumer), opt_out(reason=""))

    response = agent_client.get(url(consumer))

    assert response.status_code == 302
    assert response["Location"] == f"/support/users/{consumer.pk}/"
    assert not ConsentEvent.objects.exists()


def test_the_user_page_offers_the_form_with_the_current_policy(agent_client, policy, consumer):
    page = agent_client.get(f"/support/users/{consumer.pk}/").content.decode()

    assert f'<form method="post" action="/support/users/{consumer.pk}/change/"' in page
    assert '<input type="hidden" name="policy_version" value="1">' in page
    assert 'name="reason"' in page and 'name="reference"' in page
    assert "checked" not in page.split('class="change"')[1].split("</form>")[0]
