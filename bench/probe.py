"""gunicorn hooks for bench/toggle: what each change costs while it holds a consent row's lock.

Each worker notes, for every transaction that locks a user's consent row, the statements it runs
from the lock to its commit and how long that takes, and writes them to PROBE_DIR when it exits.
Use it as gunicorn's config file (--config python:bench.probe).
"""

import json
import os
import time
from functools import partial
from pathlib import Path

holds: list[dict[str, float]] = []


def post_worker_init(worker) -> None:
    from django.db import connections, transaction

    hold: dict[str, float] = {}

    def note_commit(started: float) -> None:
        holds.append({"seconds": time.perf_counter() - started, "statements": hold["statements"]})

    def probe(execute, sql, params, many, context):
        if "FOR UPDATE" in sql and "consent_trainingconsent" in sql:
            hold["statements"] = 0
            transaction.on_commit(partial(note_commit, time.perf_counter()))
        if "statements" in hold:
            hold["statements"] += 1
        return execute(sql, params, many, context)

    connections["default"].execute_wrappers.append(probe)


def worker_exit(server, worker) -> None:
    Path(os.environ["PROBE_DIR"], f"{os.getpid()}.json").write_text(json.dumps(holds))
