"""kombu's Redis transport, with one upstream defect worked around (kombu 5.6 and 5.7).

A channel closed after its connection has let go of the transport, as a worker's consumer does
when the broker connection drops while it holds a task it has not acknowledged (acks_late),
restores that task through a connection pool it can no longer make: kombu's close() disconnects
the channel's pools first, then rebuilds one from `connection.client`, which is None by then.
AttributeError: 'NoneType' object has no attribute 'hostname', and the worker stops. This
channel restores its unacknowledged messages before its pools go. docs/operations.md tells more;
tests/consent/test_broker.py keeps the reproduction, and fails once kombu no longer needs this.
"""

from kombu.transport import redis


class Channel(redis.Channel):
    def close(self) -> None:
        if not self.closed:
            self.qos.restore_unacked_once()
        super().close()


class Transport(redis.Transport):
    Channel = Channel
