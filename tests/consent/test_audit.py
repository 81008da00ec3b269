import pgtrigger
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from consent import services
from consent.audit import event_hash
from consent.models import ConsentEvent
from consent.services import Channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(policy, consumer):
    services.notice_record_served(user=consumer)
    services.consent_change(user=consumer, allowed=True, channel=Channel.POPUP, shown_default=True)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    return list(ConsentEvent.objects.filter(subject_id=consumer.subject_id).order_by("number"))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_consentevent SET after = 'allowed' WHERE id = %s",
        "DELETE FROM consent_consentevent WHERE id = %s",
    ],
)
def test_raw_sql_cannot_update_or_delete_an_event(history, statement):
    event = history[-1]

    with (
        pytest.raises(ProgrammingError, match="Cannot update or delete"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [event.pk])

    assert ConsentEvent.objects.get(pk=event.pk).after == "declined"


def test_verify_audit_passes_on_a_clean_database(history, capsys):
    call_command("verify_audit")
    assert "Audit chain intact: 3 events from 1 subjects." in capsys.readouterr().out


def test_verify_audit_names_the_forged_event(history):
    forged = history[1]
    with pgtrigger.ignore("consent.ConsentEvent:append_only"):
        ConsentEvent.objects.filter(pk=forged.pk).update(after="declined")

    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")

    assert f"event id={forged.pk}" in str(failure.value)
    assert "number 2" in str(failure.value)
    assert failure.value.returncode == 1


def test_verify_audit_finds_a_removed_event(history):
    with pgtrigger.ignore("consent.ConsentEvent:append_only"):
        ConsentEvent.objects.filter(pk=history[0].pk).delete()

    with pytest.raises(CommandError, match="number 2, expected 1"):
        call_command("verify_audit")


def test_verify_audit_finds_a_rehashed_event_that_no_longer_chains(history):
    forged = history[1]
    forged.after = "declined"
    forged.hash = event_hash(forged)
    with pgtrigger.ignore("consent.ConsentEvent:append_only"):
        ConsentEvent.objects.filter(pk=forged.pk).update(after=forged.after, hash=forged.hash)

    with pytest.raises(CommandError, match=f"id={history[2].pk}.*does not chain"):
        call_command("verify_audit")
