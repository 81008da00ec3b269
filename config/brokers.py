"""What Celery needs to know of each kind of broker the app runs on."""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Broker:
    transport: str | None = None  # kombu's own for the URL's scheme, unless named
    transport_options: dict[str, object] = field(default_factory=dict)
    queue_type: str = "classic"
    exchange_type: str = "direct"
    drain_delay: float = 0.25  # seconds; see CONSENT_DRAIN_DELAY


def broker_for(url: str, data_dir: Path, *, longest_task: int) -> Broker:
    """Return the settings for a RabbitMQ, Redis or file-system broker URL."""
    # The file system is the embedded default, which needs no server; RabbitMQ is production's.
    if url.startswith("filesystem://"):
        folders = {name: data_dir / "broker" / name for name in ("queue", "processed", "control")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return Broker(
            transport_options={
                "data_folder_in": str(folders["queue"]),
                "data_folder_out": str(folders["queue"]),
                "processed_folder": str(folders["processed"]),
                "control_folder": str(folders["control"]),  # else ./control, in the checkout
            }
        )
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        # Replicated quorum queues, and a publish counts once the broker confirms it. A countdown
        # goes through RabbitMQ's delayed delivery exchanges, which route by topic and count
        # whole seconds (Celery refuses a countdown under one there).
        return Broker(
            transport_options={"confirm_publish": True},
            queue_type="quorum",
            exchange_type="topic",
            drain_delay=1.0,
        )
    if url.startswith(("redis://", "rediss://")):
        # kombu's Redis transport but for a defect that stopped workers (consent/broker.py); a
        # stalled broker fails a publish in seconds (the sweep queues it later), never hangs.
        return Broker(
            transport="consent.broker:Transport",
            transport_options={
                # Above the longest task's time limit, so that a task still running is not
                # handed to a second worker. A drain lost with its worker is queued again by the
                # sweep within seconds, a scheduled task by beat (each is safe to run twice at
                # once). longest_task is the longest hard time limit of a task, in seconds.
                "visibility_timeout": longest_task + 300,
                "socket_timeout": 5,
                "socket_connect_timeout": 2,
            },
        )
    return Broker()
