"""Measure the history pages of a user with 10,000 events, next to a bare authenticated view.

The app runs under gunicorn on its own PostgreSQL databases (consent_bench_history*) and Redis
databases 6 (cache) and 7 (broker). The first run seeds 100,000 users, one of them with 10,000
events (and their deliveries to each sink), and a support agent; later runs reuse them. One
client sends requests one at a time, round-robin over the pages, so that each is timed alone;
the server time of each request is what gunicorn logs as its duration (%(D)s, microseconds).
Run it with `bench/history`; docs/performance.md has figures.
"""

import argparse
import os
import statistics
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from bench.stack import (
    configure,
    databases_create,
    free_port,
    gunicorn_start,
    policy_ensure,
    session_for,
)

DB_NAME = "consent_bench_history"
configure(DB_NAME, cache_db=6, broker_db=7)

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import User  # noqa: E402
from consent.audit import GENESIS_HASH, audit_first_break, event_hash  # noqa: E402
from consent.changes import PROPAGATED_KINDS  # noqa: E402
from consent.models import (  # noqa: E402
    ConsentEvent,
    ConsentPolicy,
    ConsentState,
    Delivery,
    TrainingConsent,
)

HEAVY = "bench-history-heavy@example.com"
WARM_UP = 20  # requests per page before the measured rounds
AGENT = "bench-history-agent@example.com"
Kind, Channel, Role = ConsentEvent.Kind, ConsentEvent.Channel, ConsentEvent.Role


def seed_users(total: int) -> None:
    """Create bench-history-N users up to `total` users in all, a fifth of them on Team."""
    have = User.objects.count()
    if have >= total:
        return
    password = make_password("bench-password-123")
    plans = [User.Plan.FREE, User.Plan.PRO, User.Plan.MAX, User.Plan.PRO, User.Plan.TEAM]
    batch = []
    for n in range(have, total):
        batch.append(
            User(email=f"bench-history-{n}@example.com", password=password, plan=plans[n % 5])
        )
        if len(batch) == 5000:
            User.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    User.objects.bulk_create(batch, ignore_conflicts=True)


def chain(subject_id, plan: str, policy: ConsentPolicy, steps, start):
    """Build hash-chained events for one subject from (kind, after, channel, role, extra) steps."""
    events, prev, state = [], GENESIS_HASH, ConsentState.UNDECIDED
    for number, (kind, after, channel, role, extra) in enumerate(steps, 1):
        event = ConsentEvent(
            subject_id=subject_id,
            number=number,
            kind=kind,
            before=state,
            after=after,
            plan=extra.pop("plan", plan),
            policy=policy,
            channel=channel,
            actor_role=role,
            created_at=start + timedelta(minutes=number),
            prev_hash=prev,
            **extra,
        )
        event.hash = event_hash(event)
        events.append(event)
        prev, state = event.hash, after
    return events


def heavy_steps(count: int, agent: User):
    yield (
        Kind.NOTICE_SERVED,
        ConsentState.UNDECIDED,
        Channel.POPUP,
        Role.USER,
        {"shown_default": True},
    )
    state = ConsentState.UNDECIDED
    plan = User.Plan.MAX
    for n in range(2, count + 1):
        if n % 1000 == 0:
            plan = User.Plan.PRO if plan == User.Plan.MAX else User.Plan.MAX
            yield (
                Kind.PLAN_CHANGED,
                state,
                Channel.ADMIN,
                Role.ADMIN,
                {"plan": plan, "reason": "Plan"},
            )
            continue
        state = ConsentState.DECLINED if state == ConsentState.ALLOWED else ConsentState.ALLOWED
        if n % 500 == 0:
            extra = {
                "plan": plan,
                "reason": "The user wrote in",
                "reference": f"T-{n}",
                "actor_subject_id": agent.subject_id,
            }
            yield Kind.DECISION, state, Channel.SUPPORT, Role.SUPPORT, extra
        else:
            yield Kind.DECISION, state, Channel.SETTINGS, Role.USER, {"plan": plan}


@transaction.atomic
def seed_history(user: User, events: list[ConsentEvent], *, now) -> None:
    ConsentEvent.objects.bulk_create(events, batch_size=2000)
    saved = list(ConsentEvent.objects.filter(subject_id=user.subject_id).order_by("number"))
    propagated = [e for e in saved if e.kind in PROPAGATED_KINDS]
    deliveries = []
    for index, event in enumerate(propagated):
        newest = index == len(propagated) - 1
        for sink in settings.CONSENT_SINKS:
            deliveries.append(
                Delivery(
                    event=event,
                    sink=sink,
                    subject_id=event.subject_id,
                    event_number=event.number,
                    state=Delivery.State.APPLIED if newest else Delivery.State.SUPERSEDED,
                    attempts=1,
                    applied_at=event.created_at + timedelta(seconds=1) if newest else None,
                    created_at=event.created_at,
                    next_attempt_at=event.created_at,
                )
            )
    Delivery.objects.bulk_create(deliveries, batch_size=5000)
    last = saved[-1]
    decided = [e for e in saved if e.kind == Kind.DECISION]
    TrainingConsent.objects.update_or_create(
        user=user,
        defaults={
            "state": last.after,
            "policy": last.policy if decided else None,
            "head_number": last.number,
            "head_hash": last.hash,
            "decided_at": decided[-1].created_at if decided else None,
        },
    )


def seed(total_users: int, heavy_events: int) -> tuple[User, User]:
    policy = policy_ensure(in_force_for=timedelta(days=400))
    seed_users(total_users - 2)
    agent = User.objects.filter(email=AGENT).first() or User.objects.create_user(
        AGENT, "bench-password-123", plan=User.Plan.TEAM
    )
    agent.groups.add(Group.objects.get(name="Support"))
    heavy = User.objects.filter(email=HEAVY).first() or User.objects.create_user(
        HEAVY, "bench-password-123", plan=User.Plan.MAX
    )
    now = timezone.now()
    if not ConsentEvent.objects.filter(subject_id=heavy.subject_id).exists():
        start = now - timedelta(minutes=heavy_events + 10)
        steps = list(heavy_steps(heavy_events, agent))
        seed_history(heavy, chain(heavy.subject_id, heavy.plan, policy, steps, start), now=now)
    return agent, heavy


def sign_in(user: User) -> str:
    """Write a fresh session for the user, as a login would; return its key."""
    session = session_for(user)
    session.save()
    return session.session_key


def history_gunicorn_start(port: int, log: Path):
    """Start gunicorn with 2 workers, logging each request's name, status and duration."""
    log_format = ["--access-logfile", str(log), "--access-logformat", "%({x-bench}i)s %(s)s %(D)s"]
    return gunicorn_start(port, ["--workers", "2", *log_format])


def fetch(port: int, name: str, path: str, session: str, htmx: bool, expect: str) -> float:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"Cookie": f"sessionid={session}", "X-Bench": name}
        | ({"HX-Request": "true"} if htmx else {}),
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own server
        body = response.read().decode()
        status = response.status
    elapsed = time.perf_counter() - began
    if status != 200 or expect not in body:
        raise SystemExit(f"{name}: {path} answered {status} without {expect!r}: not a real page")
    return elapsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="requests per page")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000, help="events of the heavy user")
    args = parser.parse_args()

    began = time.monotonic()
    databases_create(DB_NAME)
    agent, heavy = seed(args.users, args.events)
    with connection.cursor() as cursor:
        # As autovacuum would after a bulk load: without statistics the planner takes the heavy
        # user for an average one and sorts all 10,000 events to show the newest 20.
        cursor.execute("ANALYZE")
    total_events = ConsentEvent.objects.filter(subject_id=heavy.subject_id).count()
    verify_began = time.perf_counter()
    assert audit_first_break(subject_id=heavy.subject_id) is None, "the seeded chain is broken"
    verify_ms = (time.perf_counter() - verify_began) * 1000
    agent_session, heavy_session = sign_in(agent), sign_in(heavy)
    users = User.objects.count()
    connection.close()
    seeded = time.monotonic() - began

    top, deep = total_events, 41  # the newest page, and the 20 events numbered 40 down to 21
    support = f"/support/users/{heavy.pk}/"
    pages = [
        # name, path, session, htmx, text the real page must contain
        ("bare", "/bench/bare/", agent_session, False, "ok"),
        ("support first", support, agent_session, False, f"#{top}"),
        ("support deep", f"{support}?before={deep}", agent_session, False, "#40"),
        ("support deep htmx", f"{support}?before={deep}", agent_session, True, "#21"),
        ("support filtered", f"{support}?kind=plan_changed", agent_session, False, "Plan changed"),
        ("own first", "/settings/privacy/history/", heavy_session, False, f"?before={top - 19}"),
        (
            "own deep",
            f"/settings/privacy/history/?before={deep}",
            heavy_session,
            False,
            "?before=21",
        ),
        ("support search", "/support/?q=bench-history-4242", agent_session, False, "4242@"),
    ]
    audit = ("support audit", f"{support}audit/", agent_session, True, "chain is intact.")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "access.log"
        server = history_gunicorn_start(port, log)
        client: dict[str, list[float]] = {name: [] for name, *_ in [*pages, audit]}
        try:
            # Warm-up: connections, templates, caches, in both workers. They share the socket, so a
            # handful of requests can all go to one of them; the other's first request would then
            # compile its templates inside the measurement (about 340 ms, seen as a p99).
            for page in [*pages, audit]:
                for _ in range(WARM_UP):
                    fetch(port, *page)
            log.write_text("")
            for round_ in range(args.rounds):
                for name, *rest in pages:
                    client[name].append(fetch(port, name, *rest))
                if round_ % 10 == 0:
                    client[audit[0]].append(fetch(port, *audit))
            time.sleep(0.5)
        finally:
            server.terminate()
            server.wait(timeout=30)
        server_ms: dict[str, list[float]] = {name: [] for name in client}
        for line in log.read_text().splitlines():
            name, status, micros = line.rsplit(" ", 2)
            if name in server_ms and status == "200":
                server_ms[name].append(int(micros) / 1000)

    print(
        f"PostgreSQL {DB_NAME}: {users} users; the heavy user has {total_events} events; "
        f"sinks {', '.join(settings.CONSENT_SINKS)}; gunicorn 2 sync workers, DEBUG off; "
        f"one request at a time; {os.cpu_count()} CPUs shared with everything else on this "
        f"machine; seeding and setup took {seeded:.0f} s."
    )
    print(f"\n{'server time, ms':<20}{'n':>6}{'p50':>9}{'p99':>9}{'max':>9}{'client p50':>12}")
    for name in client:
        times = server_ms[name]
        print(
            f"{name:<20}{len(times):>6}{percentile(times, 0.5):>9.1f}"
            f"{percentile(times, 0.99):>9.1f}{max(times):>9.1f}"
            f"{statistics.median(client[name]) * 1000:>12.1f}"
        )
    pages_p99 = {name: percentile(server_ms[name], 0.99) for name, *_ in pages[1:]}
    worst = max(pages_p99, key=pages_p99.__getitem__)
    verdict = "met" if pages_p99[worst] < 50 else "NOT met"
    print(
        f"\nSPEC bar, a history page under 50 ms server time: {verdict} "
        f"(worst p99: {worst}, {pages_p99[worst]:.1f} ms)."
    )
    print(
        f"The audit chain check ({total_events} hashes, loaded after the support page by htmx, "
        f"not part of it) took {verify_ms:.0f} ms in the benchmark process."
    )
    print(f"Whole run: {time.monotonic() - began:.0f} s.")


if __name__ == "__main__":
    main()
