"""The privacy settings page: the toggle with and without JavaScript, and what it refuses."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.audit import audit_first_break
from consent.models import ConsentEvent, ConsentPolicy, ConsentState, Delivery
from consent.outbox import outbox_drain
from consent.selectors import consent_for
from consent.services import Channel

pytestmark = pytest.mark.django_db

URL = "/settings/privacy/"
CHOOSE = "/settings/privacy/choice/"


def decisions(user):
    return ConsentEvent.objects.filter(subject_id=user.subject_id, kind="decision")


def toggle(client, allowed="on", version=1, **headers):
    return client.post(URL, {"policy_version": version, "allowed": ["off", allowed]}, **headers)


def htmx(client, allowed="on", version=1):
    return toggle(client, allowed, version, HTTP_HX_REQUEST="true")


@pytest.fixture
def signed_in(client, consumer):
    client.force_login(consumer)
    return client


def choose(client, allowed="on", version=1):
    return client.post(CHOOSE, {"policy_version": version, "allowed": ["off", allowed]})


def test_an_undecided_user_is_asked_as_the_pop_up_asks_and_what_applies(policy, signed_in):
    page = signed_in.get(URL).content.decode()

    assert 'role="switch"' in page and 'id="training-allowed"' in page
    # The policy's default, said as such; two equal buttons; a flip alone saves nothing.
    assert "checked" in page and "Starts On, as the terms propose" in page
    assert ">Save my choice</button>" in page and ">Decline</button>" in page
    assert f'action="{CHOOSE}"' in page and 'hx-trigger="change"' not in page
    assert "Help improve the model" in page
    assert "Not chosen yet" in page
    assert "30 days after you delete them" in page
    assert "chats and coding sessions you start or resume from then on may be used" in page
    assert "no training run that selects data from then on uses any of your chats" in page
    assert "Models already trained are not changed" in page


def test_a_user_who_allowed_sees_when_and_under_which_policy(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=True, channel=Channel.POPUP, shown_default=True)

    page = signed_in.get(URL).content.decode()

    assert "checked" in page
    assert "under policy version 1" in page
    assert "Up to 5 years" in page


def test_the_product_name_is_a_setting(policy, signed_in, settings):
    settings.CONSENT_PRODUCT_NAME = "Help make Assistant better"

    assert "Help make Assistant better" in signed_in.get(URL).content.decode()


def test_a_plain_post_saves_and_redirects_with_a_message(policy, consumer, signed_in):
    response = toggle(signed_in, "on")

    assert response.status_code == 302
    assert response["Location"] == URL
    assert consent_for(consumer).state == ConsentState.ALLOWED
    assert decisions(consumer).get().channel == Channel.SETTINGS
    page = signed_in.get(URL).content.decode()
    assert "Saved: new and resumed chats and coding sessions may be used" in page


def test_an_htmx_post_returns_only_the_facts_below_the_switch(policy, consumer, signed_in):
    response = htmx(signed_in, "on")

    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="training-choice">')
    assert "Allowed," in page and "under policy version 1" in page
    assert "Up to 5 years" in page
    assert 'hx-swap-oob="innerHTML">Saved: new and resumed' in page
    assert "HX-Retarget" not in response

    page = htmx(signed_in, "off").content.decode()
    assert "Declined," in page and "30 days after you delete them" in page
    assert "no training run that selects data from now on will use your chats and" in page
    assert consent_for(consumer).state == ConsentState.DECLINED


def test_an_htmx_change_reads_the_session_and_the_user_then_makes_the_change(
    policy, consumer, signed_in
):
    htmx(signed_in, "on")

    with CaptureQueriesContext(connection) as queries:
        response = htmx(signed_in, "off")

    assert response.status_code == 200
    assert "Declined," in response.content.decode()
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 2 + 5  # the session, the user; the change, its lock included


def test_a_change_sent_from_an_outdated_page_is_still_saved(policy, consumer, signed_in):
    htmx(signed_in, "on")
    other_tab = Client()
    other_tab.force_login(consumer)
    htmx(other_tab, "off")
    htmx(other_tab, "on")

    response = htmx(signed_in, "off")

    assert response.status_code == 200
    assert consent_for(consumer).state == ConsentState.DECLINED
    assert consent_for(consumer).head_number == 4
    assert audit_first_break(subject_id=consumer.subject_id) is None


def test_declining_where_the_page_asks_records_the_default_shown_then_the_switch_saves(
    policy, consumer, signed_in
):
    response = choose(signed_in, "off")

    assert response.status_code == 302 and response["Location"] == URL
    decision = decisions(consumer).get()
    assert decision.after == ConsentState.DECLINED
    assert decision.channel == Channel.SETTINGS and decision.shown_default is True
    page = signed_in.get(URL).content.decode()
    assert "no training run that selects data from now on will use" in page  # the message
    assert 'hx-trigger="change"' in page and ">Decline</button>" not in page
    assert "checked" not in page.split('id="training-allowed"')[1].split(">")[0]


def test_a_browser_opt_out_signal_starts_the_asked_switch_off(policy, consumer, signed_in):
    page = signed_in.get(URL, HTTP_SEC_GPC="1").content.decode()

    assert "checked" not in page.split('id="training-allowed"')[1].split(">")[0]
    signed_in.post(CHOOSE, {"policy_version": 1, "allowed": "off"}, HTTP_SEC_GPC="1")
    decision = decisions(consumer).get()
    assert decision.shown_default is False and decision.gpc is True


def test_the_page_asking_records_once_that_the_terms_were_shown(policy, consumer, signed_in):
    # Straight to the settings page (from a link in a mail, say), never through the pop-up.
    signed_in.get(URL, HTTP_SEC_GPC="1")
    signed_in.get(URL, HTTP_SEC_GPC="1")
    choose(signed_in, "off")
    signed_in.get(URL)

    events = ConsentEvent.objects.filter(subject_id=consumer.subject_id).order_by("number")
    # The proof of display the choice is tied to: what was shown, where, with which default.
    assert [(e.kind, e.channel) for e in events] == [
        (ConsentEvent.Kind.GPC_SIGNAL, Channel.GPC),
        (ConsentEvent.Kind.NOTICE_SERVED, Channel.SETTINGS),
        (ConsentEvent.Kind.DECISION, Channel.SETTINGS),
    ]
    assert events[1].policy == policy and events[1].shown_default is False
    assert audit_first_break(subject_id=consumer.subject_id) is None


def test_the_page_records_no_notice_when_it_does_not_ask(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    signed_in.get(URL)

    assert not ConsentEvent.objects.filter(kind=ConsentEvent.Kind.NOTICE_SERVED).exists()


@pytest.mark.parametrize(
    "data",
    [
        {"policy_version": 1, "allowed": "maybe"},
        {"policy_version": 1},
        {"policy_version": 2, "allowed": "on"},
        {"policy_version": "x", "allowed": "on"},
        {"policy_version": 1, "allowed": "on", "user": "7"},
    ],
    ids=["value", "missing", "outdated", "version", "unknown-field"],
)
def test_a_bad_choice_gets_a_clear_400_and_changes_nothing(policy, consumer, signed_in, data):
    response = signed_in.post(CHOOSE, data)

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not ConsentEvent.objects.filter(subject_id=consumer.subject_id).exists()


def test_a_stale_pages_choice_records_no_default_as_shown(policy, consumer, signed_in):
    choose(signed_in, "off")  # the page asked, and showed the switch On

    choose(signed_in, "on")  # the same page, still open: a choice stands now

    first, second = decisions(consumer).order_by("number")
    assert (first.after, first.shown_default) == (ConsentState.DECLINED, True)
    assert (second.after, second.shown_default) == (ConsentState.ALLOWED, None)


def test_a_choice_too_fast_after_another_is_refused(policy, consumer, signed_in, settings):
    settings.CONSENT_TOGGLE_RATE = (1, 60)
    choose(signed_in, "on")

    response = choose(signed_in, "off")  # a stale page's other button

    assert response.status_code == 429 and response["Retry-After"]
    assert decisions(consumer).count() == 1


def test_an_htmx_error_replaces_the_whole_section_with_the_saved_value(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    response = signed_in.post(
        URL, {"policy_version": 1, "allowed": "maybe"}, HTTP_HX_REQUEST="true"
    )

    page = response.content.decode()
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#training"
    assert response["HX-Reswap"] == "outerHTML"
    assert page.lstrip().startswith('<section id="training"')
    assert 'role="alert"' in page
    assert "checked" not in page.split('id="training-allowed"')[1].split(">")[0]


def test_saving_the_same_value_records_nothing(policy, consumer, signed_in):
    htmx(signed_in, "on")
    response = htmx(signed_in, "on")

    assert "No change" in response.content.decode()
    assert decisions(consumer).count() == 1


@pytest.mark.parametrize(
    ("in_force_in", "said"),
    [
        (timedelta(hours=1), "choose again under the new terms"),
        # In force: the choice ended, though the minute task has not recorded it yet.
        (timedelta(0), "your earlier choice ended when the terms changed"),
    ],
    ids=["published", "in-force"],
)
def test_a_new_policy_asks_to_confirm_the_choice_again(
    policy, consumer, signed_in, in_force_in, said
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    now = timezone.now()
    policies.policy_publish(
        title="New terms",
        text="Again.",
        effective_at=now + in_force_in,
        decision_deadline=now + timedelta(9),
    )

    page = signed_in.get(URL).content.decode()
    assert said in page
    assert "Starts On, as you chose before" in page and f'action="{CHOOSE}"' in page
    choose(signed_in, "on", version=2)  # the same value, confirmed under the new terms
    assert decisions(consumer).count() == 2
    assert consent_for(consumer).policy == ConsentPolicy.objects.get(version=2)


def test_commercial_users_see_a_statement_and_no_toggle(policy, commercial, client):
    client.force_login(commercial)

    page = client.get(URL).content.decode()

    assert "Enterprise plan" in page
    assert "exclude your chats and coding sessions from model training" in page
    assert 'role="switch"' not in page


def test_commercial_users_cannot_post_a_change(policy, commercial, client):
    client.force_login(commercial)

    assert toggle(client, "on").status_code == 400
    assert not decisions(commercial).exists()


@pytest.mark.parametrize(
    "form",
    [
        {"policy_version": 1},
        {"policy_version": 1, "allowed": "yes"},
        {"policy_version": 1, "allowed": "true"},
        {"allowed": "on"},
        {"policy_version": 9, "allowed": "on"},
        {"policy_version": 1, "allowed": "on", "user_id": 1},
        {
            "policy_version": 1,
            "allowed": "on",
            "subject_id": "00000000-0000-0000-0000-000000000000",
        },
    ],
    ids=[
        "missing",
        "yes",
        "true",
        "no-version",
        "stale",
        "user-id",
        "subject-id",
    ],
)
@pytest.mark.parametrize("with_htmx", [False, True], ids=["plain", "htmx"])
def test_forged_posts_get_a_400_with_an_error_and_change_nothing(
    policy, consumer, signed_in, form, with_htmx
):
    headers = {"HTTP_HX_REQUEST": "true"} if with_htmx else {}

    response = signed_in.post(URL, form, **headers)

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not decisions(consumer).exists()
    assert consent_for(consumer).state == ConsentState.UNDECIDED


def test_another_users_id_changes_neither_user(policy, consumer, signed_in):
    other = User.objects.create_user("other@example.com", "x-long-password-1")

    signed_in.post(URL, {"policy_version": 1, "allowed": "on", "user": other.pk})

    assert consent_for(other).state == ConsentState.UNDECIDED
    assert consent_for(consumer).state == ConsentState.UNDECIDED


def test_a_burst_of_changes_gets_429_and_nothing_half_saved(policy, consumer, signed_in, settings):
    settings.CONSENT_TOGGLE_RATE = (4, 60)
    responses = [htmx(signed_in, value) for value in ["on", "off"] * 4]

    # After four changes, "on" would be a fifth and is refused; "off" is what is saved already.
    assert [r.status_code for r in responses] == [200] * 4 + [429, 200] * 2
    assert "No change" in responses[5].content.decode()
    assert decisions(consumer).count() == 4
    assert consent_for(consumer).head_number == 4
    response = htmx(signed_in, "on")
    assert 0 < int(response["Retry-After"]) <= 60
    assert f"Try again in {response['Retry-After']} second" in response.content.decode()
    assert consent_for(consumer).state == ConsentState.DECLINED


def test_the_limit_is_per_user(policy, consumer, settings):
    settings.CONSENT_TOGGLE_RATE = (1, 60)
    first, second = Client(), Client()
    first.force_login(consumer)
    other = User.objects.create_user("b@example.com", "x-long-password-1", plan="pro")
    second.force_login(other)

    assert htmx(first, "on").status_code == 200
    assert htmx(first, "off").status_code == 429
    assert htmx(second, "on").status_code == 200


def test_anonymous_users_are_sent_to_sign_in(policy, client):
    for response in (client.get(URL), toggle(client, "on")):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert not ConsentEvent.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(policy, consumer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(consumer)

    assert toggle(client, "on").status_code == 403
    assert htmx(client, "on").status_code == 403
    assert not decisions(consumer).exists()


def test_the_csrf_header_that_htmx_sends_is_accepted(policy, consumer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(consumer)
    client.get(URL)
    token = client.cookies["csrftoken"].value

    response = toggle(client, "on", HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 200
    assert decisions(consumer).count() == 1


def test_a_choice_support_recorded_says_so_on_the_users_page(
    policy, consumer, signed_in, support_agent
):
    services.consent_change(
        user=consumer,
        allowed=True,
        channel=Channel.SUPPORT,
        actor=support_agent,
        reason="Asked by email to turn it on",
        reference="TICKET-1",
    )

    page = signed_in.get(URL).content.decode()

    assert "Allowed, set by our support team at your request on" in page
    assert "chosen on" not in page


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_choice_carried_by_a_later_plan_change_is_not_said_unapplied(
    client, policy, consumer, admin_user, settings
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.user_change_plan(
        user=consumer, plan=User.Plan.MAX, channel=Channel.ADMIN, actor=admin_user, reason="Up"
    )
    for sink in settings.CONSENT_SINKS:
        outbox_drain(sink)
    assert Delivery.objects.filter(state=Delivery.State.PENDING).count() == 0

    client.force_login(consumer)
    page = client.get("/settings/privacy/").content.decode()

    assert "Applied to 0 of" not in page
    total = len(settings.CONSENT_SINKS)
    assert f"Applied to {total} of {total} systems that act on this choice." in page


def test_the_settings_page_that_asks_for_a_choice_shows_the_terms(client, policy, consumer):
    client.force_login(consumer)

    page = client.get("/settings/privacy/").content.decode()

    assert "Save my choice" in page  # it asks, and a choice here is recorded under version 1
    assert policy.title in page or f"/help/privacy/terms/{policy.version}/" in page
