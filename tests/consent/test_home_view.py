"""The product home and its first-run pop-up, in every state a user can be in."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.models import ConsentEvent, ConsentState, TrainingConsent
from consent.selectors import consent_for
from consent.services import Channel
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

Kind = ConsentEvent.Kind


def events(user, kind=None):
    found = ConsentEvent.objects.filter(subject_id=user.subject_id)
    return found.filter(kind=kind) if kind else found


@pytest.fixture
def late_policy(db):
    """A policy whose decision deadline has passed."""
    now = timezone.now()
    return policies.policy_publish(
        title="Terms whose deadline passed",
        text="Choose now.",
        effective_at=now - timedelta(days=40),
        decision_deadline=now - timedelta(days=1),
        now=now - timedelta(days=40),
    )


@pytest.fixture
def signed_in(client, consumer):
    client.force_login(consumer)
    return client


def publish_now(*, title: str, text: str):
    """Publish the next terms, in force at once, with a month to decide."""
    now = timezone.now()
    return policies.policy_publish(
        title=title, text=text, effective_at=now, decision_deadline=now + timedelta(days=30)
    )


def decide(client, allowed="on", version=1, **headers):
    form = {"policy_version": version, "allowed": ["off", allowed]}
    return client.post("/consent/decision/", form, **headers)


def test_an_undecided_consumer_sees_the_pop_up_over_an_inert_app(policy, signed_in):
    page = signed_in.get("/").content.decode()

    assert 'id="consent-dialog"' in page
    assert "<title>Your choice about training · Assistant</title>" in page
    assert policy.title in page
    assert "Not now" in page
    assert "We ask again later" in page and "Until you choose, nothing is used for training" in page
    assert 'class="app" inert' in page
    assert 'id="consent-allowed"' in page and "checked" in page


def test_the_pop_up_says_what_allowing_and_declining_mean(policy, signed_in):
    page = signed_in.get("/").content.decode()

    assert "new and resumed chats and coding sessions may be used to train" in page
    assert "kept for up to 5 years after you last use it" in page  # as settings and terms say
    assert "kept for 30 days after you delete them" in page
    assert "models already trained are not changed" in page


def test_confirming_and_declining_are_one_equally_styled_button_each(policy, signed_in):
    page = signed_in.get("/").content.decode()

    assert page.count('class="choice"') == 2
    assert 'form="consent-form" class="choice">Save my choice' in page
    assert 'form="consent-decline" class="choice">Decline' in page


def test_serving_the_pop_up_records_the_notice_once_with_its_default(policy, consumer, signed_in):
    signed_in.get("/")
    signed_in.get("/")

    (served,) = events(consumer, Kind.NOTICE_SERVED)
    assert served.policy == policy
    assert served.shown_default is True


def test_the_decision_records_the_default_that_was_shown(policy, consumer, signed_in):
    signed_in.get("/")
    response = decide(signed_in, "off")

    assert response.status_code == 302
    decision = events(consumer, Kind.DECISION).get()
    assert decision.channel == Channel.POPUP
    assert decision.after == ConsentState.DECLINED
    assert decision.shown_default is True
    assert 'id="consent-dialog"' not in signed_in.get("/").content.decode()


def test_a_pop_up_left_open_while_the_user_chose_elsewhere_changes_nothing(
    policy, consumer, signed_in
):
    signed_in.get("/")  # the pop-up, its switch On
    signed_in.post(
        "/settings/privacy/choice/", {"policy_version": 1, "allowed": "off"}
    )  # another tab: a choice stands now

    stale = decide(signed_in, "on")  # the pop-up, still open

    assert stale.status_code == 302
    (decision,) = events(consumer, Kind.DECISION)
    assert (decision.after, decision.shown_default) == (ConsentState.DECLINED, True)
    home = signed_in.get(stale["Location"]).content.decode()
    assert "you had already chosen, in another tab or on another device" in home
    assert 'id="consent-dialog"' not in home


def test_confirming_the_default_allows_training(policy, consumer, signed_in):
    decide(signed_in, "on")

    assert consent_for(consumer).state == ConsentState.ALLOWED


def test_a_decided_consumer_does_not_see_the_pop_up(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    page = signed_in.get("/").content.decode()

    assert 'id="consent-dialog"' not in page
    assert "How can I help you today?" in page
    assert not events(consumer, Kind.NOTICE_SERVED).exists()


def test_not_now_hides_the_pop_up_until_the_interval_passes(policy, consumer, signed_in):
    response = signed_in.post("/consent/not-now/", {"policy_version": 1})

    assert response.status_code == 302
    assert 'id="consent-dialog"' not in signed_in.get("/").content.decode()
    assert events(consumer, Kind.DEFERRED).count() == 1

    TrainingConsent.objects.filter(user=consumer).update(
        deferred_until=timezone.now() - timedelta(seconds=1)
    )
    assert 'id="consent-dialog"' in signed_in.get("/").content.decode()


def test_undecided_after_the_deadline_the_home_waits_for_a_choice(late_policy, signed_in):
    page = signed_in.get("/").content.decode()

    assert 'id="consent-dialog"' in page
    assert "data-blocking" in page
    assert "Not now" not in page
    assert "prompt-input" not in page
    assert "has passed" in page
    assert "Either one lets you go on" in page  # declining too: consent is not the price of use


def test_help_after_the_deadline_says_it_has_passed(late_policy, signed_in):
    page = signed_in.get("/help/privacy/").content.decode()

    assert "The choice could be put off until" in page
    assert "You can put" not in page and "puts the choice off" not in page


@pytest.mark.parametrize(
    "url", ["/settings/privacy/", "/settings/privacy/history/", "/help/privacy/"]
)
def test_after_the_deadline_settings_history_and_help_stay_reachable(late_policy, signed_in, url):
    response = signed_in.get(url)

    assert response.status_code == 200
    assert 'id="consent-dialog"' not in response.content.decode()


def test_after_the_deadline_sign_out_stays_reachable(late_policy, signed_in):
    assert 'action="/accounts/logout/"' in signed_in.get("/").content.decode()
    assert signed_in.post("/accounts/logout/").status_code == 302
    assert signed_in.get("/").status_code == 302


def test_not_now_is_refused_after_the_deadline(late_policy, consumer, signed_in):
    response = signed_in.post("/consent/not-now/", {"policy_version": late_policy.version})

    assert response.status_code == 400
    assert not events(consumer, Kind.DEFERRED).exists()


def test_declining_after_the_deadline_unblocks_the_app(late_policy, signed_in):
    decide(signed_in, "off", version=late_policy.version)

    page = signed_in.get("/").content.decode()
    assert 'id="consent-dialog"' not in page
    assert "prompt-input" in page


def test_a_gpc_signal_turns_the_default_off_says_so_and_is_recorded(policy, consumer, signed_in):
    page = signed_in.get("/", HTTP_SEC_GPC="1").content.decode()

    assert "Your browser's opt-out signal was honoured" in page
    assert 'id="consent-allowed"' in page
    assert "Starts Off" in page
    assert events(consumer, Kind.GPC_SIGNAL).count() == 1
    assert events(consumer, Kind.NOTICE_SERVED).get().shown_default is False


def test_choosing_on_despite_gpc_is_kept_and_the_conflict_recorded(policy, consumer, signed_in):
    signed_in.get("/", HTTP_SEC_GPC="1")
    decide(signed_in, "on", HTTP_SEC_GPC="1")

    decision = events(consumer, Kind.DECISION).get()
    assert decision.after == ConsentState.ALLOWED
    assert decision.gpc is True
    assert decision.shown_default is False


def test_gpc_never_flips_an_explicit_choice(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    page = signed_in.get("/", HTTP_SEC_GPC="1").content.decode()

    assert 'id="consent-dialog"' not in page
    assert consent_for(consumer).state == ConsentState.ALLOWED


def test_commercial_users_never_see_the_pop_up(policy, commercial, client):
    client.force_login(commercial)

    page = client.get("/", HTTP_SEC_GPC="1").content.decode()

    assert 'id="consent-dialog"' not in page
    assert not events(commercial).exists()


def test_a_new_policy_version_asks_again_after_a_decision(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    publish_now(title="Our terms changed again", text="Please choose again.")

    page = signed_in.get("/").content.decode()

    assert "Our terms changed again" in page
    decide(signed_in, "on", version=2)
    decision = events(consumer, Kind.DECISION).order_by("-number").first()
    assert decision.policy.version == 2
    assert 'id="consent-dialog"' not in signed_in.get("/").content.decode()


def test_confirming_a_signup_leads_straight_to_the_pop_up(policy, client, mailoutbox):
    client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    link = re.search(r"http://testserver(\S+/confirm/\S+/)", mailoutbox[0].body)
    assert link is not None

    response = client.post(link[1], {"password": PASSWORD}, follow=True)

    assert 'id="consent-dialog"' in response.content.decode()
    user = User.objects.get(email="new@example.com")
    assert events(user, Kind.NOTICE_SERVED).count() == 1


@pytest.mark.parametrize(
    "form",
    [
        {"policy_version": 1},
        {"policy_version": 1, "allowed": "yes"},
        {"policy_version": 1, "allowed": ""},
        {"allowed": "on"},
        {"policy_version": "one", "allowed": "on"},
        {"policy_version": 7, "allowed": "on"},
        {"policy_version": 1, "allowed": "on", "user_id": 1},
    ],
    ids=["missing", "yes", "empty", "no-version", "bad-version", "stale", "user-id"],
)
def test_forged_pop_up_posts_get_a_400_and_change_nothing(policy, consumer, signed_in, form):
    response = signed_in.post("/consent/decision/", form)

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not events(consumer, Kind.DECISION).exists()


def test_a_stale_policy_version_after_a_new_one_is_refused(policy, consumer, signed_in):
    now = timezone.now()
    policies.policy_publish(
        title="Newer", text="Newer.", effective_at=now, decision_deadline=now + timedelta(days=9)
    )

    response = decide(signed_in, "on", version=policy.version)

    assert response.status_code == 400
    assert "The terms changed" in response.content.decode()
    assert not events(consumer, Kind.DECISION).exists()


def test_a_commercial_user_cannot_post_a_decision(policy, commercial, client):
    client.force_login(commercial)

    response = decide(client, "on")

    assert response.status_code == 400
    assert "now exclude your chats and coding sessions from training" in response.content.decode()
    assert not events(commercial).exists()


def test_anonymous_users_are_sent_to_sign_in_and_change_nothing(policy, client):
    response = decide(client, "on")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not ConsentEvent.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(policy, consumer):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(consumer)

    assert decide(client, "on").status_code == 403
    assert not events(consumer).exists()


def test_the_pop_up_shows_the_text_of_the_terms_in_its_paragraphs(consumer, signed_in):
    publish_now(
        title="Terms with two paragraphs",
        text="We would like to train\non your chats.\n\nYou can say no <b>at any time</b>.",
    )

    page = signed_in.get("/").content.decode()

    assert "<p>We would like to train on your chats.</p>" in page
    assert "<p>You can say no &lt;b&gt;at any time&lt;/b&gt;.</p>" in page
    help_page = signed_in.get("/help/privacy/").content.decode()
    assert "<p>We would like to train on your chats.</p>" in help_page


@pytest.mark.parametrize("allowed", [False, True])
def test_new_terms_start_the_switch_where_the_users_last_choice_left_it(
    policy, consumer, signed_in, allowed
):
    services.consent_change(user=consumer, allowed=allowed, channel=Channel.SETTINGS)
    publish_now(title="Our terms changed again", text="Please choose again.")

    page = signed_in.get("/").content.decode()

    switch = page[page.index('id="consent-allowed"') :].split(">", 1)[0]
    assert ("checked" in switch) is allowed
    assert "as you chose before" in page
    assert events(consumer, Kind.NOTICE_SERVED).get().shown_default is allowed
    decide(signed_in, "on" if allowed else "off", version=2)
    assert events(consumer, Kind.DECISION).order_by("-number").first().shown_default is allowed


def test_the_home_page_confirms_a_choice_made_in_the_pop_up(policy, signed_in):
    response = decide(signed_in, "off", follow=True)

    page = response.content.decode()
    assert 'id="consent-dialog"' not in page
    assert "Saved: no training run that selects data from now on will use your chats" in page


def test_the_home_page_says_what_not_now_means_until_when(policy, signed_in):
    response = signed_in.post("/consent/not-now/", {"policy_version": 1}, follow=True)

    page = response.content.decode()
    deadline = timezone.localtime(policy.decision_deadline)
    assert f"we will ask again later, until {deadline:%-d %B %Y} at the latest" in page
