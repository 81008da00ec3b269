"""Access records in the admin: readable by admins, not alterable by anyone."""

import pytest

from consent import services
from support.models import AccessRecord

pytestmark = pytest.mark.django_db

RECORDS = "/admin/support/accessrecord/"


@pytest.fixture
def record(agent_client, policy, consumer) -> AccessRecord:
    agent_client.get(f"/support/users/{consumer.pk}/", {"kind": "decision"})
    return AccessRecord.objects.get()


def test_an_admin_reads_who_looked_at_whom_and_what(record, admin_client, consumer):
    response = admin_client.get(RECORDS)

    page = response.content.decode()
    assert response.status_code == 200
    assert "agent@example.com" in page
    assert f'<a href="/support/users/{consumer.pk}/">{consumer.email}</a>' in page
    assert "Opened the user&#x27;s page" in page
    assert "kind=decision" in page


def test_records_are_searched_by_agent_and_by_subject(record, admin_client, consumer):
    by_agent = admin_client.get(RECORDS, {"q": "agent@example.com"})
    by_subject = admin_client.get(RECORDS, {"q": str(consumer.subject_id)})
    nobody = admin_client.get(RECORDS, {"q": "nobody@example.com"})

    assert list(by_agent.context["cl"].result_list) == [record]
    assert list(by_subject.context["cl"].result_list) == [record]
    assert list(nobody.context["cl"].result_list) == []


def test_records_are_read_only_for_a_superuser(record, admin_client):
    assert admin_client.get(f"{RECORDS}add/").status_code == 403
    assert admin_client.post(f"{RECORDS}{record.pk}/change/", {"detail": ""}).status_code == 403
    assert admin_client.post(f"{RECORDS}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert "delete_selected" not in admin_client.get(RECORDS).content.decode()
    assert AccessRecord.objects.get().detail == "kind=decision"


def test_agents_cannot_read_or_alter_records(record, agent_client):
    assert agent_client.get(RECORDS).status_code == 403
    assert agent_client.post(f"{RECORDS}{record.pk}/delete/", {"post": "yes"}).status_code == 403


def test_a_record_outlives_the_account_it_is_about(record, admin_client, consumer):
    services.account_delete(user=consumer, channel=services.Channel.SYSTEM)

    page = admin_client.get(RECORDS).content.decode()

    assert "(account deleted)" in page
    assert str(record.subject_id) in page
