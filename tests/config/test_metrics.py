"""/metrics: who may read it, and that each figure says what happened."""

import ipaddress
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from consent import audit, services
from consent.models import (
    AuditCheckpoint,
    AuditVerification,
    CheckpointCopy,
    Delivery,
    EligibilityRecord,
    Reconciliation,
)
from consent.outbox import outbox_drain
from consent.reconcile import reconcile
from consent.services import Channel
from consent.sinks.warehouse import WarehouseSink
from tests.conftest import free_port
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])
State = Delivery.State
Verdict = AuditVerification.Verdict


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(figures, name: str, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_scraper_needs_an_allowed_network_or_the_token(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    outside = {"REMOTE_ADDR": "203.0.113.9"}

    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert client.get("/metrics", **outside).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **outside).status_code == 403
    with_token = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", **outside)
    assert with_token.status_code == 200
    assert with_token["Cache-Control"].startswith("max-age=0")


def test_without_a_token_only_the_allowed_networks_get_in(client, settings):
    settings.METRICS_TOKEN = ""
    outside = {"REMOTE_ADDR": "203.0.113.9"}

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", **outside).status_code == 403
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("203.0.113.0/24")]
    assert client.get("/metrics", **outside).status_code == 200


def test_each_sinks_backlog_is_read_from_the_outbox(client, policy, settings):
    settings.CONSENT_SINKS = {"warehouse": {}, "webhook": {}}
    users = UserFactory.create_batch(3)
    for user in users:
        services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    first, second, third = (Delivery.objects.filter(sink="webhook", subject_id=u.subject_id)
                            for u in users)  # fmt: skip
    first.update(attempts=3, created_at=an_hour_ago)
    second.update(state=State.DEAD, attempts=12)
    Delivery.objects.filter(sink="warehouse").update(state=State.APPLIED)

    figures = scrape(client)

    assert value(figures, "consent_outbox_pending", sink="webhook") == 2
    assert value(figures, "consent_outbox_failing", sink="webhook") == 1
    assert value(figures, "consent_outbox_dead", sink="webhook") == 1
    assert 3590 < value(figures, "consent_outbox_oldest_pending_age_seconds", sink="webhook") < 3700
    assert value(figures, "consent_outbox_pending", sink="warehouse") == 0
    assert value(figures, "consent_outbox_oldest_pending_age_seconds", sink="warehouse") == 0
    assert value(figures, "consent_database_up") == 1
    assert third.get().state == State.PENDING


def test_decisions_are_counted_by_channel_and_value_once_committed(
    client, policy, consumer, django_capture_on_commit_callbacks
):
    def decisions(figures, value_):
        return value(figures, "consent_decisions_total", channel="settings", value=value_)

    def change_then_roll_back():
        with transaction.atomic():
            services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
            raise RuntimeError("rolled back")

    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            change_then_roll_back()
        services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
        services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
        services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)  # no-op
    after = scrape(client)

    assert decisions(after, "allowed") - decisions(before, "allowed") == 1
    assert decisions(after, "declined") - decisions(before, "declined") == 1


def test_pop_ups_served_and_the_latency_of_each_view_are_counted(client, policy, consumer):
    client.force_login(consumer)
    count = "consent_request_duration_seconds_count"
    before = scrape(client)

    assert "consent-dialog" in client.get("/").content.decode()
    client.get("/settings/privacy/")
    client.get("/settings/privacy/")
    after = scrape(client)

    assert (
        value(after, "consent_popups_served_total") - value(before, "consent_popups_served_total")
        == 1
    )
    assert (
        value(after, count, view="home", method="GET")
        - value(before, count, view="home", method="GET")
        == 1
    )
    assert (
        value(after, count, view="privacy_settings", method="GET")
        - value(before, count, view="privacy_settings", method="GET")
        == 2
    )


def test_made_up_methods_are_counted_under_one_label(client):
    def others(figures) -> float:
        return sum(
            figure
            for (name, labels), figure in figures.items()
            if name == "consent_request_duration_seconds_count" and ("method", "other") in labels
        )

    before = scrape(client)
    for n in range(3):
        client.generic(f"M{n}X", "/api/v1/eligibility")
    after = scrape(client)

    assert not [labels for (_, labels) in after if ("method", "M0X") in labels]
    assert others(after) - others(before) == 3


def test_the_age_of_the_last_checkpoint_and_what_it_does_not_cover(client, policy, consumer):
    now = timezone.now()
    services.consent_change(
        user=consumer, allowed=True, channel=Channel.SETTINGS, now=now - timedelta(minutes=20)
    )
    figures = scrape(client)
    assert value(figures, "consent_audit_events_unchecked") == 1
    assert ("consent_audit_checkpoint_age_seconds", ()) not in figures

    audit.audit_checkpoint(now=now - timedelta(minutes=10))
    figures = scrape(client)

    assert value(figures, "consent_audit_events_unchecked") == 0
    assert 590 < value(figures, "consent_audit_checkpoint_age_seconds") < 700


def test_a_place_outside_the_database_that_lacks_the_latest_checkpoint_is_counted(
    client, policy, consumer, settings
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    audit.audit_checkpoint(now=timezone.now() + timedelta(minutes=2))
    missing = "consent_audit_checkpoint_copy_missing"
    figures = scrape(client)
    assert figures[(missing, (("place", "warehouse"),))] == 0
    assert figures[(missing, (("place", "directory"),))] == 0

    CheckpointCopy.objects.all().delete()  # as if the warehouse had refused it
    for copy in settings.AUDIT_CHECKPOINT_DIR.iterdir():
        copy.unlink()
    figures = scrape(client)

    assert value(figures, missing, place="warehouse") == 1
    assert value(figures, missing, place="directory") == 1


def test_the_latest_verification_of_the_audit_log_says_whether_it_is_intact(
    client, policy, consumer
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    assert ("consent_audit_intact", ()) not in scrape(client)  # never verified yet

    audit.audit_verify_and_record()
    assert scrape(client)[("consent_audit_intact", ())] == 1

    AuditVerification.objects.create(verdict=Verdict.RESTORED, events=1, detail="shorter")
    assert scrape(client)[("consent_audit_intact", ())] == 0
    AuditVerification.objects.create(verdict=Verdict.TAMPERED, events=1, detail="changed")
    figures = scrape(client)
    assert figures[("consent_audit_intact", ())] == 0
    assert 0 <= figures[("consent_audit_verification_age_seconds", ())] < 60


@pytest.fixture
def allowed_a_minute_ago(policy, consumer, settings):
    """The consumer allowed training a minute ago (reconcile leaves younger changes alone), and
    the warehouse is the only sink."""
    settings.CONSENT_SINKS = {
        "warehouse": {
            "BACKEND": "consent.sinks.warehouse.WarehouseSink",
            "OPTIONS": {"database": "warehouse"},
        }
    }
    a_minute_ago = timezone.now() - timedelta(minutes=1)
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=a_minute_ago)


def test_a_change_that_lands_while_reconcile_reads_is_not_drift(
    allowed_a_minute_ago, consumer, monkeypatch
):
    outbox_drain("warehouse")
    entries = WarehouseSink.entries

    def read_then_change(sink, subjects):  # the user turns it off, and it lands, after the read
        held = entries(sink, subjects)
        services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
        Delivery.objects.update(next_attempt_at=timezone.now())
        outbox_drain("warehouse")
        return held

    monkeypatch.setattr(WarehouseSink, "entries", read_then_change)
    (drift,) = reconcile()

    assert (drift.clean, drift.in_flight) == (True, 1)
    assert not EligibilityRecord.objects.get(subject_id=consumer.subject_id).allowed


def test_the_time_since_each_sink_was_last_reconciled_and_swept(client, allowed_a_minute_ago):
    age = ("consent_reconcile_age_seconds", (("sink", "warehouse"),))
    swept = ("consent_reconcile_sweep_age_seconds", (("sink", "warehouse"),))
    assert age not in scrape(client)  # never reconciled yet

    (part,) = reconcile(budget=0)  # one batch, the consumer's: the sweep goes on after it

    assert part.stopped_after is not None
    figures = scrape(client)
    assert 0 <= figures[age] < 60
    assert swept not in figures
    reconcile(budget=0)  # the next part reaches the end
    assert 0 <= scrape(client)[swept] < 60


def test_a_comparison_that_failed_does_not_count_as_reconciled(client, allowed_a_minute_ago):
    now = timezone.now()
    Reconciliation.objects.create(
        sink="warehouse",
        started_at=now,
        finished_at=now,
        missing=0,
        stale=0,
        extra=0,
        in_flight=0,
        repaired=False,
        error="OperationalError: the warehouse does not answer",
    )

    figures = scrape(client)

    assert ("consent_reconcile_age_seconds", (("sink", "warehouse"),)) not in figures
    assert ("consent_reconcile_sweep_age_seconds", (("sink", "warehouse"),)) not in figures
    reconcile()
    Reconciliation.objects.filter(error="").update(finished_at=now - timedelta(hours=2))
    Reconciliation.objects.filter(error__startswith="Op").update(finished_at=timezone.now())
    figures = scrape(client)
    assert 7200 <= figures[("consent_reconcile_age_seconds", (("sink", "warehouse"),))] < 7260


def test_reconcile_counts_the_drift_it_finds(client, allowed_a_minute_ago, consumer):
    Delivery.objects.update(state=State.APPLIED)  # recorded as applied, but never written
    before = value(scrape(client), "consent_reconcile_drift_total", sink="warehouse")

    (drift,) = reconcile()
    reconcile()

    assert drift.missing == [consumer.subject_id]
    after = value(scrape(client), "consent_reconcile_drift_total", sink="warehouse")
    assert after - before == 2  # found twice: the second look did not repair it either


@pytest.mark.django_db(transaction=True, databases=["default", "warehouse"])
def test_a_warehouse_that_does_not_answer_keeps_no_checkpoint_from_the_directory(
    client, policy, consumer, settings, monkeypatch
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    warehouse = connections["warehouse"]
    warehouse.close()
    monkeypatch.setitem(warehouse.settings_dict, "PORT", free_port())  # nobody listens

    with pytest.raises(audit.CopiesMissing, match="the warehouse database: "):
        audit.audit_checkpoint(now=timezone.now() + timedelta(minutes=2))
    figures = scrape(client)

    (copy,) = settings.AUDIT_CHECKPOINT_DIR.glob("*.checkpoint")
    assert copy.read_text() == AuditCheckpoint.objects.get().note
    assert value(figures, "consent_database_up") == 1
    assert value(figures, "consent_audit_checkpoint_copy_missing", place="warehouse") == 1
    assert figures[("consent_audit_checkpoint_copy_missing", (("place", "directory"),))] == 0
    warehouse.close()
