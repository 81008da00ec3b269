import pytest
from django.db import connection, transaction
from django.db.models import ProtectedError
from django.db.utils import ProgrammingError

from consent import services
from support.models import AccessRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def record(support_agent, consumer):
    return AccessRecord.objects.create(
        agent=support_agent, subject_id=consumer.subject_id, action=AccessRecord.Action.VIEWED
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE support_accessrecord SET action = 'exported_csv' WHERE id = %s",
        "DELETE FROM support_accessrecord WHERE id = %s",
    ],
)
def test_access_records_cannot_be_altered_even_in_sql(record, statement):
    with (
        pytest.raises(ProgrammingError, match="Cannot update or delete"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [record.pk])

    assert AccessRecord.objects.get().action == "viewed"


def test_an_agent_who_looked_at_data_cannot_be_deleted(record, support_agent):
    with pytest.raises(ProtectedError), transaction.atomic():
        support_agent.delete()


def test_a_user_who_was_looked_at_can_delete_their_account_and_the_record_stays(
    record, consumer, policy
):
    services.account_delete(user=consumer, channel=services.Channel.SYSTEM)

    assert AccessRecord.objects.get().subject_id == record.subject_id
