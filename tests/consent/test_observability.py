"""What an operator sees of work done in real worker processes: counters and request ids."""

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consent.models import Delivery

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "warehouse"]),
]


def counters(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def json_lines(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_the_request_id_reaches_the_worker_that_applies_the_change(client, policy, stack, consumer):
    stack.start_worker()
    client.force_login(consumer)

    client.post(
        "/settings/privacy/",
        {"policy_version": 1, "allowed": ["off", "on"]},
        HTTP_X_REQUEST_ID="req-travels-1",
    )
    stack.wait_converged()

    applied = [
        line
        for line in json_lines(stack.worker_logs())
        if line["logger"] == "consent.outbox" and "req-travels-1" in line.get("request_ids", [])
    ]
    assert {line["sink"] for line in applied} == {"warehouse", "redis", "webhook"}
    # The drain was queued by that request: its task carries the id in its headers.
    assert any(line["request_id"] == "req-travels-1" for line in applied)


def test_the_workers_counts_of_applied_and_failed_deliveries_reach_metrics(
    client, policy, stack, consumer
):
    def applied(figures, sink):
        return figures.get(("consent_deliveries_applied_total", (("sink", sink),)), 0)

    def failed(figures, outcome):
        key = ("consent_deliveries_failed_total", (("outcome", outcome), ("sink", "webhook")))
        return figures.get(key, 0)

    before = counters(client)
    stack.receiver.status = 503
    stack.start_worker(beat=True)
    client.force_login(consumer)
    client.post("/settings/privacy/", {"policy_version": 1, "allowed": ["off", "on"]})
    deadline = time.monotonic() + 30
    while not Delivery.objects.filter(sink="webhook", attempts__gte=2).exists():
        assert time.monotonic() < deadline, stack.worker_logs()
        time.sleep(0.1)
    stack.receiver.status = 200
    stack.wait_converged()
    after = counters(client)

    assert applied(after, "warehouse") - applied(before, "warehouse") == 1
    assert applied(after, "webhook") - applied(before, "webhook") == 1
    assert failed(after, "retry") - failed(before, "retry") >= 2
    assert failed(after, "dead") == failed(before, "dead")
