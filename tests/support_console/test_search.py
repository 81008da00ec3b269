"""Finding a user by email (exact or prefix), by id or by subject id, a page at a time."""

import factory
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from support.models import AccessRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/support/"


def emails_on(response) -> list[str]:
    return [account.email for account in response.context["page"].users]


@pytest.fixture
def people(db):
    return [
        UserFactory(email=email)
        for email in (
            "ann@example.com",
            "anna@example.com",
            "annabel@example.org",
            "bob@example.com",
        )
    ]


def test_the_empty_search_lists_nobody(agent_client, people):
    response = agent_client.get(URL)

    assert response.status_code == 200
    assert response.context["page"].users == []
    assert "Find a user" in response.content.decode()


def test_an_exact_email_comes_first_then_those_it_starts(agent_client, people):
    response = agent_client.get(URL, {"q": "ann@example.com"})

    assert emails_on(response) == ["ann@example.com"]
    assert emails_on(agent_client.get(URL, {"q": "Ann"})) == [
        "ann@example.com",
        "anna@example.com",
        "annabel@example.org",
    ]


def test_a_user_id_finds_that_user(agent_client, people):
    bob = people[-1]

    response = agent_client.get(URL, {"q": str(bob.pk)})

    assert bob.email in emails_on(response)
    page = response.content.decode()
    assert f'href="/support/users/{bob.pk}/"' in page


def test_a_subject_id_finds_its_user(agent_client, people):
    anna = people[1]

    response = agent_client.get(URL, {"q": f"  {anna.subject_id}  "})

    assert emails_on(response) == ["anna@example.com"]
    assert str(anna.subject_id) in response.content.decode()


def test_nobody_matches_a_stranger(agent_client, people):
    response = agent_client.get(URL, {"q": "zed@"})

    assert emails_on(response) == []
    assert "No user matches “zed@”." in response.content.decode()


@pytest.mark.parametrize("query", ["99999999999999999999999", "%", "_nn", "ann' OR 1=1 --"])
def test_odd_queries_find_nothing_and_break_nothing(agent_client, people, query):
    response = agent_client.get(URL, {"q": query})

    assert response.status_code == 200
    assert emails_on(response) == []


def test_an_overlong_query_is_refused(agent_client):
    response = agent_client.get(URL, {"q": "a" * 300})

    assert response.status_code == 400
    assert "at most 254 characters" in response.content.decode()


def test_results_come_a_page_at_a_time_by_keyset(agent_client):
    UserFactory.create_batch(25, email=factory.Sequence(lambda n: f"page-{n:03d}@example.com"))

    with CaptureQueriesContext(connection) as queries:
        first = agent_client.get(URL, {"q": "page-"})
    assert len(emails_on(first)) == 20
    assert not any("OFFSET" in query["sql"].upper() for query in queries)
    after = first.context["page"].after
    assert after == emails_on(first)[-1]
    assert "Next results" in first.content.decode()

    second = agent_client.get(URL, {"q": "page-", "after": after})

    assert len(emails_on(second)) == 5
    assert set(emails_on(first)).isdisjoint(emails_on(second))
    assert second.context["page"].after is None
    assert "Back to the first results" in second.content.decode()


def test_htmx_gets_only_the_results_and_caches_keep_them_apart(agent_client, people):
    response = agent_client.get(URL, {"q": "bob"}, headers={"HX-Request": "true"})

    page = response.content.decode()
    assert page.lstrip().startswith('<section id="results"')
    assert "<html" not in page
    assert "bob@example.com" in page
    assert 'hx-swap-oob="true"' in page and "1 user shown." in page
    assert "HX-Request" in response["Vary"]


def test_htmx_restoring_history_gets_the_whole_page(agent_client, people):
    response = agent_client.get(
        URL, {"q": "bob"}, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )

    assert "<html" in response.content.decode()


def test_the_search_form_works_without_javascript(agent_client):
    page = agent_client.get(URL).content.decode()

    assert '<form method="get" action="/support/"' in page
    assert 'hx-get="/support/"' in page
    assert '<button type="submit"' in page


def test_searching_is_not_an_access_to_anyone_s_data(agent_client, people):
    agent_client.get(URL, {"q": "ann"})

    assert not AccessRecord.objects.exists()


@pytest.mark.parametrize("query", ["²", "٣", "9223372036854775808", "99999999999999999999"])
def test_digits_that_are_not_a_user_id_find_nobody_and_break_nothing(agent_client, query):
    response = agent_client.get(URL, {"q": query})

    assert response.status_code == 200
    assert response.context["page"].users == []
