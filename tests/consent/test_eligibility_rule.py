"""The eligibility rule, checked three ways on random histories: the API, a pipeline's DuckDB join
on a snapshot (as docs/pipelines.md writes it), and a brute-force reading of the audit events."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import duckdb
import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.models import User
from accounts.services import api_token_create
from consent import policies, services
from consent.exceptions import ConsentError
from consent.models import ConsentEvent, ConsentPolicy, ConsentState
from consent.outbox import outbox_drain
from consent.runs import snapshot_eligibility
from consent.services import Channel
from consent.snapshots import snapshot_write

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])

START = datetime(2025, 1, 1, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"
Kind = ConsentEvent.Kind


def brute_force(
    events: list[ConsentEvent], terms: list[ConsentPolicy], at: datetime, as_of: datetime
) -> bool:
    """Read the rule straight off the subject's audit events and the published policies."""

    def decision_allowing(moment: datetime) -> ConsentEvent | None:
        in_force = [
            p for p in terms if max(p.effective_at, p.published_at or p.effective_at) <= moment
        ]
        so_far = [event for event in events if event.created_at <= moment]
        if not in_force or not so_far:
            return None
        if any(event.kind == Kind.ACCOUNT_DELETED for event in so_far):
            return None
        if so_far[-1].plan not in User.CONSUMER_PLANS:
            return None
        decisions = [event for event in so_far if event.kind == Kind.DECISION]
        if not decisions or decisions[-1].after != ConsentState.ALLOWED:
            return None
        decision = decisions[-1]
        assert decision.policy is not None
        newer_terms = [
            p for p in in_force if p.requires_new_choice and p.version > decision.policy.version
        ]
        return None if newer_terms else decision

    if at > as_of:
        return False
    then, still = decision_allowing(at), decision_allowing(as_of)
    if then is None or still is None:
        return False
    assert then.policy is not None
    return as_of - at <= timedelta(days=then.policy.retention_days_allowed)


def documented_duckdb_join() -> str:
    """Return the DuckDB query of docs/pipelines.md."""
    match = re.search(r"```sql duckdb\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert match is not None, "docs/pipelines.md shows the DuckDB join in a ```sql duckdb block"
    return match[1]


# Ways a pipeline may write a subject id, each of which the API takes.
WRITTEN: dict[str, Callable[[UUID], str]] = {
    "canonical": str,
    "upper-case": lambda subject: str(subject).upper(),
    "without-dashes": lambda subject: subject.hex,
    "in-braces": lambda subject: f"{{{subject}}}",
    "urn": lambda subject: subject.urn,
}


def duckdb_answers(
    snapshot: Path, pairs: list[tuple[UUID, datetime]], written: Callable[[UUID], str] = str
) -> list[bool]:
    """Run the documented join on the snapshot, as a pipeline would (as_of from the manifest,
    as text, ids as the pipeline writes them), one answer per pair."""
    as_of = json.loads((snapshot / "manifest.json").read_text())["as_of"]
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute(
            "CREATE TABLE activity (n BIGINT, subject_id VARCHAR, activity_at TIMESTAMPTZ)"
        )
        connection.executemany(
            "INSERT INTO activity VALUES (?, ?, ?)",
            [(n, written(subject), at) for n, (subject, at) in enumerate(pairs)],
        )
        query = documented_duckdb_join().replace("'snapshot/*.parquet'", f"'{snapshot}/*.parquet'")
        rows = connection.execute(query, {"as_of": as_of}).fetchall()
    return [eligible for _, eligible in rows]


@dataclass
class History:
    """A random run of the product: policies, users' choices, plans, deletions, expiry."""

    users: list[User]
    subjects: list[UUID]
    moments: list[datetime] = field(default_factory=list)


DECIDE = st.tuples(st.just("decide"), st.integers(0, 2), st.sampled_from([True, True, False]))
POLICY = st.tuples(
    st.just("policy"),
    st.booleans(),  # asks for a new choice
    st.integers(0, 5),  # days until in force
    st.integers(1, 40),  # retention when allowed, in days
)
ACTIONS = st.one_of(
    DECIDE,
    DECIDE,
    DECIDE,
    DECIDE,
    st.tuples(st.just("defer"), st.integers(0, 2)),
    st.tuples(st.just("plan"), st.integers(0, 2), st.sampled_from(["free", "pro", "max", "team"])),
    st.tuples(st.just("delete"), st.just(2)),  # the others stay, so that histories go on
    st.tuples(st.just("expire")),
    POLICY,
)
# The first terms come at once: a history without any is all "no", and teaches little.
STEPS = st.tuples(
    st.tuples(st.just(1), POLICY),
    st.lists(st.tuples(st.integers(1, 2 * 24 * 60), ACTIONS), min_size=8, max_size=25),
).map(lambda first_and_rest: [first_and_rest[0], *first_and_rest[1]])


def act(history: History, now: datetime, action: tuple) -> None:
    match action:
        case ("policy", asks, days, retention):
            policies.policy_publish(
                title=f"Terms from {now:%Y-%m-%d %H:%M}",
                text="May we train on your chats and coding sessions?",
                effective_at=now + timedelta(days=days),
                decision_deadline=now + timedelta(days=days + 30),
                requires_new_choice=asks,
                retention_days_allowed=retention,
                now=now,
            )
        case ("decide", who, allowed):
            services.consent_change(
                user=history.users[who], allowed=allowed, channel=Channel.SETTINGS, now=now
            )
        case ("defer", who):
            services.consent_defer(user=history.users[who], now=now)
        case ("plan", who, plan):
            services.user_change_plan(
                user=history.users[who], plan=plan, channel=Channel.SYSTEM, now=now
            )
        case ("delete", who):
            services.account_delete(user=history.users[who], channel=Channel.SYSTEM, now=now)
        case ("expire",):
            services.consent_expire_for_new_terms(now=now)


def play(steps: list[tuple[int, tuple]]) -> History:
    users = [
        User.objects.create_user(f"p{n}@example.com", "a-long-password-123", plan="pro")
        for n in range(3)
    ]
    history = History(users, [user.subject_id for user in users])
    now = START
    for minutes, action in steps:
        now += timedelta(minutes=minutes)
        history.moments.append(now)
        if len(action) > 1 and action[0] != "policy" and history.users[action[1]].pk is None:
            continue  # the account was deleted
        try:
            with transaction.atomic():
                act(history, now, action)
        except ConsentError:
            pass  # refused as the product refuses it: no policy yet, a commercial plan, …
    return history


def probes(
    history: History, data: st.DataObject, terms: list[ConsentPolicy]
) -> tuple[list[datetime], list[datetime]]:
    """Return moments of data and of selection: event times and the moments just before them,
    terms coming into force, a few others, and the edges of every retention from each selection."""
    events = list(ConsentEvent.objects.values_list("created_at", flat=True))
    events += [
        max(policy.effective_at, policy.published_at or policy.effective_at) for policy in terms
    ]
    edges = [e + delta for e in events for delta in (timedelta(0), timedelta(microseconds=-1))]
    spread = [
        START + timedelta(minutes=m)
        for m in data.draw(st.lists(st.integers(0, 90 * 24 * 60), max_size=10))
    ]
    moments = sorted(set(edges + spread + history.moments))
    # A run selects at the end of the history, and at a few moments during it.
    drawn = data.draw(st.lists(st.sampled_from(moments), max_size=2))
    selections = [history.moments[-1], *drawn]
    retention = [
        selection - timedelta(days=policy.retention_days_allowed) + delta
        for selection in selections
        for policy in terms
        for delta in (timedelta(0), timedelta(microseconds=-1))
    ]
    return sorted(set(moments + retention)), selections


class Abandon(Exception):
    """Roll an example's writes back: every example starts from an empty database."""


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS, data=st.data())
def test_the_api_the_snapshot_join_and_the_audit_events_agree(
    steps, data, settings, client, tmp_path_factory
):
    settings.CONSENT_SINKS = {
        "warehouse": {
            "BACKEND": "consent.sinks.warehouse.WarehouseSink",
            "OPTIONS": {"database": "warehouse"},
        }
    }
    try:
        with transaction.atomic(), transaction.atomic(using="warehouse"):
            history = play(steps)
            outbox_drain("warehouse")
            _, secret = api_token_create(name="property test", scopes=["eligibility"])
            terms = list(ConsentPolicy.objects.filter(published_at__isnull=False))
            events = {
                subject: list(
                    ConsentEvent.objects.filter(subject_id=subject)
                    .select_related("policy")
                    .order_by("number")
                )
                for subject in history.subjects
            }
            moments, selections = probes(history, data, terms)
            written = WRITTEN[data.draw(st.sampled_from(sorted(WRITTEN)), label="ids written")]
            for as_of in selections:
                pairs = [(subject, at) for subject in history.subjects for at in moments]
                expected = [brute_force(events[subject], terms, at, as_of) for subject, at in pairs]
                event(f"{min(sum(expected), 10)} eligible")
                response = client.post(
                    "/api/v1/eligibility",
                    {
                        "as_of": as_of.isoformat(),
                        "pairs": [[written(s), at.isoformat()] for s, at in pairs],
                    },
                    content_type="application/json",
                    headers={"Authorization": f"Bearer {secret}"},
                )
                assert response.status_code == 200, response.content
                snapshot = tmp_path_factory.mktemp("snapshot")
                snapshot_write(as_of=as_of, out=snapshot, wait=0)

                files = sorted(snapshot.glob("*.parquet"))
                assert response.json()["eligible"] == expected
                assert duckdb_answers(snapshot, pairs, written) == expected
                assert snapshot_eligibility(files, pairs, as_of=as_of) == expected
            raise Abandon
    except Abandon:
        pass


@pytest.mark.django_db(databases=["default", "warehouse"])
@pytest.mark.parametrize("written", sorted(WRITTEN))
def test_every_way_the_api_takes_an_id_is_found_by_the_documented_join(
    policy, consumer, client, tmp_path, written
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    outbox_drain("warehouse")
    _, secret = api_token_create(name="ids", scopes=["eligibility"])
    as_of = datetime.now(UTC)
    pairs = [(consumer.subject_id, as_of - timedelta(microseconds=1))]
    snapshot_write(as_of=as_of, out=tmp_path, wait=0)

    response = client.post(
        "/api/v1/eligibility",
        {
            "as_of": as_of.isoformat(),
            "pairs": [[WRITTEN[written](consumer.subject_id), pairs[0][1].isoformat()]],
        },
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )

    assert response.json()["eligible"] == [True]
    assert duckdb_answers(tmp_path, pairs, WRITTEN[written]) == [True]
