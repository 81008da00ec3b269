"""Reconcile a batch of subjects at a time: the same findings and repairs as one whole read."""

import io
import subprocess
import uuid
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from consent import audit, policies, recovery, services
from consent.models import (
    ConsentEvent,
    ConsentPolicy,
    Delivery,
    EligibilityInterval,
    EligibilityRecord,
    Reconciliation,
    TermsCopy,
)
from consent.notes import Signer
from consent.outbox import outbox_drain
from consent.reconcile import ReconcileFailed, reconcile
from consent.recovery import recovery_plan
from consent.services import Channel
from consent.sinks import configured_sinks
from consent.sinks.redis import RedisSink
from consent.sinks.warehouse import WarehouseSink
from consent.tasks import reconcile_sinks
from tests.factories import UserFactory
from tests.support.receiver import SECRET

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])

NOBODY = (uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3))


def allowing_a_minute_ago(count: int) -> list:
    """Return users who allowed training a minute ago (reconcile leaves younger changes alone)."""
    users = UserFactory.create_batch(count)
    a_minute_ago = timezone.now() - timedelta(minutes=1)
    for user in users:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS, now=a_minute_ago)
    return users


@pytest.fixture
def sinks(settings):
    """The warehouse and a Redis sink of this test's own (the shared one holds other tests')."""
    settings.CONSENT_SINKS = {
        "warehouse": {
            "BACKEND": "consent.sinks.warehouse.WarehouseSink",
            "OPTIONS": {"database": "warehouse"},
        },
        "redis": {
            "BACKEND": "consent.sinks.redis.RedisSink",
            "OPTIONS": {"url": django_settings.REDIS_URL, "prefix": f"test:{uuid.uuid4()}:"},
        },
    }
    found = configured_sinks()
    yield found
    redis_sink = found["redis"]
    for subjects in redis_sink.subjects():
        redis_sink.repair([], ceiling={}, drop=subjects)


@pytest.mark.parametrize("batch", [2, 5000])
def test_reconcile_finds_and_repairs_the_same_drift_a_batch_at_a_time(
    policy, sinks, monkeypatch, batch
):
    monkeypatch.setattr("consent.sinks.base.SUBJECTS_A_BATCH", batch)
    monkeypatch.setattr("consent.sinks.redis.SUBJECTS_A_BATCH", batch)
    read = []  # the subjects of each read of a sink

    def counted(entries):
        def read_and_count(sink, subjects):
            read.append(subjects)
            return entries(sink, subjects)

        return read_and_count

    for sink_class in (WarehouseSink, RedisSink):
        monkeypatch.setattr(sink_class, "entries", counted(sink_class.entries))
    users = allowing_a_minute_ago(7)
    outbox_drain("warehouse")
    outbox_drain("redis")
    redis_sink = sinks["redis"]
    stale, missing_record, missing_key, orphaned = (u.subject_id for u in users[:4])
    EligibilityRecord.objects.filter(subject_id=stale).update(allowed=False)
    EligibilityRecord.objects.filter(subject_id=missing_record).delete()  # intervals stay
    redis_sink.client.delete(redis_sink.key(missing_key))
    stray = EligibilityRecord.objects.get(subject_id=orphaned)
    for nobody in NOBODY[:2]:  # records, one with intervals too, for subjects nobody has
        stray.pk = nobody
        stray.save(force_insert=True)
    intervals = EligibilityInterval.objects.using("warehouse")
    (kept,) = intervals.filter(subject_id=orphaned)
    for nobody in NOBODY[1:]:  # intervals, one with no record
        intervals.create(
            subject_id=nobody,
            allowed_from=kept.allowed_from,
            policy_version=kept.policy_version,
            retention_days=kept.retention_days,
        )
    redis_sink.client.hset(redis_sink.key(NOBODY[0]), mapping={"version": 1, "allowed": 1})

    warehouse, redis_drift = reconcile()
    assert (warehouse.missing, warehouse.stale, warehouse.extra) == (
        [missing_record],
        [stale],
        list(NOBODY),
    )
    assert (redis_drift.missing, redis_drift.stale, redis_drift.extra) == (
        [missing_key],
        [],
        [NOBODY[0]],
    )
    assert max(len(subjects) for subjects in read) == min(batch, 7)
    assert sorted(
        Reconciliation.objects.values_list("sink", "missing", "stale", "extra", "repaired")
    ) == [("redis", 1, 0, 1, False), ("warehouse", 1, 1, 3, False)]

    assert all(drift.repaired for drift in reconcile(repair=True))
    assert all(drift.clean for drift in reconcile())
    assert EligibilityRecord.objects.get(subject_id=stale).allowed
    assert EligibilityRecord.objects.filter(subject_id=missing_record).exists()
    assert not intervals.filter(subject_id__in=NOBODY).exists()
    assert redis_sink.client.hget(redis_sink.key(missing_key), "allowed") == b"1"
    assert not redis_sink.client.exists(redis_sink.key(NOBODY[0]))


def test_drift_in_any_field_and_a_record_that_does_not_read_are_found_and_repaired(policy, sinks):
    users = allowing_a_minute_ago(4)
    outbox_drain("warehouse")
    outbox_drain("redis")
    redis_sink = sinks["redis"]
    longer, other_plan, unreadable, fine = (u.subject_id for u in users)
    EligibilityRecord.objects.filter(subject_id=longer).update(retention_days=36500)
    EligibilityRecord.objects.filter(subject_id=other_plan).update(plan="max", policy_version=7)
    redis_sink.client.hset(redis_sink.key(longer), "retention_days", 36500)
    redis_sink.client.hset(redis_sink.key(other_plan), "changed_at", "yesterday")
    redis_sink.client.hset(redis_sink.key(unreadable), "version", "v2")

    warehouse, redis_drift = reconcile(repair=True)

    assert sorted(warehouse.stale) == sorted([longer, other_plan])
    assert sorted(redis_drift.stale) == sorted([longer, other_plan])
    assert redis_drift.missing == [unreadable]  # no version that reads: as good as none
    assert all(drift.clean for drift in reconcile())
    assert redis_sink.client.hget(redis_sink.key(unreadable), "version") == b"1"
    assert EligibilityRecord.objects.get(subject_id=longer).retention_days == 1825
    assert fine not in warehouse.stale + redis_drift.stale


@pytest.mark.parametrize("version", ["not a number", "1e9", " 7", "0x10"])
def test_a_record_written_by_hand_does_not_stop_changes_reaching_redis(policy, sinks, version):
    user = UserFactory()
    redis_sink = sinks["redis"]
    redis_sink.client.hset(redis_sink.key(user.subject_id), "version", version)

    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("redis")

    assert Delivery.objects.get(sink="redis").state == Delivery.State.APPLIED
    assert redis_sink.client.hget(redis_sink.key(user.subject_id), "allowed") == b"1"


def test_a_sweep_in_parts_finds_and_repairs_what_a_whole_run_does(policy, sinks, monkeypatch):
    monkeypatch.setattr("consent.sinks.base.SUBJECTS_A_BATCH", 2)
    users = allowing_a_minute_ago(4)
    outbox_drain("warehouse")
    first, second, third, last = sorted(user.subject_id for user in users)
    EligibilityRecord.objects.filter(subject_id__in=[first, last]).update(allowed=False)
    stray = EligibilityRecord.objects.get(subject_id=third)
    stray.pk = NOBODY[0]
    stray.save(force_insert=True)

    # A budget of nothing: each part does one batch of two subjects, and the next goes on; the
    # part that finds no subject left looks for those the audit log never had. A whole run in
    # between, which repairs nothing, does not move the sweep.
    parts = [reconcile(sink="warehouse", repair=True, budget=0)[0]]
    (whole,) = reconcile(sink="warehouse")
    parts += [reconcile(sink="warehouse", repair=True, budget=0)[0] for _ in range(2)]

    assert (whole.stale, whole.extra, whole.part) == ([last], [NOBODY[0]], False)
    assert [part.stopped_after for part in parts] == [second, last, None]
    assert [(part.stale, part.extra, part.repaired) for part in parts] == [
        ([first], [], True),
        ([last], [], True),
        ([], [NOBODY[0]], True),
    ]
    assert str(parts[-1]).endswith("(repaired; the last part of a sweep)")
    rows = Reconciliation.objects.filter(part=True).order_by("pk")
    assert list(rows.values_list("began_after", "stopped_after")) == [
        (None, second),
        (second, last),
        (last, None),
    ]
    assert reconcile(sink="warehouse")[0].clean
    (again,) = reconcile(sink="warehouse", budget=0)  # after the last part, a new sweep
    assert again.stopped_after == second


def test_a_sink_read_through_its_deliveries_is_swept_in_parts_too(policy, settings, monkeypatch):
    settings.CONSENT_SINKS = {
        "webhook": {
            "BACKEND": "consent.sinks.webhook.WebhookSink",
            "OPTIONS": {"url": "http://127.0.0.1:9/", "secrets": [SECRET]},
        }
    }
    monkeypatch.setattr("consent.sinks.base.SUBJECTS_A_BATCH", 2)
    users = allowing_a_minute_ago(3)
    first, second, last = sorted(user.subject_id for user in users)
    Delivery.objects.filter(subject_id=second).update(state=Delivery.State.APPLIED)
    Delivery.objects.filter(subject_id=first).update(state=Delivery.State.DEAD)
    Delivery.objects.filter(subject_id=last).delete()

    parts = [reconcile(budget=0)[0] for _ in range(3)]

    assert [(part.stopped_after, part.stale, part.missing) for part in parts] == [
        (second, [first], []),
        (last, [], [last]),
        (None, [], []),
    ]


def redis_down(url: str) -> None:
    """Stop a Redis server of the test's own, as a crash would (it keeps nothing on disk)."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)


@pytest.fixture
def redis_then_warehouse(settings, private_redis):
    """A Redis sink on a server of the test's own, compared first, and the warehouse after it."""
    settings.CONSENT_SINKS = {
        "redis": {"BACKEND": "consent.sinks.redis.RedisSink", "OPTIONS": {"url": private_redis}},
        "warehouse": {
            "BACKEND": "consent.sinks.warehouse.WarehouseSink",
            "OPTIONS": {"database": "warehouse"},
        },
    }
    return private_redis


def test_a_sink_that_does_not_answer_is_recorded_as_failed_and_the_next_is_compared(
    policy, redis_then_warehouse, caplog
):
    users = allowing_a_minute_ago(3)
    outbox_drain("redis")
    outbox_drain("warehouse")
    stale = users[0].subject_id
    EligibilityRecord.objects.filter(subject_id=stale).update(allowed=False)
    redis_down(redis_then_warehouse)

    redis_drift, warehouse = reconcile(repair=True, budget=60)

    assert redis_drift.error.startswith("ConnectionError: ")
    assert "failed: ConnectionError" in str(redis_drift)
    assert not (redis_drift.clean or redis_drift.repaired)
    assert (warehouse.stale, warehouse.repaired, warehouse.error) == ([stale], True, "")
    assert EligibilityRecord.objects.get(subject_id=stale).allowed
    assert "Reconciling redis failed" in caplog.text
    rows = dict(Reconciliation.objects.values_list("sink", "error"))
    assert rows["redis"] == redis_drift.error and rows["warehouse"] == ""

    # The hourly task and the command fail too, once every sink has had its turn.
    with pytest.raises(ReconcileFailed, match=r"redis: .*\(failed: ConnectionError: .*\.\)$"):
        reconcile_sinks()
    with pytest.raises(CommandError, match="Could not compare every sink: redis: "):
        call_command("reconcile", stdout=io.StringIO())
    assert Reconciliation.objects.filter(sink="warehouse", error="").count() == 3


def test_a_failed_part_leaves_the_sweep_where_the_last_part_stopped(
    policy, redis_then_warehouse, redis_servers, settings, monkeypatch
):
    monkeypatch.setattr("consent.sinks.base.SUBJECTS_A_BATCH", 2)
    settings.CONSENT_SINKS = {"redis": settings.CONSENT_SINKS["redis"]}
    users = allowing_a_minute_ago(4)
    outbox_drain("redis")
    second = sorted(user.subject_id for user in users)[1]

    (first_part,) = reconcile(repair=True, budget=0)
    redis_down(redis_then_warehouse)
    (failed,) = reconcile(repair=True, budget=0)
    settings.CONSENT_SINKS = {  # back, on another server, empty: a restart without its data
        "redis": {"BACKEND": "consent.sinks.redis.RedisSink", "OPTIONS": {"url": redis_servers()}}
    }
    (after_it,) = reconcile(repair=True, budget=0)

    assert (first_part.stopped_after, failed.error != "") == (second, True)
    assert list(
        Reconciliation.objects.order_by("pk").values_list("began_after", "stopped_after")
    ) == [(None, second), (second, None), (second, after_it.stopped_after)]
    assert after_it.missing == sorted(user.subject_id for user in users)[2:]


@pytest.mark.parametrize("suffix", ["not-a-subject", uuid.UUID(int=7).hex, f"urn:uuid:{NOBODY[0]}"])
def test_a_key_of_someone_else_under_the_prefix_is_left_alone(policy, sinks, caplog, suffix):
    redis_sink = sinks["redis"]
    theirs = f"{redis_sink.prefix}{suffix}"  # an id written otherwise is not a key of ours
    redis_sink.client.set(theirs, "theirs")

    (drift,) = reconcile(sink="redis", repair=True)

    assert drift.clean
    assert redis_sink.client.get(theirs) == b"theirs"
    assert suffix in caplog.text and "is not a subject's" in caplog.text
    redis_sink.client.delete(theirs)


def test_a_comparison_that_fails_midway_counts_what_it_found_and_repaired(
    policy, redis_then_warehouse, settings, monkeypatch
):
    monkeypatch.setattr("consent.sinks.base.SUBJECTS_A_BATCH", 2)
    settings.CONSENT_SINKS = {"redis": settings.CONSENT_SINKS["redis"]}
    users = allowing_a_minute_ago(4)
    Delivery.objects.update(state=Delivery.State.APPLIED)  # said so, but Redis holds none
    entries, reads = RedisSink.entries, []

    def down_before_the_second_read(sink, subjects):
        reads.append(subjects)
        if len(reads) == 2:
            redis_down(redis_then_warehouse)
        return entries(sink, subjects)

    monkeypatch.setattr(RedisSink, "entries", down_before_the_second_read)
    (drift,) = reconcile(repair=True)

    first_batch = sorted(user.subject_id for user in users)[:2]
    assert (drift.missing, drift.repaired) == (first_batch, True)
    assert str(drift).endswith("; what it found is repaired)")
    row = Reconciliation.objects.get()
    assert (row.missing, row.repaired, row.error.startswith("ConnectionError")) == (2, True, True)
    assert reads == [first_batch, sorted(user.subject_id for user in users)[2:]]


def test_a_comparison_cut_short_by_the_time_limit_is_recorded_and_stops_the_run(
    policy, redis_then_warehouse, monkeypatch
):
    services.consent_change(user=UserFactory(), allowed=True, channel=Channel.SETTINGS)

    def out_of_time(sink, subjects):  # as Celery raises it when the soft time limit passes
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(RedisSink, "entries", out_of_time)
    with pytest.raises(SoftTimeLimitExceeded):
        reconcile(repair=True, budget=60)

    # Redis is recorded; the warehouse, after it, was not begun.
    assert list(Reconciliation.objects.values_list("sink", "error")) == [
        ("redis", "cut short by the task's time limit")
    ]


def test_recovery_says_so_when_a_store_stops_answering_before_its_repair(
    policy, redis_then_warehouse, monkeypatch
):
    user = UserFactory()
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("redis")
    outbox_drain("warehouse")
    # As after a restore: a store holds a change the database lost.
    EligibilityRecord.objects.filter(subject_id=user.subject_id).update(version=2)
    real_reconcile = recovery.reconcile

    def down_then_reconcile(**options):
        redis_down(redis_then_warehouse)
        return real_reconcile(**options)

    monkeypatch.setattr(recovery, "reconcile", down_then_reconcile)
    with pytest.raises(CommandError, match="a sink could not be repaired: redis: "):
        call_command("recover_after_restore", stdout=io.StringIO())
    assert set(Reconciliation.objects.values_list("origin", flat=True)) == {"restore"}


def test_the_command_and_the_log_name_the_subjects_that_drifted(
    policy, sinks, settings, monkeypatch, caplog
):
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    monkeypatch.setattr("consent.management.commands.reconcile.SHOWN", 2)
    monkeypatch.setattr("consent.reconcile.LOGGED", 2)
    users = allowing_a_minute_ago(4)
    outbox_drain("warehouse")
    missing = sorted(user.subject_id for user in users[:3])
    EligibilityRecord.objects.filter(subject_id__in=missing).delete()
    stale = users[3].subject_id
    EligibilityRecord.objects.filter(subject_id=stale).update(allowed=False)

    out = io.StringIO()
    with pytest.raises(CommandError, match="Drift found"):
        call_command("reconcile", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[1:] == [
        f"  missing: {missing[0]}, {missing[1]} and 1 more",
        f"  stale: {stale}",
    ]
    (logged,) = [r for r in caplog.records if r.name == "consent.reconcile"]
    assert logged.subjects == {"missing": [str(s) for s in missing[:2]], "stale": [str(stale)]}
    assert logged.getMessage().endswith(f"; missing: {missing[0]}, {missing[1]}; stale: {stale}")
    every = io.StringIO()
    with pytest.raises(CommandError, match="Drift found"):
        call_command("reconcile", verbosity=2, stdout=every)
    assert f"  missing: {', '.join(map(str, missing))}" in every.getvalue().splitlines()


@pytest.mark.parametrize(
    ("version", "said"),
    [(5, "chosen under terms (version 5) this database lost"), (None, "allowed, held by")],
)
def test_a_choice_under_terms_the_restore_lost_is_told_alike_before_and_after(
    policy, settings, version, said
):
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    user = UserFactory()
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("warehouse")
    # What the store holds after a restore lost the terms (version 5, or none named) and the
    # choice made under them.
    EligibilityRecord.objects.filter(subject_id=user.subject_id).update(
        version=2, policy_version=version
    )

    dry = io.StringIO()
    call_command("recover_after_restore", "--dry-run", stdout=dry)
    call_command("recover_after_restore", stdout=io.StringIO())

    restored = ConsentEvent.objects.get(subject_id=user.subject_id, kind="restored")
    assert restored.after == "undecided"  # fail closed: the terms it was chosen under are gone
    assert restored.reason in dry.getvalue()  # the dry run said what the run did
    assert said in restored.reason and "not allowed until the user chooses again" in restored.reason
    assert "re-established" not in restored.reason
    assert ("the database lacks, and no copy outside it holds: 5." in dry.getvalue()) == bool(
        version
    )


def test_recovery_on_a_database_that_was_not_restored_changes_nothing(policy, settings):
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    services.consent_change(user=UserFactory(), allowed=True, channel=Channel.SETTINGS)
    outbox_drain("warehouse")
    out = io.StringIO()

    call_command("recover_after_restore", stdout=out)

    assert "Nothing to recover" in out.getvalue()
    assert not Reconciliation.objects.exists()


def test_terms_published_after_the_backup_come_back_from_their_copies(policy, settings, tmp_path):
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path)
    user = UserFactory()
    services.consent_change(
        user=user,
        allowed=True,
        channel=Channel.SETTINGS,
        now=timezone.now() - timedelta(hours=1),
    )
    outbox_drain("warehouse")
    # After the backup: version 2 published, the user chose under it, the copies were made;
    # then the database was restored, and has none of it. Made here in the other order: the
    # copies of a version 2 this database never held, and the store's record of the choice.
    later = ConsentPolicy(
        version=2,
        title="Updates, again",
        text="May we train on your chats?\n\nStill optional.",
        content_hash=policies.policy_content_hash(
            title="Updates, again", text="May we train on your chats?\n\nStill optional."
        ),
        effective_at=policy.effective_at,
        decision_deadline=policy.decision_deadline + timedelta(days=5),
        defer_for=timedelta(hours=3),
        published_at=timezone.now(),
    )
    note = audit.signer().sign(audit._terms(later).text())
    audit._copy_to_warehouse("terms", 2, note)
    (tmp_path / "00000000000000000002-copy.terms").write_text(note)
    # And the deadline of version 1, extended after the backup.
    extended = ConsentPolicy.objects.get(pk=policy.pk)
    extended.decision_deadline += timedelta(days=7)
    audit._copy_to_warehouse("terms", 1, audit.signer().sign(audit._terms(extended).text()))
    chosen_at = timezone.now() - timedelta(minutes=5)  # under version 2, after the backup
    EligibilityRecord.objects.filter(subject_id=user.subject_id).update(
        version=2, policy_version=2, changed_at=chosen_at
    )

    dry = io.StringIO()
    call_command("recover_after_restore", "--dry-run", stdout=dry)
    assert not ConsentPolicy.objects.filter(version=2).exists()
    call_command("recover_after_restore", stdout=io.StringIO())

    back = ConsentPolicy.objects.get(version=2)
    assert (back.title, back.text, back.defer_for) == (later.title, later.text, later.defer_for)
    assert back.content_hash == later.content_hash and back.published_at == later.published_at
    assert back.changes.get().reason.startswith("Published again from its signed copy")
    assert ConsentPolicy.objects.get(version=1).decision_deadline == extended.decision_deadline
    assert "Terms version 2 (published " in dry.getvalue()
    assert "no copy outside it holds" not in dry.getvalue()
    # The choice made under them is re-established, not left undecided.
    restored = ConsentEvent.objects.filter(subject_id=user.subject_id, kind="restored").last()
    assert restored is not None and restored.created_at == chosen_at
    assert (restored.after, restored.policy_id) == ("allowed", back.pk)
    assert "re-established" in restored.reason and restored.reason in dry.getvalue()


def test_a_copy_of_terms_that_does_not_verify_is_not_taken_back(policy, settings, tmp_path):
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path)
    forged = ConsentPolicy.objects.get(pk=policy.pk)
    forged.version, forged.decision_deadline = 2, forged.decision_deadline + timedelta(days=1)
    stranger = Signer.generate(settings.AUDIT_LOG_ORIGIN)
    audit._copy_to_warehouse("terms", 2, stranger.sign(audit._terms(forged).text()))

    out = io.StringIO()
    call_command("recover_after_restore", stdout=out)

    assert not ConsentPolicy.objects.filter(version=2).exists()
    assert "Copies of terms: a copy of terms does not verify: Signed by" in out.getvalue()


def test_every_published_policy_is_copied_outside_the_database(policy, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path)
    services.consent_change(user=UserFactory(), allowed=True, channel=Channel.SETTINGS)
    audit.audit_checkpoint(now=timezone.now() + timedelta(minutes=1))
    assert audit.copies_missing() == []

    copies, _doubts, problems = audit.terms_copies()
    assert problems == [] and list(copies) == [1]
    assert copies[1].text == policy.text and copies[1].decision_deadline == policy.decision_deadline
    assert len(list(tmp_path.glob("*.terms"))) == 1
    # An extension changes the copy; the checkpoint metric says so until the next minute's run.
    admin = UserFactory(is_staff=True)
    policies.policy_deadline_extend(
        policy=policy, decision_deadline=policy.decision_deadline + timedelta(days=3),
        actor=admin, reason="More time",
    )  # fmt: skip
    assert audit.copies_missing() == ["directory", "warehouse"]
    audit.audit_checkpoint()
    assert audit.copies_missing() == []
    assert audit.terms_copies()[0][1].decision_deadline == policy.decision_deadline


def test_terms_as_long_as_real_ones_are_copied_to_the_warehouse(policy, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path)
    text = "\n\n".join(f"Clause {n}. " + "We may train on your chats. " * 40 for n in range(40))
    now = timezone.now()
    policies.policy_publish(
        title="The long terms",
        text=text,
        effective_at=now,
        decision_deadline=now + timedelta(days=30),
        now=now,
    )

    audit.audit_checkpoint()  # no new event: the copies are made all the same

    assert len(text) > 40_000 and audit.copies_missing() == []
    assert TermsCopy.objects.filter(version=2).count() == 1
    assert audit.terms_copies()[0][2].text == ConsentPolicy.objects.get(version=2).text


def test_a_choice_under_terms_held_with_another_text_than_their_copy_is_not_established(
    policy, settings, tmp_path
):
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path)
    user = UserFactory()
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("warehouse")
    # Version 1 as it was first published, copied outside; the database holds another text
    # under its number (published again after a restore, say).
    first = ConsentPolicy.objects.get(pk=policy.pk)
    first.text, first.content_hash = (
        "Another text.",
        policies.policy_content_hash(title=first.title, text="Another text."),
    )
    audit._copy_to_warehouse("terms", 1, audit.signer().sign(audit._terms(first).text()))
    EligibilityRecord.objects.filter(subject_id=user.subject_id).update(version=2)

    out = io.StringIO()
    call_command("recover_after_restore", stdout=out)

    assert "held here with another text than their copy outside the database: 1." in out.getvalue()
    restored = ConsentEvent.objects.get(subject_id=user.subject_id, kind="restored")
    assert restored.after == "undecided"  # not re-established under a text never shown


def test_a_copy_of_terms_that_cannot_be_read_keeps_no_other_from_being_read(
    policy, settings, tmp_path
):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path)
    audit.audit_checkpoint()
    (tmp_path / "00000000000000000009-x.terms").write_bytes(b"\xff\xfe not text")
    TermsCopy.objects.all().delete()  # the directory's copy alone

    copies, _doubts, problems = audit.terms_copies()

    assert list(copies) == [1]
    assert problems == [
        "the directory's copy 00000000000000000009-x.terms could not be read: "
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
    ]
    settings.AUDIT_VERIFY_KEYS = ["garbage"]
    assert audit.terms_copies() == ({}, set(), [
        "nothing was verified: AUDIT_VERIFY_KEYS: Not a verifier key: 'garbage'"
    ])  # fmt: skip


def test_two_copies_of_one_version_with_other_texts_and_deadlines(policy, settings, tmp_path):
    settings.CONSENT_SINKS = {"warehouse": settings.CONSENT_SINKS["warehouse"]}
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path)
    user = UserFactory()
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("warehouse")
    # The version 1 the user chose under (before the backup), copied outside; the database now
    # holds another text under number 1 (published again after the restore), copied since, with
    # its own, later deadline, as the minute's checkpoint run does.
    first = ConsentPolicy.objects.get(pk=policy.pk)
    first.text = "The text the user read."
    first.content_hash = policies.policy_content_hash(title=first.title, text=first.text)
    first.decision_deadline = policy.decision_deadline - timedelta(days=10)
    audit._copy_to_warehouse("terms", 1, audit.signer().sign(audit._terms(first).text()))
    audit.audit_checkpoint()  # copies the held version 1 too
    EligibilityRecord.objects.filter(subject_id=user.subject_id).update(version=2)

    conflicting = recovery_plan().terms_conflicting
    call_command("recover_after_restore", stdout=io.StringIO())
    restored = ConsentEvent.objects.get(subject_id=user.subject_id, kind="restored")
    # Not re-established under a text never shown.
    assert (restored.after, conflicting) == ("undecided", [1])
