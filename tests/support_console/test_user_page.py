"""A user's page: the setting now, the history with propagation per sink, the audit, exports."""

import csv
import io
import json
from datetime import timedelta

import pgtrigger
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.audit import audit_checkpoint, audit_verify_and_record
from consent.models import ConsentEvent, Delivery
from consent.outbox import outbox_drain, outbox_prune
from consent.services import Channel
from support.models import AccessRecord
from tests.factories import UserFactory, choice_then_terms_asking_again, terms_published
from tests.support_console.conftest import flip

pytestmark = pytest.mark.django_db
State = Delivery.State


def url(user: User, suffix: str = "") -> str:
    return f"/support/users/{user.pk}/{suffix}"


def numbers_on(response) -> list[int]:
    return [row.event.number for row in response.context["rows"]]


def test_the_page_says_plan_choice_policy_deadline_and_retention(agent_client, policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    page = agent_client.get(url(consumer)).content.decode()

    assert consumer.email in page
    assert str(consumer.subject_id) in page
    assert "Pro" in page
    assert "Allows training" in page and "under policy version 1" in page
    assert "Version 1 is in force" in page
    assert "Its decision deadline is" in page
    assert "This user has chosen under it." in page
    assert "5 years" in page and "(training allowed)" in page


def test_an_undecided_user_is_shown_as_waiting_for_a_choice(agent_client, policy, consumer):
    page = agent_client.get(url(consumer)).content.decode()

    assert "Not decided" in page
    assert "they see the pop-up" in page
    assert "30 days" in page


def test_a_deferred_user_and_a_passed_deadline_are_said(agent_client, policy, consumer):
    services.consent_defer(user=consumer)
    assert "said “Not now” until" in agent_client.get(url(consumer)).content.decode()

    now = timezone.now()
    policies.policy_publish(
        title="Terms whose deadline passed",
        text="Choose.",
        effective_at=now - timedelta(days=40),
        decision_deadline=now - timedelta(days=1),
        now=now - timedelta(days=40),
    )
    page = agent_client.get(url(consumer)).content.decode()

    assert "Its decision deadline passed on" in page
    assert "the product waits for their choice" in page


def test_a_commercial_user_has_no_choice_and_no_change_form(agent_client, policy, commercial):
    page = agent_client.get(url(commercial)).content.decode()

    assert "a commercial plan: never asked, never trained on" in page
    assert "Not eligible for training" in page
    assert "Record a change" not in page
    assert f'action="/support/users/{commercial.pk}/change/"' not in page


def test_the_history_is_newest_first_a_keyset_page_at_a_time(agent_client, policy, consumer):
    flip(consumer, 45)

    with CaptureQueriesContext(connection) as queries:
        first = agent_client.get(url(consumer))
    assert numbers_on(first) == list(range(45, 25, -1))
    assert not any("OFFSET" in query["sql"].upper() for query in queries)
    assert 'href="?before=26"' in first.content.decode()

    second = agent_client.get(url(consumer), {"before": 26})
    assert numbers_on(second) == list(range(25, 5, -1))
    assert "Back to the newest events" in second.content.decode()

    last = agent_client.get(url(consumer), {"before": 6}, headers={"HX-Request": "true"})
    assert numbers_on(last) == [5, 4, 3, 2, 1]
    assert "<html" not in last.content.decode()
    assert "Show older events" not in last.content.decode()
    assert "HX-Request" in last["Vary"]


def test_the_page_costs_the_same_queries_for_ten_events_or_forty(agent_client, policy, consumer):
    flip(consumer, 10)
    with CaptureQueriesContext(connection) as few:
        agent_client.get(url(consumer))
    flip(consumer, 30, start=timezone.now() - timedelta(hours=2))
    with CaptureQueriesContext(connection) as many:
        agent_client.get(url(consumer))

    assert len(many) == len(few)


def kinds_on(response) -> set[str]:
    return {row.event.kind for row in response.context["rows"]}


def test_the_history_filters_by_kind_channel_and_dates(
    agent_client, policy, consumer, support_agent
):
    services.notice_record_served(user=consumer)
    now = timezone.now()
    flip(consumer, 4, start=now - timedelta(days=10))
    services.consent_change(
        user=consumer,
        allowed=True,
        channel=Channel.SUPPORT,
        actor=support_agent,
        reason="Wrote in",
        reference="T-9",
    )

    assert kinds_on(agent_client.get(url(consumer), {"kind": "notice_served"})) == {"notice_served"}
    by_support = agent_client.get(url(consumer), {"channel": "support"})
    assert numbers_on(by_support) == [6]
    ten_days_ago = (now - timedelta(days=10)).date().isoformat()
    in_range = agent_client.get(url(consumer), {"since": ten_days_ago, "until": ten_days_ago})
    assert numbers_on(in_range) == [5, 4, 3, 2]
    none = agent_client.get(url(consumer), {"kind": "decision", "channel": "gpc"})
    assert "No events match these filters." in none.content.decode()


def test_filters_keep_to_their_keyset_pages(agent_client, policy, consumer):
    flip(consumer, 30)

    response = agent_client.get(url(consumer), {"channel": "settings", "before": 11})

    assert numbers_on(response) == list(range(10, 0, -1))
    page = agent_client.get(url(consumer), {"channel": "settings"}).content.decode()
    assert 'href="?channel=settings&amp;before=11"' in page


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "nonsense"},
        {"channel": "telepathy"},
        {"since": "yesterday"},
        {"since": "2025-03-02", "until": "2025-03-01"},
        {"until": "9999-12-31"},
        {"since": "0001-01-01"},
        {"before": "abc"},
        {"before": "0"},
    ],
)
def test_bad_filters_are_a_400_with_the_reason_and_no_history(
    agent_client, policy, consumer, query
):
    flip(consumer, 3)

    response = agent_client.get(url(consumer), query)

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert response.context["rows"] == []


@pytest.mark.parametrize("htmx", [False, True])
def test_a_date_range_ending_before_it_starts_is_said_at_its_end(
    agent_client, policy, consumer, htmx
):
    headers = {"HX-Request": "true"} if htmx else {}
    query = {"since": "2025-03-02", "until": "2025-03-01"}

    response = agent_client.get(url(consumer), query, headers=headers)

    page = response.content.decode()
    assert response.status_code == 400
    assert "The end of the date range is before its start." in page
    # With htmx, the field comes back beside the part swapped, to take its place in the form.
    assert 'aria-invalid="true"' in page and 'aria-describedby="id_until_error"' in page


def test_each_event_says_where_it_has_reached_in_every_sink(
    agent_client, policy, consumer, settings
):
    flip(consumer, 4)
    events = list(ConsentEvent.objects.filter(subject_id=consumer.subject_id).order_by("number"))
    applied_at = timezone.now()
    Delivery.objects.filter(event=events[0]).update(state=State.SUPERSEDED)
    Delivery.objects.filter(event=events[1]).update(state=State.APPLIED, applied_at=applied_at)
    Delivery.objects.filter(event=events[2]).update(
        attempts=3, last_error="ConnectionRefusedError: warehouse down"
    )
    Delivery.objects.filter(event=events[3]).update(
        state=State.DEAD, attempts=12, last_error="HTTP 400: bad request"
    )

    response = agent_client.get(url(consumer))

    rows = {row.event.number: row for row in response.context["rows"]}
    assert [(s.sink, s.state) for s, _text in rows[2].sinks] == [
        (sink, "applied") for sink in sorted(settings.CONSENT_SINKS)
    ]
    page = response.content.decode()
    assert "skipped: a newer change of this user goes in its place" in page
    assert f"applied {applied_at:%-d %b %Y, %H:%M:%S}" in page
    assert "retrying after 3 failed attempts: ConnectionRefusedError: warehouse down" in page
    assert "dead after 12 attempts: HTTP 400: bad request" in page
    assert "warehouse" in page


def test_a_sinks_error_and_a_reason_are_shown_as_text_never_as_markup(
    agent_client, policy, consumer, support_agent
):
    services.consent_change(
        user=consumer,
        allowed=False,
        channel=Channel.SUPPORT,
        actor=support_agent,
        reason='<img src=x onerror="alert(1)">',
        reference="T-1",
    )
    Delivery.objects.filter(subject_id=consumer.subject_id).update(
        state=State.DEAD, attempts=1, last_error="HTTP 400: <script>alert('x')</script>"
    )

    page = agent_client.get(url(consumer)).content.decode()

    assert "<script>" not in page and "<img src=x" not in page
    assert "HTTP 400: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_an_event_of_a_kind_since_retired_shows_its_stored_name(agent_client, policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    Delivery.objects.filter(subject_id=consumer.subject_id).update(state=State.APPLIED)
    with pgtrigger.ignore("consent.ConsentEvent:append_only"):
        ConsentEvent.objects.filter(subject_id=consumer.subject_id).update(channel="fax")

    page = agent_client.get(url(consumer)).content.decode()

    assert "Channel: fax" in page
    assert "</span> applied</li>" in page  # applied, though no time was recorded


def test_a_pending_change_and_events_that_send_nothing_are_told_apart(
    agent_client, policy, consumer
):
    services.notice_record_served(user=consumer)
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    page = agent_client.get(url(consumer)).content.decode()

    assert "pending" in page
    assert "Changes nothing downstream stores hold." in page


def test_a_support_change_names_the_agent(agent_client, policy, consumer, support_agent):
    services.consent_change(
        user=consumer,
        allowed=False,
        channel=Channel.SUPPORT,
        actor=support_agent,
        reason="Asked by email to opt out",
        reference="T-42",
    )

    page = agent_client.get(url(consumer)).content.decode()

    assert "By: Support agent (agent@example.com)" in page
    assert "Reason: Asked by email to opt out" in page
    assert "Reference: T-42" in page


def test_every_look_is_recorded_with_what_was_asked(agent_client, policy, consumer, support_agent):
    agent_client.get(url(consumer))
    agent_client.get(url(consumer), {"kind": "decision"}, headers={"HX-Request": "true"})

    records = list(AccessRecord.objects.order_by("id"))
    assert [(r.agent, r.subject_id, r.action) for r in records] == [
        (support_agent, consumer.subject_id, "viewed"),
        (support_agent, consumer.subject_id, "viewed"),
    ]
    assert [r.detail for r in records] == ["", "kind=decision"]
    assert records[0].ip_prefix == "127.0.0.0/24"


def test_the_audit_chain_of_an_intact_history_is_intact(agent_client, policy, consumer):
    flip(consumer, 3)

    page = agent_client.get(url(consumer, "audit/"), headers={"HX-Request": "true"})

    assert "chain is intact." in page.content.decode()
    assert "<html" not in page.content.decode()
    assert not AccessRecord.objects.exists()


def test_a_tampered_history_is_reported_with_the_first_bad_event(agent_client, policy, consumer):
    flip(consumer, 3)
    with pgtrigger.ignore("consent.ConsentEvent:append_only"):
        ConsentEvent.objects.filter(subject_id=consumer.subject_id, number=2).update(
            after="allowed"
        )

    page = agent_client.get(url(consumer, "audit/")).content.decode()

    assert "Broken." in page
    assert "Event number 2 fails the check: its fields do not match its hash" in page
    assert "<html" in page


def test_the_user_page_loads_the_audit_check_and_links_it_without_javascript(
    agent_client, policy, consumer
):
    page = agent_client.get(url(consumer)).content.decode()

    audit = f"/support/users/{consumer.pk}/audit/"
    assert f'<div id="audit" hx-get="{audit}" hx-trigger="load">' in page
    assert f'<a href="{audit}">' in page


def test_the_history_exports_as_csv_and_json_and_each_export_is_recorded(
    agent_client, policy, consumer, support_agent
):
    flip(consumer, 3)

    response = agent_client.get(url(consumer, "history.csv"))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    exported = agent_client.get(url(consumer, "history.json"))

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"consent-history-user-{consumer.pk}.csv" in response["Content-Disposition"]
    assert [row["number"] for row in rows] == ["1", "2", "3"]
    body = json.loads(exported.content)
    assert body["subject_id"] == str(consumer.subject_id)
    assert [e["number"] for e in body["events"]] == [1, 2, 3]
    assert list(AccessRecord.objects.order_by("id").values_list("action", flat=True)) == [
        "exported_csv",
        "exported_json",
    ]


def test_support_s_exports_name_the_agent_who_acted_and_the_user_s_own_does_not(
    client, agent_client, policy, consumer, support_agent
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.consent_change(
        user=consumer,
        allowed=False,
        channel=Channel.SUPPORT,
        actor=support_agent,
        reason="Asked by mail",
        reference="T-2",
    )

    response = agent_client.get(url(consumer, "history.csv"))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    events = json.loads(agent_client.get(url(consumer, "history.json")).content)["events"]
    client.force_login(consumer)
    own = json.loads(client.get("/settings/privacy/history/?format=json").content)["events"]

    assert [row["acted_by_email"] for row in rows] == ["", "agent@example.com"]
    assert [event["acted_by_email"] for event in events] == [None, "agent@example.com"]
    assert [event["acted_by"] for event in own] == ["user", "support"]
    assert all("acted_by_email" not in event for event in own)


def test_an_unknown_export_format_is_not_found(agent_client, consumer):
    assert agent_client.get(url(consumer, "history.xml")).status_code == 404
    assert not AccessRecord.objects.exists()


def test_one_user_s_page_shows_nobody_else_s_events(agent_client, policy, consumer):
    other = User.objects.create_user("other@example.com", "a-long-password-123", plan="max")
    flip(other, 2)
    flip(consumer, 1)

    response = agent_client.get(url(consumer))

    assert {row.event.subject_id for row in response.context["rows"]} == {consumer.subject_id}


@pytest.mark.parametrize("before", ["9223372036854775808", "2147483648", "²"])
def test_a_page_number_out_of_range_is_a_400(agent_client, policy, consumer, before):
    assert agent_client.get(url(consumer), {"before": before}).status_code == 400


def test_a_user_id_past_what_the_database_holds_is_a_404(agent_client):
    assert agent_client.get("/support/users/99999999999999999999/").status_code == 404


def test_an_old_change_whose_deliveries_were_pruned_says_so(
    agent_client, policy, consumer, settings
):
    settings.CONSENT_DELIVERY_RETENTION_DAYS = 14
    long_ago = timezone.now() - timedelta(days=30)
    flip(consumer, 2, start=long_ago)
    Delivery.objects.filter(event_number=1).delete()

    page = agent_client.get(url(consumer)).content.decode()

    assert "the record of each delivery is kept only for a user's latest change" in page
    assert "once 14 days have passed" in page  # as the prune is told


def test_terms_not_yet_in_force_are_not_called_current(agent_client, policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    terms_published("Version two", effective_in=timedelta(days=7))

    page = agent_client.get(url(consumer)).content.decode()

    # Version 1 is the one in force for a week yet; the help page says "Until then, version 1
    # applies". Support must not tell the user that version 2 is the current one.
    assert "Version 2 is current" not in page
    assert "Version 2 (“Version two”) is published, and users are asked about it" in page
    assert "Until then, version 1 applies." in page


def test_a_choice_under_older_terms_is_not_said_to_be_under_the_current_ones(
    agent_client, policy, consumer
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    terms_published("Wording fixes", requires_new_choice=False)

    page = agent_client.get(url(consumer)).content.decode()

    assert "under policy version 1" in page  # the current choice line, correct
    assert "This user has chosen under it." not in page  # ...contradicted below it
    assert "This user chose under version 1; the newer terms do not ask again" in page


def test_superseded_is_not_said_applied_while_the_newer_change_fails(
    agent_client, policy, consumer, settings
):
    settings.CONSENT_SINKS = {"redis": {}}
    older = services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    newer = services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    # As a drain leaves them (consent/outbox.py marks the older superseded before sending the
    # newer), when the sink then refuses the newer one.
    Delivery.objects.filter(event=older).update(state=State.SUPERSEDED)
    Delivery.objects.filter(event=newer).update(state=State.DEAD, attempts=12, last_error="down")

    page = agent_client.get(url(consumer)).content.decode()

    assert "a newer change was applied instead" not in page


def test_a_pruned_superseded_change_is_not_said_sent(agent_client, policy, consumer, settings):
    start = timezone.now() - timedelta(days=30)
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=start)
    services.consent_change(
        user=consumer, allowed=False, channel=Channel.SETTINGS, now=start + timedelta(minutes=1)
    )
    for sink in settings.CONSENT_SINKS:
        outbox_drain(sink)  # the first is superseded, never sent
    outbox_prune()

    page = agent_client.get(url(consumer, "?kind=decision&before=2")).content.decode()

    assert "#1" in page
    assert "Sent to the downstream stores;" not in page  # perhaps never sent: it may be either
    assert "Sent to the downstream stores, or skipped there for a newer change" in page


def test_reading_a_users_audit_chain_is_recorded(agent_client, policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    response = agent_client.get(url(consumer, "audit/"))

    assert consumer.email in response.content.decode()
    record = AccessRecord.objects.get(subject_id=consumer.subject_id)
    assert record.detail == "audit chain"
    # Loaded into the user's page, which records the look itself: not twice.
    agent_client.get(url(consumer, "audit/"), headers={"HX-Request": "true"})
    assert AccessRecord.objects.filter(subject_id=consumer.subject_id).count() == 1


def test_a_chain_cut_at_its_end_is_not_called_intact(agent_client, policy, consumer):
    for n in range(3):
        services.consent_change(user=consumer, allowed=n % 2 == 0, channel=Channel.SETTINGS)
    with pgtrigger.ignore("consent.ConsentEvent:append_only"):
        last = ConsentEvent.objects.get(subject_id=consumer.subject_id, number=3)
        Delivery.objects.filter(event=last).delete()
        last.delete()

    page = agent_client.get(url(consumer, "audit/")).content.decode()

    assert "This user's chain is intact." not in page
    said = (
        "Event number 2 fails the check: the chain ends here, yet event 3 is the newest on record"
    )
    assert said in page


def test_a_choice_ended_by_terms_in_force_is_not_said_to_allow(agent_client, policy, consumer):
    choice_then_terms_asking_again(consumer)

    page = agent_client.get(url(consumer)).content.decode()

    assert "Allows training" not in page  # it ended two hours ago; eligibility says so
    assert "(training not allowed)" in page  # and its retention is the declined one's


def test_not_now_to_older_terms_is_not_said_of_the_current_ones(agent_client, policy, consumer):
    services.consent_defer(user=consumer)  # "Not now" to version 1, for a day
    terms_published("Urgent", decision_deadline_in=timedelta(hours=2))

    page = agent_client.get(url(consumer)).content.decode()

    # The user never saw version 2, whose deadline is in two hours: they said nothing to it.
    assert "said “Not now” until" not in page


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_the_whole_log_verdict_does_not_vouch_for_events_written_after_it(
    agent_client, policy, consumer
):
    someone = UserFactory(plan=User.Plan.PRO)
    services.consent_change(user=someone, allowed=False, channel=Channel.SETTINGS)
    audit_checkpoint()
    verification = audit_verify_and_record()
    assert verification.verdict == "intact"
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)  # after it

    page = agent_client.get(url(consumer, "audit/")).content.decode()

    assert "agreed with its signed checkpoints when last checked" in page
    assert "0 written since" not in page
    assert "Events written after that are checked at the next hourly check." in page
