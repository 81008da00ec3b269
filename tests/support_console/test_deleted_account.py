"""A deleted account: support finds its history by subject id, reads and exports it."""

import csv
import io
import uuid

import pytest

from consent import services
from consent.models import ConsentEvent
from consent.services import Channel
from support.models import AccessRecord
from tests.factories import UserFactory
from tests.support_console.conftest import flip

pytestmark = pytest.mark.django_db


@pytest.fixture
def deleted(policy, consumer):
    """The subject id of a consumer who decided three times and then deleted their account."""
    flip(consumer, 3)
    services.account_delete(user=consumer, channel=Channel.SETTINGS)
    return consumer.subject_id


def url(subject_id, suffix: str = "") -> str:
    return f"/support/subjects/{subject_id}/{suffix}"


def test_a_search_by_subject_id_leads_to_the_deleted_accounts_history(agent_client, deleted):
    page = agent_client.get("/support/", {"q": str(deleted).upper()}).content.decode()

    assert "the account was deleted" in page
    assert f'href="{url(deleted)}"' in page
    unknown = agent_client.get("/support/", {"q": str(uuid.uuid4())}).content.decode()
    assert "No user matches" in unknown and "/support/subjects/" not in unknown


def test_the_page_tells_when_it_was_deleted_and_the_whole_history(agent_client, deleted):
    response = agent_client.get(url(deleted))

    page = response.content.decode()
    assert response.status_code == 200
    assert "A deleted account" in page and str(deleted) in page
    assert "Deleted on" in page and ", by: The user." in page
    assert [row.event.number for row in response.context["rows"]] == [4, 3, 2, 1]
    assert f'href="{url(deleted, "history.csv")}"' in page
    assert f'hx-get="{url(deleted, "audit/")}"' in page
    assert "Record a change" not in page  # there is nobody to change
    record = AccessRecord.objects.get()
    assert (record.subject_id, record.action) == (deleted, AccessRecord.Action.VIEWED)


def test_its_history_filters_and_pages_as_a_users_does(agent_client, deleted):
    response = agent_client.get(url(deleted), {"kind": "decision"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert [row.event.number for row in response.context["rows"]] == [3, 2, 1]
    assert agent_client.get(url(deleted), {"since": "not a date"}).status_code == 400


def test_its_exports_are_recorded(agent_client, deleted):
    exported = agent_client.get(url(deleted, "history.csv"))

    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert len(rows) == 4
    assert f"consent-history-subject-{deleted}.csv" in exported["Content-Disposition"]
    assert agent_client.get(url(deleted, "history.json")).json()["events"][-1]["event"] == (
        ConsentEvent.Kind.ACCOUNT_DELETED
    )
    assert list(AccessRecord.objects.values_list("action", flat=True).order_by("id")) == [
        AccessRecord.Action.EXPORTED_CSV,
        AccessRecord.Action.EXPORTED_JSON,
    ]


def test_its_audit_chain_is_verified(agent_client, deleted):
    page = agent_client.get(url(deleted, "audit/")).content.decode()

    assert "This user&#x27;s chain is intact." in page or "This user's chain is intact." in page
    assert f'href="{url(deleted)}"' in page


@pytest.mark.parametrize("suffix", ["", "audit/", "history.csv", "history.json"])
def test_only_a_deleted_accounts_subject_has_these_pages(agent_client, policy, suffix):
    living = UserFactory()
    services.consent_change(user=living, allowed=True, channel=Channel.SETTINGS)

    assert agent_client.get(url(living.subject_id, suffix)).status_code == 404
    assert agent_client.get(url(uuid.uuid4(), suffix)).status_code == 404
    assert not AccessRecord.objects.exists()


@pytest.mark.parametrize("suffix", ["", "audit/", "history.csv"])
def test_only_support_reads_them(client, consumer, deleted, suffix):
    other = UserFactory()
    client.force_login(other)

    assert client.get(url(deleted, suffix)).status_code == 403
