"""Each sink's apply on its real store, and the webhook message against reference libraries."""

import json
import uuid
from datetime import UTC, datetime

import pytest
import redis
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from django.conf import settings
from standardwebhooks import Webhook

from consent.models import EligibilityRecord
from consent.sinks.base import Change, Outcome
from consent.sinks.redis import RedisSink
from consent.sinks.warehouse import WarehouseSink
from consent.sinks.webhook import WebhookSink, cloudevent
from tests.support.receiver import NEXT_SECRET, SECRET


def change(version: int, *, allowed: bool = True, subject=None, delivery_id: int = 1) -> Change:
    return Change(
        delivery_id=delivery_id,
        message_id=f"msg_{version}",
        subject_id=subject or uuid.UUID(int=1),
        version=version,
        allowed=allowed,
        deleted=False,
        plan="pro",
        policy_version=1,
        retention_days=1825 if allowed else 30,
        changed_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_the_warehouse_applies_only_newer_versions():
    sink = WarehouseSink(name="warehouse")

    sink.apply([change(2, allowed=True)])
    sink.apply([change(1, allowed=False)])  # late and older: ignored
    sink.apply([change(2, allowed=False)])  # replayed version: ignored

    record = EligibilityRecord.objects.get()
    assert (record.version, record.allowed, record.retention_days) == (2, True, 1825)
    sink.apply([change(3, allowed=False)])
    assert EligibilityRecord.objects.get().allowed is False


@pytest.fixture
def redis_sink():
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    return RedisSink(name="redis", url=settings.REDIS_URL)


def test_redis_applies_only_newer_versions_in_one_record(redis_sink):
    redis_sink.apply([change(2, allowed=True), change(1, allowed=False, delivery_id=2)])

    record = redis_sink.client.hgetall(redis_sink.key(uuid.UUID(int=1)))
    assert record[b"version"] == b"2"
    assert record[b"allowed"] == b"1"
    assert record[b"retention_days"] == b"1825"


def test_a_redis_repair_overwrites_drift_but_never_a_newer_change(redis_sink):
    subject = uuid.UUID(int=1)
    redis_sink.apply([change(5, allowed=False)])

    redis_sink.repair([change(4, allowed=True)], ceiling={subject: 4}, drop=[])
    assert redis_sink.entries([subject])[subject].version == 5
    redis_sink.repair([change(4, allowed=True)], ceiling={subject: 5}, drop=[])
    assert redis_sink.entries([subject])[subject].version == 4


def test_the_webhook_body_is_a_cloudevent_signed_per_standard_webhooks():
    sink = WebhookSink(name="webhook", url="http://127.0.0.1:9/", secrets=[SECRET])
    body = json.dumps(cloudevent(change(3), source="/consent/training")).encode()

    headers = sink.headers(change(3), body)

    Webhook(SECRET).verify(body, headers)
    event = from_http_event(HTTPMessage(headers=headers, body=body))
    assert event.get_type() == "consent.training.changed.v1"
    assert event.get_subject() == str(uuid.UUID(int=1))
    assert event.get_data() == {
        "allowed": True,
        "version": 3,
        "policy_version": 1,
        "retention_days": 1825,
        "plan": "pro",
        "deleted": False,
    }
    assert headers["webhook-id"] == event.get_id() == "msg_3"


def test_during_a_rotation_both_secrets_verify():
    sink = WebhookSink(name="webhook", url="http://127.0.0.1:9/", secrets=[NEXT_SECRET, SECRET])
    body = b'{"specversion": "1.0"}'

    headers = sink.headers(change(1), body)

    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(NEXT_SECRET).verify(body, headers)


def test_a_secret_without_the_whsec_prefix_is_refused():
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSink(name="webhook", url="http://127.0.0.1:9/", secrets=["plain"])


def test_an_unreachable_endpoint_is_retried(webhook):
    webhook.stop()
    sink = WebhookSink(name="webhook", url=webhook.url, secrets=[SECRET], timeout=1)

    result = sink.apply([change(1)])[1]

    assert result.outcome == Outcome.RETRY
