"""The user's own history: keyset pages, exports, receipts, and nobody else's."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent import services
from consent.metadata import RequestMeta
from consent.models import ConsentEvent
from consent.services import Channel
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/settings/privacy/history/"


def flip(user, times, *, start=None, meta=services.NO_META):
    start = start or timezone.now() - timedelta(days=1)
    for n in range(times):
        services.consent_change(
            user=user,
            allowed=n % 2 == 0,
            channel=Channel.SETTINGS,
            meta=meta,
            now=start + timedelta(minutes=n),
        )


@pytest.fixture
def signed_in(client, consumer):
    client.force_login(consumer)
    return client


def numbers_on(page):
    return [event.number for event in page.context["page"].events]


def test_the_history_lists_own_events_newest_first_with_who_and_how(
    policy, consumer, signed_in, support_agent
):
    flip(consumer, 2)
    services.consent_change(
        user=consumer,
        allowed=True,
        channel=Channel.SUPPORT,
        actor=support_agent,
        reason="Asked by email",
        reference="T-1",
    )

    response = signed_in.get(URL)

    page = response.content.decode()
    assert numbers_on(response) == [3, 2, 1]
    assert page.index("Allowed training") < page.index("Declined training")
    assert "By: Support, on your request" in page
    assert "Reason: Asked by email" in page
    assert "By: You" in page
    assert "Privacy settings" in page
    assert "Policy version 1" in page


def test_a_plan_change_says_which_plan(policy, consumer, signed_in, admin_user):
    services.user_change_plan(
        user=consumer, plan="max", channel=Channel.ADMIN, actor=admin_user, reason="Upgrade"
    )

    assert "Plan changed to Max" in signed_in.get(URL).content.decode()


def test_pages_follow_a_keyset_cursor_not_an_offset(policy, consumer, signed_in):
    flip(consumer, 45)

    with CaptureQueriesContext(connection) as queries:
        first = signed_in.get(URL)
    assert numbers_on(first) == list(range(45, 25, -1))
    assert 'href="?before=26"' in first.content.decode()
    assert not any("OFFSET" in query["sql"].upper() for query in queries)

    second = signed_in.get(URL, {"before": 26})
    assert numbers_on(second) == list(range(25, 5, -1))
    third = signed_in.get(URL, {"before": 6})
    assert numbers_on(third) == [5, 4, 3, 2, 1]
    assert "?before=" not in third.content.decode()


def test_htmx_gets_the_next_rows_only(policy, consumer, signed_in):
    flip(consumer, 25)

    response = signed_in.get(URL, {"before": 6}, HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert "<html" not in page
    assert page.count('class="event"') == 5


@pytest.mark.parametrize("query", ["?before=abc", "?before=-1", "?format=xml"])
def test_malformed_queries_get_a_400(policy, signed_in, query):
    assert signed_in.get(URL + query).status_code == 400


def test_the_csv_export_has_the_whole_history_oldest_first(policy, consumer, signed_in):
    flip(consumer, 30)

    response = signed_in.get(URL, {"format": "csv"})

    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["number"]) for row in rows] == list(range(1, 31))
    assert rows[0]["after"] == "allowed" and rows[0]["channel"] == "settings"
    assert rows[0]["acted_by"] == "user" and rows[0]["policy_version"] == "1"


def test_the_csv_export_defuses_spreadsheet_formulas(policy, consumer, signed_in):
    flip(consumer, 1, meta=RequestMeta(user_agent="=HYPERLINK(evil)"))

    response = signed_in.get(URL, {"format": "csv"})

    row = next(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert row["user_agent"] == "'=HYPERLINK(evil)"


def test_the_json_export_has_the_whole_history(policy, consumer, signed_in):
    flip(consumer, 3)

    body = json.loads(signed_in.get(URL, {"format": "json"}).content)

    assert body["subject_id"] == str(consumer.subject_id)
    assert [event["number"] for event in body["events"]] == [1, 2, 3]
    assert body["events"][1]["before"] == "allowed" and body["events"][1]["after"] == "declined"


def test_a_decision_has_a_receipt_shaped_after_iso_27560(policy, consumer, signed_in):
    services.notice_record_served(user=consumer)
    services.consent_change(user=consumer, allowed=True, channel=Channel.POPUP, shown_default=True)

    page = signed_in.get(URL).content.decode()
    assert 'href="/settings/privacy/history/2/receipt/"' in page
    assert "/history/1/receipt/" not in page

    response = signed_in.get("/settings/privacy/history/2/receipt/")
    receipt = json.loads(response.content)
    event = ConsentEvent.objects.get(subject_id=consumer.subject_id, number=2)
    assert "attachment" in response["Content-Disposition"]
    assert receipt["schema_version"].startswith("ISO/IEC TS 27560")
    assert receipt["record_id"].startswith("urn:uuid:")
    assert receipt["pii_principal"]["id"] == str(consumer.subject_id)
    assert receipt["notice"]["version"] == 1
    assert receipt["notice"]["content_hash"] == f"sha256:{policy.content_hash}"
    assert receipt["notice"]["shown_default"] == "on"
    assert receipt["purposes"][0]["retention"] == {"days": 1825}
    assert receipt["event"]["type"] == "given"
    assert receipt["event"]["time"] == event.created_at.isoformat()
    assert receipt["withdrawal"]["url"] == "http://testserver/settings/privacy/"
    assert receipt["proof"]["event_hash"] == event.hash


def test_only_decisions_have_receipts(policy, consumer, signed_in):
    services.notice_record_served(user=consumer)

    assert signed_in.get("/settings/privacy/history/1/receipt/").status_code == 404


def test_guessing_numbers_never_reads_another_users_history(policy, consumer, client):
    victim = UserFactory(plan="max")
    flip(victim, 6)
    flip(consumer, 1)
    client.force_login(consumer)

    for number in range(1, 10):
        response = client.get(f"/settings/privacy/history/{number}/receipt/")
        if number == 1:
            assert json.loads(response.content)["pii_principal"]["id"] == str(consumer.subject_id)
        else:
            assert response.status_code == 404
    for query in ({}, {"format": "csv"}, {"format": "json"}, {"subject_id": victim.subject_id}):
        response = client.get(URL, query)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert str(victim.subject_id).encode() not in body
        victim_hash = ConsentEvent.objects.filter(subject_id=victim.subject_id).values("hash")[0]
        assert victim_hash["hash"].encode() not in body


def test_anonymous_users_are_sent_to_sign_in(policy, client):
    for url in (URL, URL + "?format=csv", "/settings/privacy/history/1/receipt/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "query", ["?before=9223372036854775808", "?before=²", "?before=0", "?format=pdf"]
)
def test_numbers_out_of_range_or_not_ascii_get_a_400(policy, signed_in, query):
    assert signed_in.get(URL + query).status_code == 400


def test_a_receipt_number_past_what_the_database_holds_is_a_404(policy, signed_in):
    assert signed_in.get(f"{URL}99999999999999999999/receipt/").status_code == 404


def test_personal_pages_exports_and_receipts_are_not_cached(policy, consumer, signed_in):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    for url in (URL, f"{URL}?format=csv", f"{URL}?format=json", f"{URL}1/receipt/", "/"):
        cache_control = set(signed_in.get(url)["Cache-Control"].split(", "))
        assert {"private", "no-store"} <= cache_control, url
