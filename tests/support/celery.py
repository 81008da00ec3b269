from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from kombu import pools

from config.brokers import broker_for
from config.celery import app


def _forget_connections() -> None:
    """Drop the connections and queue declarations made for the broker used so far."""
    # kombu keeps its pools in a registry of its own, by broker URL: a pool closed but left
    # there was handed back closed to the next test whose broker had the same port.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    # Made once, from the settings of the time.
    for declared in ("queues", "default_queue", "default_exchange", "router", "send_task_message"):
        app.amqp.__dict__.pop(declared, None)


@contextmanager
def celery_broker(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point this process's Celery app at another broker (env first: Celery reads it first),
    with the settings its kind needs."""
    _forget_connections()
    broker = broker_for(url, settings.DATA_DIR, longest_task=settings.CONSENT_LONGEST_TIME_LIMIT)
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    for name, value in [
        ("broker_url", url),
        ("broker_transport", broker.transport),
        ("broker_transport_options", broker.transport_options),
        ("task_default_queue_type", broker.queue_type),
        ("task_default_exchange_type", broker.exchange_type),
        ("task_create_missing_queue_type", broker.queue_type),
        ("task_create_missing_queue_exchange_type", broker.exchange_type),
    ]:
        monkeypatch.setitem(app.conf, name, value)
    monkeypatch.setattr(settings, "CONSENT_DRAIN_DELAY", broker.drain_delay)
    try:
        yield
    finally:
        _forget_connections()
