"""What Prometheus reads at /metrics."""

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consent.audit import copies_missing
from consent.models import AuditCheckpoint, AuditVerification, ConsentEvent
from consent.selectors import sink_overview

logger = logging.getLogger(__name__)

# Kept by prometheus-client in PROMETHEUS_MULTIPROC_DIR, where every web and worker process of a
# machine adds to them.
DELIVERIES_APPLIED = Counter("consent_deliveries_applied", "Changes a sink applied.", ["sink"])
DELIVERIES_FAILED = Counter(
    "consent_deliveries_failed",
    "Attempts a sink failed: retry (tried again later) or dead (given up).",
    ["sink", "outcome"],
)
DECISIONS = Counter(
    "consent_decisions",
    "Choices recorded (decisions and browser opt-out signals), by channel and value.",
    ["channel", "value"],
)
POPUPS_SERVED = Counter("consent_popups_served", "Pop-ups shown to a user who has to choose.")
RECONCILE_DRIFT = Counter(
    "consent_reconcile_drift",
    "Entries reconcile found missing, stale or extra in a sink.",
    ["sink"],
)
REQUEST_LATENCY = Histogram(
    "consent_request_duration_seconds",
    "Time to answer a request, by view.",
    ["view", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class DatabaseCollector(Collector):
    """Read the sinks' backlogs and reconciliations and the audit log's state at each scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("consent_database_up", "Whether the scrape could read the database.")
        try:
            families = list(self._families())
            up.add_metric([], 1)
        except DatabaseError as error:
            logger.warning("Metrics could not read the database: %s", error)
            families = []
            up.add_metric([], 0)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        now = timezone.now()
        pending = GaugeMetricFamily(
            "consent_outbox_pending", "Deliveries waiting for their sink.", labels=["sink"]
        )
        failing = GaugeMetricFamily(
            "consent_outbox_failing",
            "Pending deliveries that failed at least once.",
            labels=["sink"],
        )
        dead = GaugeMetricFamily(
            "consent_outbox_dead", "Deliveries given up on, until someone acts.", labels=["sink"]
        )
        oldest = GaugeMetricFamily(
            "consent_outbox_oldest_pending_age_seconds",
            "Age of the oldest change not yet applied by the sink (0 when none waits).",
            labels=["sink"],
        )
        reconciled = GaugeMetricFamily(
            "consent_reconcile_age_seconds",
            "Time since a comparison of the sink with the audit log last finished without failing.",
            labels=["sink"],
        )
        swept = GaugeMetricFamily(
            "consent_reconcile_sweep_age_seconds",
            "Time since a comparison of the sink last reached the end of the subjects.",
            labels=["sink"],
        )
        for row in sink_overview():
            age = row.oldest_pending_age(now)
            pending.add_metric([row.sink], row.pending)
            failing.add_metric([row.sink], row.failing)
            dead.add_metric([row.sink], row.dead)
            oldest.add_metric([row.sink], age.total_seconds() if age else 0)
            if row.sink not in settings.CONSENT_SINKS:
                continue
            if row.compared_at:
                reconciled.add_metric([row.sink], (now - row.compared_at).total_seconds())
            if row.swept_at:
                swept.add_metric([row.sink], (now - row.swept_at).total_seconds())
        yield from (pending, failing, dead, oldest, reconciled, swept)

        last = AuditCheckpoint.objects.order_by("-tree_size").first()
        unchecked = GaugeMetricFamily(
            "consent_audit_events_unchecked", "Audit events no signed checkpoint covers yet."
        )
        after = last.last_event_id if last else 0
        unchecked.add_metric([], ConsentEvent.objects.filter(pk__gt=after).count())
        yield unchecked
        if last:
            since = GaugeMetricFamily(
                "consent_audit_checkpoint_age_seconds", "Time since the last signed checkpoint."
            )
            since.add_metric([], (now - last.created_at).total_seconds())
            yield since
        copies = GaugeMetricFamily(
            "consent_audit_checkpoint_copy_missing",
            "1 if a place outside the database lacks the latest signed checkpoint, a restore "
            "statement or a published version of the terms as it stands.",
            labels=["place"],
        )
        lacking = copies_missing()
        for place in ("warehouse", "directory"):
            copies.add_metric([place], int(place in lacking))
        yield copies
        latest = AuditVerification.objects.first()
        if latest:
            intact = GaugeMetricFamily(
                "consent_audit_intact",
                "Whether the latest verification of the whole audit log found it intact "
                "(0: tampered with, restored from a backup and not yet recovered, or not fully "
                "checked).",
            )
            intact.add_metric([], int(latest.verdict == AuditVerification.Verdict.INTACT))
            verified = GaugeMetricFamily(
                "consent_audit_verification_age_seconds",
                "Time since the latest verification of the whole audit log.",
            )
            verified.add_metric([], (now - latest.created_at).total_seconds())
            yield from (intact, verified)
