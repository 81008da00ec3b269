"""kombu's Redis transport, with one upstream defect worked around (kombu 5.6 and 5.7).

When the broker connection drops while a worker holds a task it has not acknowledged yet
(acks_late), kombu's Redis channel reaches for a connection pool it can no longer make: it
rebuilds one from its connection's `client`, which is None once the connection has let go of
the transport, or from its connection, None once the channel is closed. An AttributeError
('NoneType' object has no attribute 'hostname', or 'client') is no error kombu or Celery expects
there, and the worker stops: when the channel is closed with the task unacknowledged (kombu's
close() drops the pools before it restores the task), or when the task ends and is acknowledged
on the closed channel. This channel restores before its pools go, and answers a pool it cannot
make with the connection error the rest expects. docs/operations.md tells more;
tests/consent/test_broker.py keeps the reproductions, and fails once kombu no longer needs this.
"""

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("The channel's connection is closed.")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]

    def close(self) -> None:
        if not self.closed:
            try:
                self.qos.restore_unacked_once()
            except self.connection_errors:  # type: ignore[attr-defined]
                # The server is gone as well. Redis brings its unacknowledged messages back after
                # the visibility timeout; what a server that kept nothing lost, the outbox's sweep
                # queues again. kombu must not try once more on close (it asserts it did not).
                self.qos.restore_at_shutdown = False
        super().close()


class Transport(redis.Transport):
    Channel = Channel
