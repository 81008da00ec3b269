"""Every version of the terms stays readable, word for word: what did I agree to?"""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from consent import policies, services
from consent.models import ConsentPolicy
from consent.services import Channel

pytestmark = pytest.mark.django_db


def publish_now(*, title: str, text: str):
    now = timezone.now()
    return policies.policy_publish(
        title=title, text=text, effective_at=now, decision_deadline=now + timedelta(days=30)
    )


def test_earlier_terms_stay_readable_word_for_word_and_say_which_are_current(policy, client):
    publish_now(title="Help improve the model, second edition", text="The new words.")

    earlier = client.get("/help/privacy/terms/1/")  # no sign-in needed

    assert earlier.status_code == 200
    page = earlier.content.decode()
    assert policy.title in page and policy.text.split("\n")[0] in page
    assert f"sha256:{policy.content_hash}" in page  # as the receipts name it
    assert "no longer the current ones: version 2 is" in page
    assert 'href="/help/privacy/terms/2/"' in page
    help_page = client.get("/help/privacy/").content.decode()
    assert 'href="/help/privacy/terms/1/"' in help_page and "The new words." in help_page


def test_the_current_terms_do_not_call_themselves_outdated(policy, client):
    page = client.get("/help/privacy/terms/1/").content.decode()

    assert "no longer the current ones" not in page
    assert "Earlier terms" not in client.get("/help/privacy/").content.decode()


def test_terms_published_ahead_of_their_date_are_new_not_current(policy, client):
    now = timezone.now()
    policies.policy_publish(
        title="Second edition", text="Later words.", effective_at=now + timedelta(days=14),
        decision_deadline=now + timedelta(days=30),
    )  # fmt: skip

    earlier = client.get("/help/privacy/terms/1/").content.decode()
    help_page = client.get("/help/privacy/").content.decode()

    assert "no longer the current ones" not in earlier
    assert "New terms, version 2, come into force on" in earlier
    assert "The current terms" not in help_page
    assert "New terms: version 2" in help_page
    assert 'href="/help/privacy/terms/1/">Until then, version 1 applies.' in help_page


def test_terms_two_versions_back_say_which_is_current_and_which_comes_next(policy, client):
    publish_now(title="Second edition", text="The words now.")
    now = timezone.now()
    policies.policy_publish(
        title="Third edition", text="Later words.", effective_at=now + timedelta(days=14),
        decision_deadline=now + timedelta(days=30),
    )  # fmt: skip

    first = client.get("/help/privacy/terms/1/").content.decode()

    assert "no longer the current ones: version 2 is" in first
    assert "New terms, version 3, come into force on" in first


@pytest.mark.parametrize("version", [2, 99, 0])
def test_a_draft_or_unknown_version_is_a_404(policy, client, version):
    now = timezone.now()
    draft = ConsentPolicy(
        title="Not yet", text="Draft words.", effective_at=now,
        decision_deadline=now + timedelta(days=30), defer_for=timedelta(days=1),
    )  # fmt: skip
    assert policies.policy_draft_save(policy=draft).version == 2

    assert client.get(f"/help/privacy/terms/{version}/").status_code == 404


def test_history_and_support_link_each_choice_to_its_terms(policy, consumer, agent_client):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    browser = Client()
    browser.force_login(consumer)

    own = browser.get("/settings/privacy/history/").content.decode()
    support = agent_client.get(f"/support/users/{consumer.pk}/").content.decode()

    for page in (own, support):
        assert '<a href="/help/privacy/terms/1/">Policy version 1</a>' in page
