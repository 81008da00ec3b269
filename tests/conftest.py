import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from accounts.models import User
from consent import policies
from consent.eligibility import eligibility
from consent.models import ConsentPolicy, Delivery
from consent.notes import Signer
from consent.outbox import outbox_drain
from support.services import support_group_ensure
from tests.factories import UserFactory

if TYPE_CHECKING:
    from tests.support.receiver import WebhookReceiver

pytest_plugins = ["tests.support.stack", "tests.support.mail"]


SIGNER = Signer.generate("test.example/consent-audit")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Hash test users' passwords cheaply: the real hasher's cost is its point, not the tests'."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def account_requests_unlimited(settings):
    """Let the tests, all from 127.0.0.1, sign up and ask for new passwords as often as they
    do: the count would outlive a test in the shared cache. The tests of the limit set one."""
    settings.ACCOUNT_REQUEST_RATE = (1_000_000, 1)


@pytest.fixture(autouse=True)
def audit_settings(settings, tmp_path):
    """Sign checkpoints with a test key, take events at once, copy checkpoints to a temporary
    directory and keep the snapshots of runs there too."""
    settings.AUDIT_SIGNING_KEY = str(SIGNER)
    settings.AUDIT_VERIFY_KEYS = []
    settings.AUDIT_CHECKPOINT_SETTLE_SECONDS = 0
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"


@pytest.fixture
def policy(db) -> ConsentPolicy:
    now = timezone.now()
    return policies.policy_publish(
        title="Updates to our terms",
        text="May we train on your chats?",
        effective_at=now - timedelta(days=1),
        decision_deadline=now + timedelta(days=30),
        defer_for=timedelta(days=1),
        now=now - timedelta(days=1),
    )


def eligible_answers(pairs, *, as_of) -> list[bool]:
    """Answer as the API does, once the history store has applied every change made so far."""
    Delivery.objects.filter(state=Delivery.State.PENDING).update(next_attempt_at=timezone.now())
    outbox_drain("warehouse")
    return eligibility(pairs, as_of=as_of)


def is_eligible(user: User, at, *, as_of=None) -> bool:
    """Tell whether the user's data from `at` may go into a run selecting then (or at as_of)."""
    return eligible_answers([(user.subject_id, at)], as_of=as_of or at)[0]


@pytest.fixture
def consumer(db) -> User:
    return UserFactory(plan=User.Plan.PRO)


@pytest.fixture
def commercial(db) -> User:
    return UserFactory(plan=User.Plan.ENTERPRISE)


@pytest.fixture
def support_agent(db) -> User:
    agent = UserFactory(plan=User.Plan.TEAM, email="agent@example.com")
    agent.groups.add(support_group_ensure())
    return agent


@pytest.fixture
def agent_client(client, support_agent):
    client.force_login(support_agent)
    return client


@pytest.fixture
def admin_user(db) -> User:
    return UserFactory(plan=User.Plan.TEAM, is_staff=True, is_superuser=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture
def redis_servers() -> Iterator:
    """Start Redis servers of the test's own on demand, so that stopping one leaves the shared
    one alone; return the function that starts one and gives its URL."""
    servers = []

    def start() -> str:
        port = free_port()
        servers.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_for_port(port)
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def private_redis(redis_servers) -> str:
    """A Redis server of the test's own."""
    return redis_servers()


@pytest.fixture
def webhook() -> Iterator["WebhookReceiver"]:
    """A real webhook receiver on a local port."""
    from tests.support.receiver import WebhookReceiver

    receiver = WebhookReceiver().start(free_port())
    yield receiver
    receiver.stop()


@pytest.fixture
def two_sinks(settings, webhook):
    """The warehouse and a webhook to a real local receiver, as the only sinks."""
    settings.CONSENT_SINKS = {
        "warehouse": {
            "BACKEND": "consent.sinks.warehouse.WarehouseSink",
            "OPTIONS": {"database": "warehouse"},
        },
        "webhook": {
            "BACKEND": "consent.sinks.webhook.WebhookSink",
            "OPTIONS": {"url": webhook.url, "secrets": [webhook.secret]},
        },
    }
