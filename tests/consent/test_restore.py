"""The app's database restored from an older backup, with real workers, sinks and pg_dump: no
withdrawn consent comes back anywhere, and the next changes reach every sink again."""

import subprocess
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from consent import services
from consent.audit import audit_checkpoint, audit_verify
from consent.eligibility import eligibility
from consent.models import AuditVerification, ConsentEvent, ConsentState
from consent.reconcile import reconcile
from consent.selectors import consent_for
from consent.services import Channel
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "warehouse"]),
]
Verdict = AuditVerification.Verdict


def database_command(program: str, *args: str) -> None:
    settings = connections["default"].settings_dict
    subprocess.run(
        [
            program,
            "--host", settings["HOST"] or "127.0.0.1",
            "--username", settings["USER"] or "postgres",
            "--dbname", settings["NAME"],
            *args,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def backup(path) -> None:
    database_command("pg_dump", "--format=custom", f"--file={path}")


def restore(path) -> None:
    connections.close_all()
    database_command("pg_restore", "--clean", "--if-exists", "--no-owner", str(path))


def stop_workers(stack) -> None:
    for worker in stack.workers:
        worker.stop()


def held(stack, user) -> set[tuple]:
    """Return what every sink holds of the user: (allowed, deleted), one per sink that differs."""
    subject = str(user.subject_id)
    return {
        (allowed, deleted)
        for sink in stack.held().values()
        for s, (_n, allowed, deleted) in sink.items()
        if s == subject
    }


def test_a_restore_from_an_older_backup_brings_back_no_withdrawn_consent(
    policy, stack, tmp_path, agent_client
):
    stack.start_worker(beat=True)
    half_a = UserFactory.create_batch(6, plan="pro")
    half_b = UserFactory.create_batch(6, plan="pro")
    for user in half_a:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    for user in half_b:
        services.consent_change(user=user, allowed=False, channel=Channel.SETTINGS)
    stack.wait_converged()
    audit_checkpoint()
    backup(tmp_path / "backup.dump")
    allowed_while = timezone.now()

    for user in half_a:
        services.consent_change(user=user, allowed=False, channel=Channel.SETTINGS)
    for user in half_b:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    stack.wait_converged()
    audit_checkpoint()  # its copies outside count the events the backup lacks
    stop_workers(stack)
    restore(tmp_path / "backup.dump")

    # What an outside run found on the code before: the database says A allowed again.
    assert {consent_for(user).state for user in half_a} == {ConsentState.ALLOWED}
    assert audit_verify().verdict == Verdict.RESTORED
    dry = StringIO()
    call_command("recover_after_restore", "--dry-run", stdout=dry)
    assert "12 users are known newer downstream" in dry.getvalue()
    assert {consent_for(user).state for user in half_a} == {ConsentState.ALLOWED}  # dry

    call_command("recover_after_restore", stdout=StringIO())

    assert {consent_for(user).state for user in half_a} == {ConsentState.DECLINED}
    assert {consent_for(user).state for user in half_b} == {ConsentState.ALLOWED}
    stack.start_worker(beat=True)
    stack.wait_converged()
    for user in half_a:
        assert held(stack, user) == {(False, False)}
    chats = [(user.subject_id, allowed_while - timedelta(seconds=1)) for user in half_a]
    assert eligibility(chats, as_of=timezone.now()) == [False] * len(half_a)
    assert audit_verify().verdict == Verdict.INTACT

    # The next change of every user reaches every sink.
    for user in half_a[:3]:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    for user in half_b[:3]:
        services.consent_change(user=user, allowed=False, channel=Channel.SETTINGS)
    stack.wait_converged()
    assert held(stack, half_a[0]) == {(True, False)}
    assert held(stack, half_b[0]) == {(False, False)}
    assert all(drift.clean for drift in reconcile())
    audit_checkpoint()
    assert audit_verify().verdict == Verdict.INTACT  # a restore, never taken for tampering

    restored = ConsentEvent.objects.filter(subject_id=half_a[0].subject_id, kind="restored").get()
    page = agent_client.get(f"/support/users/{half_a[0].pk}/").content.decode()
    assert "Restored after the database was restored from a backup" in page
    assert f"event {restored.number - 1}, declined" in restored.reason
