"""The audit log against someone who can write its database: append-only triggers, hash chains,
and signed checkpoints of a Merkle tree, copied outside the database. These run on PostgreSQL
and again on the embedded default's SQLite (marker `sqlite`)."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from consent import services
from consent.audit import (
    CopiesMissing,
    audit_checkpoint,
    audit_first_break,
    audit_verify,
    copies_missing,
    event_hash,
    known_checkpoints,
    signer,
)
from consent.models import (
    AuditCheckpoint,
    AuditVerification,
    CheckpointCopy,
    ConsentEvent,
    ConsentPolicy,
    Delivery,
    PolicyEvent,
    TrainingConsent,
)
from consent.notes import Signer
from consent.services import Channel
from consent.triggers import sqlite_triggers, sqlite_triggers_install
from support.models import AccessRecord
from support.services import access_record
from tests.factories import UserFactory

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db(databases=["default", "warehouse"])]
Verdict = AuditVerification.Verdict


@contextmanager
def as_database_admin():
    """Act as someone with write access to the database, who turns its triggers off."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        else:
            for statement in sqlite_triggers():
                cursor.execute(f"DROP TRIGGER IF EXISTS {statement.split('"')[1]}")
        try:
            yield cursor
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")
            else:
                sqlite_triggers_install(connection)


@pytest.fixture
def users(policy):
    people = [UserFactory(plan="pro"), UserFactory(plan="max")]
    for user in people:
        services.notice_record_served(user=user)
        services.consent_change(user=user, allowed=True, channel=Channel.POPUP, shown_default=True)
        services.consent_change(user=user, allowed=False, channel=Channel.SETTINGS)
    return people


def events_of(user) -> list[ConsentEvent]:
    return list(ConsentEvent.objects.filter(subject_id=user.subject_id).order_by("number"))


def verdict() -> tuple[str, str]:
    report = audit_verify()
    return report.verdict, report.detail


# Append-only, on both databases


@pytest.mark.parametrize("operation", ["UPDATE {table} SET id = id", "DELETE FROM {table}"])
@pytest.mark.parametrize(
    "model", [ConsentEvent, PolicyEvent, AccessRecord, AuditCheckpoint], ids=lambda m: m.__name__
)
def test_raw_sql_cannot_rewrite_or_remove_audit_rows(users, support_agent, operation, model):
    access_record(
        agent=support_agent, subject_id=users[0].subject_id, action=AccessRecord.Action.VIEWED
    )
    audit_checkpoint()
    count = model.objects.count()
    assert count > 0

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(operation.format(table=model._meta.db_table))

    assert model.objects.count() == count


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE {table} SET text = 'Other terms'",
        "UPDATE {table} SET decision_deadline = effective_at",
        "DELETE FROM {table}",
    ],
    ids=["text", "earlier-deadline", "delete"],
)
def test_a_published_policy_cannot_be_changed_or_removed(policy, change):
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(change.format(table=ConsentPolicy._meta.db_table))

    assert ConsentPolicy.objects.get().text == policy.text


# Checkpoints


def test_a_checkpoint_is_signed_and_copied_outside_the_database(users, settings):
    checkpoint = audit_checkpoint()

    assert checkpoint is not None and checkpoint.tree_size == ConsentEvent.objects.count()
    assert CheckpointCopy.objects.get().note == checkpoint.note
    (copy,) = settings.AUDIT_CHECKPOINT_DIR.glob("*.checkpoint")
    assert copy.read_text() == checkpoint.note
    found, _restores, problems, _unread = known_checkpoints()
    assert problems == []
    assert found[checkpoint.tree_size].where == ("database", "warehouse", "directory")
    assert audit_checkpoint() is None  # nothing new since


def test_a_place_that_cannot_be_written_keeps_neither_the_checkpoint_nor_the_other_place(
    users, settings
):
    directory = settings.AUDIT_CHECKPOINT_DIR
    directory.parent.mkdir(parents=True, exist_ok=True)
    directory.write_text("not a directory")  # a mount gone, say

    with pytest.raises(CopiesMissing, match=r"the directory .*checkpoints: "):
        audit_checkpoint()

    checkpoint = AuditCheckpoint.objects.get()
    assert CheckpointCopy.objects.get().note == checkpoint.note  # the warehouse has it
    assert copies_missing() == ["directory"]
    with pytest.raises(CommandError, match=r"the directory .*the next checkpoint tries again"):
        call_command("audit_checkpoint")

    directory.unlink()  # the mount is back: the next run copies, new events or not
    call_command("audit_checkpoint")
    (copy,) = directory.glob("*.checkpoint")
    assert copy.read_text() == checkpoint.note
    assert copies_missing() == []


def test_a_copy_cut_short_is_written_again_whole(users, settings):
    checkpoint = audit_checkpoint()
    assert checkpoint is not None
    (copy,) = settings.AUDIT_CHECKPOINT_DIR.glob("*.checkpoint")
    copy.write_text(checkpoint.note[:40])  # a disk that filled up, say
    (settings.AUDIT_CHECKPOINT_DIR / f".{copy.name}.writing").write_text("half")

    assert copies_missing() == ["directory"]
    assert audit_checkpoint() is None  # no new event: the copy is made all the same
    assert copy.read_text() == checkpoint.note
    assert copies_missing() == []
    assert verdict()[0] == Verdict.INTACT  # what was left half-written is not read


def test_only_the_latest_checkpoint_and_the_restores_are_copied_each_time(users, settings):
    first = audit_checkpoint()
    CheckpointCopy.objects.all().delete()
    services.consent_change(user=users[0], allowed=True, channel=Channel.SETTINGS)

    second = audit_checkpoint()

    # Its root covers every event before it: the first's copy is no longer needed outside.
    assert first is not None and second is not None
    assert list(CheckpointCopy.objects.values_list("note", flat=True)) == [second.note]
    with CaptureQueriesContext(connection) as read:
        assert copies_missing() == []
    checkpoints = [q["sql"] for q in read if AuditCheckpoint._meta.db_table in q["sql"]]
    assert checkpoints and all("LIMIT 1" in sql for sql in checkpoints)  # never all of them


def test_checkpoints_extend_the_tree_without_reading_it_again(users):
    first = audit_checkpoint()
    services.consent_change(user=users[0], allowed=True, channel=Channel.SETTINGS)

    second = audit_checkpoint()

    assert first is not None and second is not None
    assert second.tree_size == first.tree_size + 1
    assert verdict()[0] == Verdict.INTACT


def test_events_written_after_the_latest_checkpoint_are_fine(users):
    audit_checkpoint()
    services.consent_change(user=users[1], allowed=True, channel=Channel.SETTINGS)

    found, detail = verdict()

    assert found == Verdict.INTACT
    assert "1 written after that checkpoint" in detail


# Tampering by someone who can write the database, each caught by verify_audit and shown on
# the support page


def delete_the_newest_event(user) -> None:
    newest = events_of(user)[-1]
    with as_database_admin():
        Delivery.objects.filter(event=newest).delete()
        ConsentEvent.objects.filter(pk=newest.pk).delete()
        previous = events_of(user)[-1]
        TrainingConsent.objects.filter(user=user).update(
            head_number=previous.number, head_hash=previous.hash, state=previous.after
        )


def rewrite_the_newest_event_with_its_hash_recomputed(user) -> None:
    newest = events_of(user)[-1]
    newest.after = "allowed"
    newest.hash = event_hash(newest)
    with as_database_admin():
        ConsentEvent.objects.filter(pk=newest.pk).update(after="allowed", hash=newest.hash)
        TrainingConsent.objects.filter(user=user).update(head_hash=newest.hash, state="allowed")


def reorder_two_events(user) -> None:
    first, second = events_of(user)[:2]
    with as_database_admin() as cursor:
        table = ConsentEvent._meta.db_table
        cursor.execute(f"UPDATE {table} SET id = -1 WHERE id = %s", [first.pk])  # noqa: S608
        cursor.execute(f"UPDATE {table} SET id = %s WHERE id = %s", [first.pk, second.pk])  # noqa: S608
        cursor.execute(f"UPDATE {table} SET id = %s WHERE id = -1", [second.pk])  # noqa: S608


def replace_the_whole_history(user) -> None:
    """Remove every event of the user and write a new, well-chained history in its place."""
    old = events_of(user)
    with as_database_admin():
        Delivery.objects.filter(event__in=old).delete()
        ConsentEvent.objects.filter(subject_id=user.subject_id).delete()
        TrainingConsent.objects.filter(user=user).delete()
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)


@pytest.mark.parametrize(
    "tamper",
    [
        delete_the_newest_event,
        rewrite_the_newest_event_with_its_hash_recomputed,
        reorder_two_events,
        replace_the_whole_history,
    ],
)
def test_tampering_before_a_checkpoint_is_caught_and_shown_to_support(users, tamper, agent_client):
    audit_checkpoint()

    tamper(users[0])

    with pytest.raises(CommandError, match="tampered with") as failure:
        call_command("verify_audit")
    assert failure.value.returncode == 1
    page = agent_client.get(f"/support/users/{users[1].pk}/audit/").content.decode()
    assert "The audit log was tampered with." in page


def test_a_forged_checkpoint_is_refused(users):
    audit_checkpoint()
    forged = Signer.generate("attacker").sign(
        "consent-audit\n6\nAAAA\ntime 2026-01-01T00:00:00+00:00\n"
    )
    with as_database_admin():
        AuditCheckpoint.objects.create(
            tree_size=999, last_event_id=1, root_hash="0" * 64, frontier=[], note=forged
        )

    found, detail = verdict()

    assert found == Verdict.TAMPERED
    assert "does not verify" in detail


def test_a_checkpoint_directory_that_cannot_be_read_is_said(
    users, settings, tmp_path, agent_client
):
    audit_checkpoint()
    not_a_directory = tmp_path / "copies"
    not_a_directory.write_text("")  # a file where the directory should be
    settings.AUDIT_CHECKPOINT_DIR = str(not_a_directory)

    held, detail = verdict()

    # Neither "intact" nor "tampered": the copies outside the database could not be read.
    assert held == Verdict.INCOMPLETE
    assert detail.startswith("the directory's copies could not be read")
    assert "what could be read: 6 events; all agree with the checkpoint of 6 events" in detail
    with pytest.raises(CommandError, match="not fully checked") as failure:
        call_command("verify_audit")
    assert failure.value.returncode == 3
    page = agent_client.get(f"/support/users/{users[1].pk}/audit/").content.decode()
    assert "The whole log could not be fully checked." in page
    assert "tampered" not in page


def test_a_restore_from_an_older_backup_is_told_apart_from_tampering(users):
    older = audit_checkpoint()
    services.consent_change(user=users[0], allowed=True, channel=Channel.SETTINGS)
    services.consent_change(user=users[1], allowed=True, channel=Channel.SETTINGS)
    newer = audit_checkpoint()
    assert older is not None and newer is not None

    # As a restore of the backup taken at the older checkpoint leaves the database: the newer
    # events and checkpoint are gone from it, not from the warehouse or the directory.
    with as_database_admin():
        lost = ConsentEvent.objects.filter(pk__gt=older.last_event_id)
        Delivery.objects.filter(event__in=lost).delete()
        lost.delete()
        AuditCheckpoint.objects.filter(pk=newer.pk).delete()

    found, detail = verdict()
    assert found == Verdict.RESTORED
    assert f"agrees with the checkpoint of {older.tree_size} events" in detail
    with pytest.raises(CommandError, match="restored") as failure:
        call_command("verify_audit")
    assert failure.value.returncode == 2


def test_old_checkpoints_stay_verifiable_after_a_key_rotation(users, settings):
    audit_checkpoint()
    services.consent_change(user=users[1], allowed=True, channel=Channel.SETTINGS)
    audit_checkpoint()
    old_key = Signer.parse(settings.AUDIT_SIGNING_KEY)
    new_key = Signer.generate(settings.AUDIT_LOG_ORIGIN)
    services.consent_change(user=users[0], allowed=True, channel=Channel.SETTINGS)

    rotated = {"AUDIT_SIGNING_KEY": str(new_key), "AUDIT_VERIFY_KEYS": [str(old_key.verifier)]}
    with override_settings(**rotated):
        assert audit_checkpoint() is not None
        assert verdict()[0] == Verdict.INTACT
    with override_settings(AUDIT_SIGNING_KEY=str(new_key), AUDIT_VERIFY_KEYS=[]):
        found, detail = verdict()  # the old key forgotten: its checkpoints prove nothing
        with pytest.raises(CommandError, match="tampered"):  # tried without changing the record
            call_command("verify_audit", "--no-record")
    assert not AuditVerification.objects.exists()
    assert found == Verdict.TAMPERED
    old_id = f"{old_key.verifier.name}+{old_key.verifier.key_id.hex()}"
    # Said once for each place, with the key to look for and where it belongs.
    assert detail.count("2 notes in the") == 3
    assert f"Signed by {old_id}, not by " in detail
    assert detail.count("its verifier key belongs in AUDIT_VERIFY_KEYS") == 1


def test_verify_audit_keeps_what_it_found(users, capsys):
    audit_checkpoint()

    call_command("verify_audit")

    assert "Audit log intact" in capsys.readouterr().out
    assert AuditVerification.objects.get().verdict == Verdict.INTACT


def test_audit_checkpoint_names_a_key_that_does_not_parse(users, settings):
    settings.AUDIT_SIGNING_KEY = "garbage"

    with pytest.raises(CommandError, match="AUDIT_SIGNING_KEY: Not a signer"):
        call_command("audit_checkpoint", stdout=io.StringIO())

    assert not AuditCheckpoint.objects.exists()


@pytest.mark.parametrize(
    ("setting", "value", "why"),
    [
        ("AUDIT_SIGNING_KEY", "garbage", "AUDIT_SIGNING_KEY: Not a signer key"),
        ("AUDIT_VERIFY_KEYS", ["garbage"], "AUDIT_VERIFY_KEYS: Not a verifier"),
    ],
    ids=["signing", "verify"],
)
def test_verify_audit_says_nothing_was_checked_with_a_key_that_does_not_parse(
    users, settings, setting, value, why
):
    audit_checkpoint()
    setattr(settings, setting, value)

    with pytest.raises(CommandError, match=why) as failure:
        call_command("verify_audit", stdout=io.StringIO())

    # Neither tampering (exit 1) nor intact: not checked, and kept so, for support and the alert.
    assert failure.value.returncode == 3
    kept = AuditVerification.objects.get()
    assert kept.verdict == Verdict.INCOMPLETE
    assert kept.detail.startswith("nothing was verified: ")


def test_an_embedded_signing_key_that_does_not_parse_is_named_by_its_file(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY, settings.DATA_DIR = "", tmp_path
    (tmp_path / "audit-signing.key").write_text("garbage\n")

    with pytest.raises(CommandError, match=r"audit-signing.key: Not a signer key"):
        call_command("verify_audit", "--no-record")


def test_processes_starting_at_once_on_the_embedded_default_share_one_key(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY, settings.DATA_DIR = "", tmp_path
    barrier = threading.Barrier(8)

    def first_start() -> str:
        barrier.wait()
        return str(signer().verifier)

    with ThreadPoolExecutor(8) as pool:
        made = set(pool.map(lambda _: first_start(), range(8)))

    key = tmp_path / "audit-signing.key"
    assert made == {str(Signer.parse(key.read_text()).verifier)}
    assert key.stat().st_mode & 0o777 == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["audit-signing.key"]


def test_events_written_after_the_record_was_read_are_no_break(policy, consumer):
    for n in range(3):
        services.consent_change(user=consumer, allowed=n % 2 == 0, channel=Channel.SETTINGS)
    second = ConsentEvent.objects.get(subject_id=consumer.subject_id, number=2)
    # The record as read just before the third change committed.
    TrainingConsent.objects.filter(user=consumer).update(head_number=2, head_hash=second.hash)

    assert audit_first_break(subject_id=consumer.subject_id) is None
