"""config.cache: Django's Redis cache whose incr() is one atomic round trip, on the real Redis."""

import pytest
from django.core.cache import cache
from redis.connection import Connection


@pytest.fixture
def redis():
    cache.clear()
    yield cache._cache.get_client(write=True)
    cache.clear()


def test_incr_counts_on_a_key_and_keeps_its_expiry(redis):
    cache.add("hits", 1, timeout=60)

    assert cache.incr("hits") == 2
    assert cache.incr("hits", 5) == 7
    assert cache.get("hits") == 7
    assert 0 < redis.ttl(cache.make_key("hits")) <= 60


def test_incr_of_a_missing_key_raises_and_creates_nothing(redis):
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")

    assert not redis.exists(cache.make_key("missing"))


def test_incr_still_works_after_redis_forgets_its_scripts(redis):
    cache.add("hits", 1, timeout=60)
    cache.incr("hits")
    redis.script_flush()

    assert cache.incr("hits") == 3


def test_incr_takes_one_round_trip(redis, monkeypatch):
    cache.add("hits", 1, timeout=60)
    cache.incr("hits")  # the script is loaded once per client
    sent = []
    send = Connection.send_packed_command

    def counted(conn, *args, **kwargs):
        sent.append(args)
        return send(conn, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counted)

    assert cache.incr("hits") == 3
    assert len(sent) == 1
