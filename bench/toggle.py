"""Measure what a toggle costs the database under load, beside a bare authenticated view.

The app runs under gunicorn on its own PostgreSQL database (consent_bench_toggle, or
BENCH_TOGGLE_DB) and Redis databases 10 and 11. Thousands of users are signed in by writing their
sessions (as a login would) and wrk drives, in alternating rounds, GETs of a bare authenticated
view and htmx toggle POSTs as the settings page sends them. It prints, per toggle, the statements
and round trips from the lock of the user's consent row to the commit, the WAL written, how long
the row stays locked, and the throughput beside the bare view's for information.
Run it with `bench/toggle`; docs/performance.md has figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.stack import (
    ROOT,
    configure,
    databases_create,
    free_port,
    gunicorn_start,
    policy_ensure,
    session_for,
)

DB_NAME = os.environ.get("BENCH_TOGGLE_DB", "consent_bench_toggle")
TARGETS = {"bare": "/bench/bare/", "toggle": "/settings/privacy/"}
configure(DB_NAME, cache_db=10, broker_db=11)

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402
from django.db import connection  # noqa: E402
from django.middleware.csrf import CSRF_ALLOWED_CHARS  # noqa: E402
from django.utils.crypto import get_random_string  # noqa: E402

from accounts.models import User  # noqa: E402
from config.celery import app as celery_app  # noqa: E402
from consent import services  # noqa: E402
from consent.models import ConsentEvent, ConsentPolicy, TrainingConsent  # noqa: E402


def bench_users(count: int) -> list[User]:
    emails = [f"bench-{n}@example.com" for n in range(count)]
    existing = set(User.objects.filter(email__in=emails).values_list("email", flat=True))
    password = make_password("bench-password-123")
    User.objects.bulk_create(
        [
            User(email=email, password=password, plan=User.Plan.PRO)
            for email in emails
            if email not in existing
        ]
    )
    return list(User.objects.filter(email__in=emails).order_by("pk"))


def popup_shown(users: list[User]) -> None:
    """Record the pop-up's notice for each user without a consent row, as showing it on the
    product home does: a user reaches the settings page with a row to change, not none."""
    with_row = set(TrainingConsent.objects.filter(user__in=users).values_list("user_id", flat=True))
    for user in users:
        if user.pk not in with_row:
            services.notice_record_served(user=user)


def sign_in(users: list[User]) -> list[tuple[str, str]]:
    """Write a fresh session per user, as a login would; return (session key, CSRF token)."""
    # The sessions here are all earlier runs' (of this benchmark or bench.compare, never two at
    # once): without them, every run's requests read their session from a table of one size.
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Session._meta.db_table}")
    sessions = Session.objects.bulk_create([session_for(user) for user in users])
    return [
        (session.session_key, get_random_string(32, CSRF_ALLOWED_CHARS)) for session in sessions
    ]


def prepare(count: int) -> tuple[ConsentPolicy, list[User], list[tuple[str, str]]]:
    """Make the database, a policy and the users ready; return them and the users' sessions."""
    databases_create(DB_NAME)
    celery_app.control.purge()  # no worker runs here: forget the drains earlier runs queued
    policy = policy_ensure(in_force_for=timedelta(days=1))
    users = bench_users(count)
    popup_shown(users)
    pairs = sign_in(users)
    connection.close()
    return policy, users, pairs


def write_users_file(path: Path, users: list[User], pairs: list[tuple[str, str]]) -> None:
    """Give each user the value that changes their current state, so no POST is a no-op."""
    allowed = set(
        TrainingConsent.objects.filter(user__in=users, state="allowed").values_list(
            "user_id", flat=True
        )
    )
    lines = [
        f"{key} {csrf} {'off' if user.pk in allowed else 'on'}"
        for user, (key, csrf) in zip(users, pairs, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def run_wrk(
    *,
    port: int,
    mode: str,
    path: str,
    version: int,
    users_file: Path,
    seconds: int,
    connections: int,
    earlier_requests: int,
) -> dict[str, float]:
    output = subprocess.run(
        [
            "wrk",
            f"-t{connections}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "load.lua"),
            f"http://127.0.0.1:{port}",
            "--",
            mode,
            path,
            str(version),
            str(users_file),
            str(connections),
            # Each thread goes on about where the threads' last round of this mode left off, so
            # that short rounds do not make the same users toggle in every round, into their
            # rate limit.
            str(earlier_requests // connections),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def wal_so_far() -> dict[str, int]:
    """Return the bytes of WAL the server has written so far, and the full-page images among them.

    Both count the whole server: nothing else should run during a benchmark. The bytes are exact;
    the images come from pg_stat_wal, which a backend may update up to 10 s late, so a few of
    one round's can be counted in the next.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, wal_fpi FROM pg_stat_wal")
        wal_bytes, fpi = cursor.fetchone()
    return {"wal_bytes": int(wal_bytes), "wal_fpi": fpi}


def row(name: str, result: dict[str, float]) -> str:
    return (
        f"{name:<14}{result['rps']:>10.1f}{result['p50_us'] / 1000:>10.1f}"
        f"{result['p99_us'] / 1000:>10.1f}{result['requests']:>10}{result['not_200']:>9}"
        f"{result['wal_bytes'] / max(result['requests'], 1) / 1000:>9.1f}"
        f"{result['wal_fpi'] / max(result['requests'], 1):>8.2f}"
    )


def lock_holds(probe_dir: Path) -> list[dict[str, float]]:
    """Return every hold of a consent row's lock the server's workers noted (bench/probe.py)."""
    return [hold for path in probe_dir.glob("*.json") for hold in json.loads(path.read_text())]


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="length of each round")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each kind, alternated")
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    args = parser.parse_args()

    policy, users, pairs = prepare(args.users)
    port = free_port()
    results: dict[str, list[dict[str, float]]] = {"bare": [], "toggle": []}
    with tempfile.TemporaryDirectory() as tmp:
        probe_dir = Path(tmp) / "probe"
        probe_dir.mkdir()
        server = gunicorn_start(
            port,
            ["--workers", str(args.workers), "--config", "python:bench.probe"],
            env={"PROBE_DIR": str(probe_dir)},
        )
        print(
            f"gunicorn: {args.workers} workers on 127.0.0.1:{port}; PostgreSQL {DB_NAME}; "
            f"{len(users)} signed-in users; wrk: {args.connections} connections, a thread each; "
            f"toggle rate: a burst of {settings.CONSENT_TOGGLE_RATE[0]}, then one per "
            f"{settings.CONSENT_TOGGLE_RATE[1] / settings.CONSENT_TOGGLE_RATE[0]:g} s per user; "
            f"{os.cpu_count()} CPUs shared with everything else on this machine."
        )
        try:
            users_file = Path(tmp) / "users.txt"
            before = ConsentEvent.objects.filter(kind="decision").count()
            requests_so_far = dict.fromkeys(TARGETS, 0)
            failed = 0
            schedule = [(mode, 2, False) for mode in TARGETS]  # warm-up
            schedule += [(mode, args.seconds, True) for _ in range(args.rounds) for mode in TARGETS]
            for mode, seconds, counted in schedule:
                write_users_file(users_file, users, pairs)
                wal_before = wal_so_far()
                result = run_wrk(
                    port=port,
                    mode=mode,
                    path=TARGETS[mode],
                    version=policy.version,
                    users_file=users_file,
                    seconds=seconds,
                    connections=args.connections,
                    earlier_requests=requests_so_far[mode],
                )
                requests_so_far[mode] += result["requests"]
                failed += result["not_200"] + result["socket_errors"]
                result |= {name: end - wal_before[name] for name, end in wal_so_far().items()}
                if counted:
                    results[mode].append(result)
            time.sleep(0.5)
            decisions = ConsentEvent.objects.filter(kind="decision").count() - before
        finally:
            server.terminate()
            server.wait(timeout=30)
        holds = lock_holds(probe_dir)

    print(
        f"\n{'':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'requests':>10}{'not 200':>9}"
        f"{'WAL kB':>9}{'FPI':>8}"
    )
    for mode, rounds in results.items():
        for number, result in enumerate(rounds, 1):
            print(row(f"{mode} #{number}", result))
    total = {
        mode: sum(r["requests"] for r in rounds) / sum(r["duration_us"] / 1e6 for r in rounds)
        for mode, rounds in results.items()
    }
    # A round right after a checkpoint writes whole pages (FPI) on first touch: not counted.
    quiet = [r for r in results["toggle"] if r["wal_fpi"] / max(r["requests"], 1) < 0.05]
    wal_per_toggle = (
        sum(r["wal_bytes"] for r in quiet) / sum(r["requests"] for r in quiet) if quiet else None
    )
    statements = max(hold["statements"] for hold in holds)
    held_ms = [hold["seconds"] * 1000 for hold in holds]

    print("\nPer toggle (the bar: at most 5 statements and 3 kB of WAL outside checkpoints):")
    print(
        f"  statements in its transaction, the lock included: {statements:.0f} at most, "
        f"{statistics.mean(h['statements'] for h in holds):.2f} on average "
        f"({statements + 2:.0f} round trips with BEGIN and COMMIT), over {len(holds)} changes"
    )
    if wal_per_toggle is None:
        print("  WAL: every toggle round followed a checkpoint; run again for the figure")
    else:
        print(
            f"  WAL: {wal_per_toggle / 1000:.2f} kB "
            f"({len(quiet)} of {len(results['toggle'])} rounds without full-page images)"
        )
    print(
        f"  consent row locked: p50 {percentile(held_ms, 0.5):.2f} ms, "
        f"p99 {percentile(held_ms, 0.99):.2f} ms (lock to commit, seen by the app)"
    )
    print(
        f"\nFor information: bare view {total['bare']:.1f} req/s, toggle {total['toggle']:.1f} "
        f"req/s, toggle / bare {total['toggle'] / total['bare']:.0%}"
    )
    print(f"decision events written during the run (warm-up included): {decisions}")
    print("WAL kB, FPI: WAL and full-page images written per request (images follow a checkpoint)")
    met = statements <= 5 and wal_per_toggle is not None and wal_per_toggle <= 3000
    print(f"bar: {'met' if met else 'NOT met'}")
    if failed:
        raise SystemExit(f"{failed} responses were not 200 or failed: the figures are not valid")


if __name__ == "__main__":
    main()
