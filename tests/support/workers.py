"""Real Celery worker processes for the test databases, broker and sinks."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connections

ROOT = Path(__file__).resolve().parents[2]


def database_url(alias: str, *, port: int | None = None) -> str:
    config = connections[alias].settings_dict
    host = config["HOST"] or "127.0.0.1"
    user = config["USER"] or "postgres"
    return f"postgres://{user}@{host}:{port or config['PORT'] or 5432}/{config['NAME']}"


class Worker:
    def __init__(
        self, name: str, env: dict[str, str], log: Path, *, beat: bool, queues: str
    ) -> None:
        self.log = log
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", f"--queues={queues}",
            "--pool=prefork", "--concurrency=1", "--loglevel=INFO",
            f"--hostname={name}@%h", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if beat:
            command += ["--beat", f"--schedule={log.parent / (name + '-beat')}"]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log.read_text():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log.read_text()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, mid-task or not."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the main process: a warm shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
