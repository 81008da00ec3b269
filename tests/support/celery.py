from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from config.celery import app


def _forget_connections() -> None:
    app.pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def celery_broker(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point this process's Celery app at another broker (env first: Celery reads it first)."""
    _forget_connections()
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setitem(app.conf, "broker_url", url)
    try:
        yield
    finally:
        _forget_connections()
