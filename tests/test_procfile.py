"""make run's processes under honcho: a worker that dies is started again, and nothing stops."""

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

from consent import services
from consent.services import Channel
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[1]
HONCHO = Path(sys.executable).parent / "honcho"


def parents() -> dict[int, int]:
    """Return the parent of every process."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            found[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    return found


def descendants(pid: int) -> set[int]:
    tree, found = parents(), {pid}
    while new := {child for child, parent in tree.items() if parent in found} - found:
        found |= new
    return found - {pid}


def cmdline(pid: int) -> bytes:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def wait_for_text(log: Path, text: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, databases=["default", "warehouse"])
def test_a_killed_worker_is_started_again_and_honcho_keeps_running(policy, stack):
    log = stack.tmp_path / "honcho.log"
    honcho = subprocess.Popen(
        [str(HONCHO), "start", "-f", "Procfile", "worker"],
        cwd=ROOT,
        env=stack.base_env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_text(log, " ready.", 1)
        tree = parents()
        (worker,) = [
            pid
            for pid in descendants(honcho.pid)
            if b"keep-running" not in cmdline(pid) and b"keep-running" in cmdline(tree[pid])
        ]
        for pid in [worker, *descendants(worker)]:  # the worker and its pool, as an OOM kill
            os.kill(pid, signal.SIGKILL)

        wait_for_text(log, "exited with status 137", 1)
        wait_for_text(log, " ready.", 2)
        services.consent_change(user=UserFactory(), allowed=True, channel=Channel.SETTINGS)
        stack.wait_converged()
        assert honcho.poll() is None, log.read_text()
    finally:
        left = descendants(honcho.pid)
        honcho.terminate()
        honcho.wait(timeout=30)
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_make_run_has_a_worker_for_every_queue(settings):
    # A queue no process of make run takes would hold its tasks forever, without an error.
    taken = set()
    for command in parse_procfile((ROOT / "Procfile").read_text()).processes.values():
        for word in command.split():
            if word.startswith("--queues="):
                taken |= set(word.removeprefix("--queues=").split(","))
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert taken == routed | {"celery"}
