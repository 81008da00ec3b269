"""Structured logs: one JSON object a line, each with the id of the request behind it."""

import io
import json
import logging
import re

import pytest

from consent.models import Delivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_lines():
    """What the app's console handler writes, as parsed JSON objects."""
    handler = logging.getLogger().handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    handler.setStream(previous)


def test_every_answer_carries_a_request_id_and_a_sane_offered_one_is_kept(client):
    made = client.get("/healthz")["X-Request-ID"]
    kept = client.get("/healthz", HTTP_X_REQUEST_ID="edge-7f3a.42")["X-Request-ID"]

    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert kept == "edge-7f3a.42"


@pytest.mark.parametrize("offered", ["x" * 65, "has space", "line\nbreak", "", "é"])
def test_an_offered_request_id_that_is_not_sane_is_replaced(client, offered):
    answered = client.get("/healthz", HTTP_X_REQUEST_ID=offered)["X-Request-ID"]

    assert re.fullmatch(r"[0-9a-f]{32}", answered)


def test_a_log_line_is_json_with_the_request_id(client, consumer, log_lines):
    client.force_login(consumer)

    response = client.get("/support/", HTTP_X_REQUEST_ID="req-forbidden-1")

    assert response.status_code == 403
    (line,) = [line for line in log_lines() if line["logger"] == "django.request"]
    assert line["request_id"] == "req-forbidden-1"
    assert line["level"] == "WARNING"
    assert line["message"].startswith("Forbidden")
    assert {"time", "level", "logger", "message", "request_id"} <= line.keys()


def test_a_change_keeps_the_id_of_its_request_on_its_deliveries(client, policy, consumer):
    client.force_login(consumer)

    client.post(
        "/settings/privacy/",
        {"policy_version": 1, "allowed": ["off", "on"]},
        HTTP_X_REQUEST_ID="req-toggle-1",
    )

    deliveries = Delivery.objects.filter(subject_id=consumer.subject_id)
    assert deliveries.exists()
    assert set(deliveries.values_list("request_id", flat=True)) == {"req-toggle-1"}
