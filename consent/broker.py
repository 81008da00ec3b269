"""kombu's Redis transport, with one upstream defect worked around (kombu 5.6 and 5.7)."""

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError


# When the broker connection drops while a worker holds a task it has not acknowledged yet
# (acks_late), kombu's Redis channel reaches for a connection pool it can no longer make, and the
# AttributeError ('NoneType' object has no attribute 'hostname', or 'client') stops the worker.
# docs/operations.md tells more; tests/consent/test_broker.py keeps the reproductions, and fails
# once kombu no longer needs this.
class Channel(redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        # kombu rebuilds a pool from the connection's `client`, None once the connection has let
        # go of the transport, or from the connection, None once the channel is closed (a task
        # that ends and is acknowledged there): answer with the error the rest expects.
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("The channel's connection is closed.")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]

    def close(self) -> None:
        # kombu's close() drops the pools before it restores the unacknowledged task: restore
        # first, while they are there.
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
