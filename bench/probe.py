"""gunicorn hooks for bench/toggle: what each change costs the database.

Each worker notes, for every transaction that locks a user's consent row, the statements it runs
from its first to its commit and how long the row stays locked (from the lock to the commit), and
writes them to PROBE_DIR when it exits. Use it as gunicorn's config (--config python:bench.probe).
"""

import json
import os
import time
from pathlib import Path

holds: list[dict[str, float]] = []


def post_worker_init(worker) -> None:
    from django.db import connections, transaction

    current: dict[str, float] = {}  # the transaction under way: its statements, its lock's time

    def note_commit() -> None:
        if "locked_at" in current:
            held = time.perf_counter() - current["locked_at"]
            holds.append({"seconds": held, "statements": current["statements"]})
        current.clear()

    def probe(execute, sql, params, many, context):
        if not context["connection"].in_atomic_block:
            current.clear()  # a transaction that did not commit ended before this statement
        elif not current:
            current["statements"] = 0
            transaction.on_commit(note_commit)
        if current:
            current["statements"] += 1
            if "FOR UPDATE" in sql and "consent_trainingconsent" in sql:
                current["locked_at"] = time.perf_counter()
        return execute(sql, params, many, context)

    connections["default"].execute_wrappers.append(probe)


def worker_exit(server, worker) -> None:
    Path(os.environ["PROBE_DIR"], f"{os.getpid()}.json").write_text(json.dumps(holds))
