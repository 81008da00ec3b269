"""Django's Redis cache, with one redis.Redis client per connection pool instead of one per call.

Django's client builds a new redis.Redis for every cache operation, and redis-py's constructor
copies its table of response callbacks each time: about 0.3 ms of CPU per operation, more than
the round trip to Redis. A quiet process's change of the setting makes one (the drain debounce).
"""

from django.core.cache.backends import redis


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[object, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        if pool not in self._clients:  # redis.Redis is thread-safe: commands borrow a connection
            self._clients[pool] = super().get_client(key, write=write)
        return self._clients[pool]


class RedisCache(redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
