"""Edges of the eligibility rule that the property test's generators do not reach: moments
finer than a microsecond, changes superseded or dead in the outbox, a change still committing
when a run registers, and restores that lost changes. Each test states what the rule (SPEC §4
"Eligibility", issue 17) answers."""

import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import api_token_create
from consent import policies, services
from consent.audit import audit_checkpoint
from consent.eligibility import eligibility
from consent.exceptions import ConsentError
from consent.models import (
    ConsentEvent,
    ConsentPolicy,
    Delivery,
    EligibilityInterval,
    EligibilityRecord,
    TrainingConsent,
)
from consent.outbox import outbox_drain
from consent.runs import run_eligibility, run_register, snapshot_eligibility
from consent.services import Channel
from consent.sinks.warehouse import WarehouseSink
from consent.snapshots import snapshot_write
from tests.consent.test_eligibility_rule import brute_force, duckdb_answers
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])
ELIGIBILITY = "/api/v1/eligibility"
WAREHOUSE_ONLY = {
    "warehouse": {
        "BACKEND": "consent.sinks.warehouse.WarehouseSink",
        "OPTIONS": {"database": "warehouse"},
    }
}


@pytest.fixture(autouse=True)
def warehouse_only(settings):
    """The eligibility store as the only sink: nothing of these tests reaches a shared Redis."""
    settings.CONSENT_SINKS = WAREHOUSE_ONLY


@pytest.fixture
def secret(db) -> str:
    return api_token_create(name="edges", scopes=["eligibility", "runs"])[1]


def ask(client, secret, as_of: str, pairs: list[list[str]]) -> list[bool]:
    response = client.post(
        ELIGIBILITY,
        json.dumps({"as_of": as_of, "pairs": pairs}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.content
    return response.json()["eligible"]


def publish(*, now: datetime, retention: int = 1825, asks: bool = True, effective_in=timedelta(0)):
    return policies.policy_publish(
        title=f"Terms of {now:%Y-%m-%d %H:%M:%S.%f}",
        text="May we train on your chats and coding sessions?",
        effective_at=now + effective_in,
        decision_deadline=now + effective_in + timedelta(days=30),
        retention_days_allowed=retention,
        requires_new_choice=asks,
        now=now,
    )


# 1. A moment written with more than six digits of a second: cut to the microsecond, it would
#    move earlier, so that data a fraction after as_of, or as_of a fraction past a retention,
#    would be answered eligible. It is refused, unless those digits are 0.


def ask_status(client, secret, as_of: str, pairs: list[list[str]]):
    return client.post(
        ELIGIBILITY,
        json.dumps({"as_of": as_of, "pairs": pairs}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )


@pytest.mark.parametrize(
    ("as_of", "at"),
    [
        ("2025-03-02T12:00:00.000000Z", "2025-03-02T12:00:00.0000005Z"),  # t half a µs after R
        ("2025-03-03T00:00:00.0000007Z", "2025-03-02T00:00:00Z"),  # R - t: a day and 0.7 µs
    ],
    ids=["after-as-of", "past-retention"],
)
def test_a_moment_finer_than_a_microsecond_is_refused_not_cut(client, secret, as_of, at):
    start = datetime(2025, 3, 1, tzinfo=UTC)
    publish(now=start, retention=1)
    user = UserFactory(plan=User.Plan.PRO)
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS, now=start)
    outbox_drain("warehouse")

    response = ask_status(client, secret, as_of, [[str(user.subject_id), at]])

    assert response.status_code == 400
    assert "at most 6 digits of a second" in response.content.decode()
    # Digits past the microsecond that are 0 say nothing finer, and are taken.
    zeros = "2025-03-02T12:00:00.0000000Z"
    assert ask(client, secret, zeros, [[str(user.subject_id), "2025-03-02T00:00:00.1000000Z"]]) == [
        True
    ]


def test_the_snapshot_command_refuses_a_moment_finer_than_a_microsecond(tmp_path):
    with pytest.raises(CommandError, match="at most 6 digits of a second"):
        call_command(
            "eligibility_snapshot", "--as-of", "2025-03-02T12:00:00.0000001Z", "--out", tmp_path
        )


# 2. A change made by as_of that the history store never applied, yet not withheld: superseded
#    in the outbox by a newer change made after as_of, which the store has not applied yet.


def a_failing_drain(monkeypatch) -> None:
    """Drain the warehouse once while it fails (down for a while): the batch is retried later."""
    real = WarehouseSink.apply

    def down(self, changes):
        raise OSError("the warehouse does not answer")

    monkeypatch.setattr(WarehouseSink, "apply", down)
    outbox_drain("warehouse")
    monkeypatch.setattr(WarehouseSink, "apply", real)


def test_a_withdrawal_superseded_in_the_outbox_by_a_later_change_not_yet_applied(
    monkeypatch, tmp_path
):
    now = timezone.now()
    t0 = now - timedelta(hours=4)
    publish(now=t0 - timedelta(days=1))
    user = UserFactory(plan=User.Plan.PRO)
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS, now=t0)
    outbox_drain("warehouse")  # the store holds: allowed since t0
    declined_at = now - timedelta(hours=2)
    services.consent_change(user=user, allowed=False, channel=Channel.SETTINGS, now=declined_at)
    services.user_change_plan(
        user=user, plan=User.Plan.MAX, channel=Channel.SYSTEM, now=now - timedelta(hours=1)
    )
    a_failing_drain(monkeypatch)  # the decline is superseded, the plan change waits for a retry
    states = dict(Delivery.objects.values_list("event_number", "state"))
    assert states == {1: "applied", 2: "superseded", 3: "pending"}

    # A run, or an audit, selecting as of half an hour after the decline: the user declined by
    # then, so no data of theirs is eligible.
    as_of = declined_at + timedelta(minutes=30)
    at = declined_at + timedelta(minutes=10)
    snapshot_write(as_of=as_of, out=tmp_path, wait=0)
    answers = {
        "api": eligibility([(user.subject_id, at)], as_of=as_of),
        "snapshot join": duckdb_answers(tmp_path, [(user.subject_id, at)]),
    }
    assert answers == {"api": [False], "snapshot join": [False]}


# 3. A change of an older version that died in the outbox withholds its subject for good, even
#    once a newer change, carrying the whole history, has reached the store.


def test_a_dead_older_delivery_does_not_withhold_a_subject_whose_newer_change_was_applied(
    monkeypatch, settings
):
    settings.CONSENT_RETRY_MAX_ATTEMPTS = 1
    now = timezone.now()
    publish(now=now - timedelta(days=1))
    user = UserFactory(plan=User.Plan.PRO)
    services.consent_change(
        user=user, allowed=True, channel=Channel.SETTINGS, now=now - timedelta(hours=2)
    )
    a_failing_drain(monkeypatch)  # out of its budget at once: dead
    services.user_change_plan(
        user=user, plan=User.Plan.MAX, channel=Channel.SYSTEM, now=now - timedelta(hours=1)
    )
    outbox_drain("warehouse")
    assert dict(Delivery.objects.values_list("event_number", "state")) == {1: "dead", 2: "applied"}
    stored = EligibilityInterval.objects.using("warehouse").filter(subject_id=user.subject_id)
    assert stored.count() == 1  # the store holds the whole history, the decision included

    at = now - timedelta(minutes=30)
    assert eligibility([(user.subject_id, at)], as_of=now) == [True]


# 4. A decision whose transaction commits after a run's snapshot was taken must not be dated
#    before the run's as_of: the run's fixed answers would contradict the log for good. A run
#    selects as of a moment whose changes have all been committed.


@pytest.mark.django_db(databases=["default", "warehouse"], transaction=True)
def test_a_decline_still_committing_when_a_run_registers_is_dated_after_its_as_of(
    monkeypatch, settings
):
    settings.AUDIT_CHECKPOINT_SETTLE_SECONDS = 5
    monkeypatch.setattr(services, "drain_soon", lambda *args, **kwargs: None)  # drained by hand
    now = timezone.now()
    publish(now=now - timedelta(days=1))
    user = UserFactory(plan=User.Plan.PRO)
    services.consent_change(
        user=user, allowed=True, channel=Channel.SETTINGS, now=now - timedelta(hours=1)
    )
    outbox_drain("warehouse")

    made, commit = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def decline() -> None:
        try:
            with transaction.atomic():
                services.consent_change(user=user, allowed=False, channel=Channel.SETTINGS)
                made.set()
                commit.wait(30)  # a commit a little slow: the snapshot is taken meanwhile
        except BaseException as error:
            failures.append(error)
            made.set()
        finally:
            connections.close_all()

    worker = threading.Thread(target=decline)
    worker.start()
    assert made.wait(30)
    run, _ = run_register(name="run during a commit")
    commit.set()
    worker.join(30)
    assert not failures, failures
    outbox_drain("warehouse")

    declined_at = TrainingConsent.objects.get(user_id=user.pk).decided_at
    assert declined_at is not None and run.as_of < declined_at  # they allowed at R
    at = run.as_of - timedelta(minutes=1)
    # The run's fixed answer is the rule's, as the audit log tells it afterwards.
    assert run_eligibility(run, [(user.subject_id, at)]) == [True]
    assert eligibility([(user.subject_id, at)], as_of=run.as_of) == [True]
    assert run.as_of <= run.created_at - timedelta(seconds=5)


def test_a_run_as_of_a_moment_whose_changes_may_still_be_committing_is_refused(settings):
    settings.AUDIT_CHECKPOINT_SETTLE_SECONDS = 60
    with pytest.raises(ConsentError, match="at least 60 seconds past"):
        run_register(name="too soon", as_of=timezone.now() - timedelta(seconds=30))
    run, _ = run_register(name="settled", as_of=timezone.now() - timedelta(seconds=61))
    assert run.pk is not None


# 5. After a restore from a backup that lost a withdrawal, the recovered history allows training
#    over the stretch during which the user had withdrawn, for every as_of in it.


def test_a_restore_that_lost_a_withdrawal_does_not_allow_the_time_since_it():
    now = timezone.now()
    publish(now=now - timedelta(days=1))
    user = UserFactory(plan=User.Plan.PRO)
    allowed_at = now - timedelta(hours=3)
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS, now=allowed_at)
    outbox_drain("warehouse")
    # After the backup the user declined (event 2), which the store applied; then the app's
    # database was restored from the backup, which lost event 2. What the store holds:
    declined_at = now - timedelta(hours=2)
    EligibilityRecord.objects.using("warehouse").filter(subject_id=user.subject_id).update(
        version=2, allowed=False, changed_at=declined_at
    )
    EligibilityInterval.objects.using("warehouse").filter(subject_id=user.subject_id).update(
        allowed_until=declined_at
    )
    as_of = declined_at + timedelta(minutes=30)
    at = declined_at + timedelta(minutes=10)
    assert eligibility([(user.subject_id, at)], as_of=as_of) == [False]  # before the recovery

    call_command("recover_after_restore", stdout=io.StringIO())
    outbox_drain("warehouse")

    assert eligibility([(user.subject_id, at)], as_of=as_of) == [False]


def test_a_restore_takes_a_time_before_the_kept_head_for_unknown():
    now = timezone.now()
    publish(now=now - timedelta(days=1))
    user = UserFactory(plan=User.Plan.PRO)
    services.consent_change(
        user=user, allowed=True, channel=Channel.SETTINGS, now=now - timedelta(hours=6)
    )
    head_at = now - timedelta(hours=4)
    services.consent_change(user=user, allowed=False, channel=Channel.SETTINGS, now=head_at)
    outbox_drain("warehouse")
    # The backup keeps event 2 (declined at head_at). After it: allowed (3), declined (4),
    # allowed (5) whose app server's clock ran behind: changed_at before head_at.
    allowed_at, declined_at = now - timedelta(hours=3), now - timedelta(hours=2)
    skewed = head_at - timedelta(minutes=5)
    EligibilityRecord.objects.using("warehouse").filter(subject_id=user.subject_id).update(
        version=5, allowed=True, changed_at=skewed
    )
    EligibilityInterval.objects.using("warehouse").create(
        subject_id=user.subject_id, allowed_from=allowed_at, allowed_until=declined_at,
        policy_version=1, retention_days=1825,
    )  # fmt: skip
    EligibilityInterval.objects.using("warehouse").create(
        subject_id=user.subject_id, allowed_from=skewed, allowed_until=None,
        policy_version=1, retention_days=1825,
    )  # fmt: skip
    at = declined_at + timedelta(minutes=10)
    as_of = declined_at + timedelta(minutes=30)

    call_command("recover_after_restore", stdout=io.StringIO())
    outbox_drain("warehouse")

    restored = list(
        ConsentEvent.objects.filter(subject_id=user.subject_id, kind="restored").order_by("number")
    )
    # Its time, before the kept head, says nothing: nothing allowed from the head on until now.
    assert [(e.number, e.after) for e in restored] == [(6, "undecided"), (7, "allowed")]
    # Declined at declined_at, as the store knew: not eligible as of half an hour later.
    assert eligibility([(user.subject_id, at)], as_of=as_of) == [False]


def test_a_change_written_after_the_restore_does_not_move_when_the_changes_were_lost():
    now = timezone.now()
    publish(now=now - timedelta(days=1))
    user = UserFactory(plan=User.Plan.PRO)
    services.consent_change(
        user=user, allowed=True, channel=Channel.SETTINGS, now=now - timedelta(hours=3)
    )
    outbox_drain("warehouse")
    audit_checkpoint()  # the backup's newest checkpoint
    declined_at = now - timedelta(hours=2)  # lost with the restore; the store holds it
    EligibilityRecord.objects.using("warehouse").filter(subject_id=user.subject_id).update(
        version=2, allowed=False, changed_at=declined_at
    )
    EligibilityInterval.objects.using("warehouse").filter(subject_id=user.subject_id).update(
        allowed_until=declined_at
    )
    # Someone else's change, written after the restore and before the recovery.
    services.consent_change(
        user=UserFactory(plan=User.Plan.PRO), allowed=True, channel=Channel.SETTINGS,
        now=now - timedelta(minutes=10),
    )  # fmt: skip

    call_command("recover_after_restore", stdout=io.StringIO())
    outbox_drain("warehouse")

    at, as_of = declined_at + timedelta(minutes=10), declined_at + timedelta(minutes=30)
    assert eligibility([(user.subject_id, at)], as_of=as_of) == [False]


def test_a_restore_that_lost_a_withdrawal_and_a_new_allow_allows_only_since_the_allow():
    now = timezone.now()
    publish(now=now - timedelta(days=1))
    user = UserFactory(plan=User.Plan.PRO)
    allowed_at = now - timedelta(hours=5)
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS, now=allowed_at)
    outbox_drain("warehouse")
    # The backup, taken just after another user's change, the newest it keeps.
    backup_at = now - timedelta(hours=4)
    services.consent_change(
        user=UserFactory(plan=User.Plan.PRO), allowed=True, channel=Channel.SETTINGS, now=backup_at
    )
    # After the backup: declined (event 2), allowed again (event 3), both applied; then lost.
    declined_at, again_at = now - timedelta(hours=3), now - timedelta(hours=1)
    EligibilityRecord.objects.using("warehouse").filter(subject_id=user.subject_id).update(
        version=3, allowed=True, changed_at=again_at
    )
    EligibilityInterval.objects.using("warehouse").filter(subject_id=user.subject_id).update(
        allowed_until=declined_at
    )
    EligibilityInterval.objects.using("warehouse").create(
        subject_id=user.subject_id, allowed_from=again_at, allowed_until=None,
        policy_version=1, retention_days=1825,
    )  # fmt: skip

    call_command("recover_after_restore", stdout=io.StringIO())
    outbox_drain("warehouse")

    restored = list(
        ConsentEvent.objects.filter(subject_id=user.subject_id, kind="restored").order_by("number")
    )
    # Nothing counts as allowed from the backup on, until the allow known downstream.
    assert [(e.number, e.after) for e in restored] == [(4, "undecided"), (5, "allowed")]
    assert restored[0].created_at == backup_at + timedelta(microseconds=1)
    assert restored[1].created_at == again_at
    cases = {
        # Declined then: never eligible as of then.
        (declined_at + timedelta(minutes=10), declined_at + timedelta(minutes=30)): False,
        # Allowed again since: eligible as of then and now.
        (again_at + timedelta(minutes=10), again_at + timedelta(minutes=30)): True,
        (again_at + timedelta(minutes=10), now): True,
        # Allowed before the backup, and now: eligible.
        (allowed_at + timedelta(minutes=10), now): True,
        # After the backup, before the lost decline: not known, so not eligible (fail closed).
        (backup_at + timedelta(minutes=10), now): False,
    }
    for (at, as_of), expected in cases.items():
        assert eligibility([(user.subject_id, at)], as_of=as_of) == [expected], (at, as_of)


# Edges that hold: hand-made histories with equal timestamps and exact boundaries, answered alike
# by the API, the documented join on a snapshot and the brute force of the property test.


def test_equal_timestamps_and_exact_boundaries_agree_three_ways(tmp_path):
    start = datetime(2025, 1, 1, tzinfo=UTC)
    first = publish(now=start, retention=10)
    a, b, c = (UserFactory(plan=User.Plan.PRO) for _ in range(3))
    t1 = start + timedelta(days=1)
    # a: allow, decline and allow again at one moment; commercial and back at another.
    for allowed in (True, False, True):
        services.consent_change(user=a, allowed=allowed, channel=Channel.SETTINGS, now=t1)
    t2 = t1 + timedelta(hours=5)
    services.user_change_plan(user=a, plan=User.Plan.TEAM, channel=Channel.SYSTEM, now=t2)
    services.user_change_plan(user=a, plan=User.Plan.FREE, channel=Channel.SYSTEM, now=t2)
    t3 = t2 + timedelta(hours=5)
    services.user_change_plan(user=a, plan=User.Plan.TEAM, channel=Channel.SYSTEM, now=t3)
    services.user_change_plan(
        user=a, plan=User.Plan.MAX, channel=Channel.SYSTEM, now=t3 + timedelta(hours=1)
    )
    # b: allow, then new terms asking again come into force at the moment b allows under them.
    services.consent_change(user=b, allowed=True, channel=Channel.SETTINGS, now=t1)
    services.consent_change(user=c, allowed=True, channel=Channel.SETTINGS, now=t1)
    second = publish(now=t2, retention=3, effective_in=timedelta(hours=3))
    in_force = second.in_force_from
    services.consent_change(
        user=b, allowed=True, channel=Channel.POPUP, shown_default=True, now=in_force
    )
    # c: allowed under the first terms (above), "Not now" to the second, then deleted.
    services.consent_defer(user=c, now=t2 + timedelta(hours=1))
    services.account_delete(user=c, channel=Channel.SYSTEM, now=in_force + timedelta(days=1))
    outbox_drain("warehouse")

    terms = list(ConsentPolicy.objects.filter(published_at__isnull=False))
    subjects = [a.subject_id, b.subject_id, c.subject_id]
    events = {
        s: list(
            ConsentEvent.objects.filter(subject_id=s).select_related("policy").order_by("number")
        )
        for s in subjects
    }
    marks = sorted({e.created_at for es in events.values() for e in es} | {in_force})
    for as_of in (
        t3 + timedelta(minutes=30),
        in_force + timedelta(hours=12),
        t1 + timedelta(days=10),
        in_force + timedelta(days=3),
    ):
        edges = [as_of - timedelta(days=d) for d in (first.retention_days_allowed, 3)]
        moments = sorted(
            {
                m + d
                for m in marks + edges + [as_of]
                for d in (timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1))
            }
        )
        pairs = [(s, m) for s in subjects for m in moments]
        expected = [brute_force(events[s], terms, m, as_of) for s, m in pairs]
        out = tmp_path / f"{as_of:%Y%m%d%H%M%S}"
        snapshot_write(as_of=as_of, out=out, wait=0)
        files = sorted(out.glob("*.parquet"))
        assert eligibility(pairs, as_of=as_of) == expected
        assert duckdb_answers(out, pairs) == expected
        assert snapshot_eligibility(files, pairs, as_of=as_of) == expected
        assert any(expected)
