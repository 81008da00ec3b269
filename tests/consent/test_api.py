"""/api/v1/: tokens and scopes, bulk eligibility, training runs and their fixed snapshots."""

import base64
import hashlib
import json
import logging
from datetime import timedelta
from io import StringIO
from uuid import uuid4

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from accounts.services import TokenError, api_token_create, api_token_revoke
from consent import runs, services
from consent.models import Delivery, EligibilityInterval, TrainingRun
from consent.outbox import outbox_drain
from consent.services import Channel
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])
ELIGIBILITY = "/api/v1/eligibility"


@pytest.fixture
def secret(db) -> str:
    return api_token_create(name="pipeline", scopes=["eligibility", "runs"])[1]


def post(client, path, body, secret):
    return client.post(
        path,
        body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )


def drained() -> None:
    Delivery.objects.filter(state=Delivery.State.PENDING).update(next_attempt_at=timezone.now())
    outbox_drain("warehouse")


@pytest.fixture
def allowed_an_hour_ago(policy, consumer):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=an_hour_ago)
    drained()
    return an_hour_ago


def test_pairs_are_answered_in_order_with_the_as_of_used(
    client, secret, consumer, allowed_an_hour_ago
):
    subject = str(consumer.subject_id)
    # Given to the microsecond, said back so; a second back, so that it is never still to come
    # (now with its microseconds set to 123456 was, one run in eight).
    as_of = (timezone.now() - timedelta(seconds=1)).replace(microsecond=123456)
    pairs = [
        [subject, (allowed_an_hour_ago - timedelta(minutes=1)).isoformat()],  # before deciding
        [subject, (allowed_an_hour_ago + timedelta(minutes=1)).isoformat()],
        [str(uuid4()), allowed_an_hour_ago.isoformat()],  # nobody
        [subject, (as_of + timedelta(minutes=1)).isoformat()],  # after the run selects
    ]

    response = post(client, ELIGIBILITY, {"as_of": as_of.isoformat(), "pairs": pairs}, secret)

    assert response.status_code == 200
    assert response.json() == {"as_of": as_of.isoformat(), "eligible": [False, True, False, False]}
    assert response["Cache-Control"] == "private, no-store"


def test_as_of_left_out_is_the_latest_moment_whose_changes_are_all_committed(
    client, secret, consumer, allowed_an_hour_ago, settings
):
    settings.AUDIT_CHECKPOINT_SETTLE_SECONDS = 60
    before = timezone.now()
    pairs = [[str(consumer.subject_id), (before - timedelta(minutes=2)).isoformat()]]
    pairs += [[str(consumer.subject_id), before.isoformat()]]  # after as_of: not yet selectable
    response = post(client, ELIGIBILITY, {"pairs": pairs}, secret)

    body = response.json()
    assert body["eligible"] == [True, False]
    as_of = timezone.datetime.fromisoformat(body["as_of"])
    assert before - timedelta(seconds=60) <= as_of <= timezone.now() - timedelta(seconds=60)


def test_a_withdrawal_keeps_stored_data_out_of_runs_selecting_afterwards(
    client, secret, consumer, allowed_an_hour_ago
):
    chat = allowed_an_hour_ago + timedelta(minutes=5)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    pair = [[str(consumer.subject_id), chat.isoformat()]]

    # Not applied to the history yet: the subject is withheld, not answered from old data.
    assert post(client, ELIGIBILITY, {"pairs": pair}, secret).json()["eligible"] == [False]
    drained()
    assert post(client, ELIGIBILITY, {"pairs": pair}, secret).json()["eligible"] == [False]
    earlier = (chat + timedelta(minutes=1)).isoformat()
    assert post(client, ELIGIBILITY, {"as_of": earlier, "pairs": pair}, secret).json()[
        "eligible"
    ] == [True]


def test_a_withdrawal_the_history_gave_up_on_keeps_the_subject_withheld(
    client, secret, consumer, allowed_an_hour_ago
):
    pair = [[str(consumer.subject_id), (allowed_an_hour_ago + timedelta(minutes=5)).isoformat()]]
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    Delivery.objects.filter(sink="warehouse", state=Delivery.State.PENDING).update(
        state=Delivery.State.DEAD
    )

    # The warehouse still holds the allowing interval; the dead delivery must not let it answer.
    assert EligibilityInterval.objects.filter(allowed_until__isnull=True).exists()
    assert post(client, ELIGIBILITY, {"pairs": pair}, secret).json()["eligible"] == [False]


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        ({"pairs": [["not-a-uuid", "2026-01-01T00:00:00Z"]]}, "a valid UUID"),
        ({"pairs": [["x" * 36, "2026-01-01T00:00:00Z"]]}, "a valid UUID"),
        ({"pairs": [[str(uuid4()), "2026-01-01T00:00:00"]]}, "with seconds and a zone"),
        ({"pairs": [[str(uuid4())]]}, "Field required"),
        ({"pairs": [[str(uuid4()), "yesterday"]]}, "RFC 3339"),
        ({"pairs": [[str(uuid4()), 1767225600]]}, "RFC 3339"),
        ({"pairs": [[str(uuid4()), "1767225600.5"]]}, "RFC 3339"),
        ({"pairs": [[str(uuid4()), "2026-12-01T00:00Z"]]}, "RFC 3339"),
        ({"pairs": [[str(uuid4()), "2026-12-01T00:00:00+0100"]]}, "RFC 3339"),
        ({"pairs": [[str(uuid4()), "2026-12-01T00:00:00+05:60"]]}, "RFC 3339"),
        ({"pairs": [[str(uuid4()), "2016-12-31T23:59:60Z"]]}, "leap second"),
        ({"pairs": [[str(uuid4()), "9999-12-31T23:30:00-01:00"]]}, "years 1 and 9999"),
        ({"as_of": "0001-01-01T00:30:00+01:00", "pairs": []}, "years 1 and 9999"),
        ({"asof": "2026-01-01T00:00:00Z", "pairs": []}, "Extra inputs are not permitted"),
        ({"as_of": "2026-01-01", "pairs": []}, "RFC 3339"),
        ({"pairs": "all of them"}, "list"),
        ({}, "Field required"),
        ("{not json", "is not JSON the API can read: Expecting property name"),
        ('{"pairs": [], "as_of": null, "pairs": []}', "it gives 'pairs' more than once"),
        (
            '{"pairs": [["\\udcff", "2026-01-01T00:00:00Z"]]}',
            "unable to parse raw data as a unicode string",
        ),
    ],
    ids=[
        "uuid",
        "uuid-of-no-hex",
        "no-zone",
        "half-pair",
        "time",
        "a-number",
        "a-number-as-text",
        "no-seconds",
        "zone-without-colon",
        "zone-of-60-minutes",
        "leap-second",
        "past-9999-in-utc",
        "before-year-1-in-utc",
        "unknown-field",
        "as-of-no-zone",
        "not-a-list",
        "empty",
        "json",
        "a-key-twice",
        "a-lone-surrogate",
    ],
)
def test_a_bad_request_gets_a_400_that_says_why(client, secret, body, fault):
    response = post(client, ELIGIBILITY, body, secret)

    assert response.status_code == 400
    assert fault.lower() in response.content.decode().lower()


def test_a_body_nested_too_deep_gets_a_400_that_says_why(client, secret):
    response = post(client, ELIGIBILITY, '{"pairs": ' + "[" * 200_000, secret)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not JSON the API can read: maximum")


def test_a_body_that_is_not_utf_8_gets_a_400_that_says_why(client, secret):
    response = client.post(
        ELIGIBILITY,
        b'{"pairs": [], "as_of": "\xff"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not JSON the API can read: 'utf-8'")


def test_moments_at_the_ends_of_the_calendar_are_answered(client, secret):
    pairs = [[str(uuid4()), "9999-06-01T00:00:00z"], [str(uuid4()), "0001-01-01T00:00:00Z"]]

    response = post(client, ELIGIBILITY, {"pairs": pairs}, secret)

    assert (response.status_code, response.json()["eligible"]) == (200, [False, False])


def test_a_fault_says_what_is_wrong_without_the_validators_words(client, secret):
    pairs = [[str(uuid4()), "2026-11-30T08:15Z"]]

    (fault,) = post(client, ELIGIBILITY, {"pairs": pairs}, secret).json()["first_faults"]

    assert fault["problem"] == (
        "a moment is RFC 3339 text with seconds and a zone, e.g. 2026-12-01T12:00:00Z"
    )


def test_a_fault_is_placed_where_it_is_in_the_body(client, secret):
    pairs = [[str(uuid4()), "2026-01-01T00:00:00Z"], [str(uuid4()), "2026-01-01T00:00:00"]]

    response = post(client, ELIGIBILITY, {"pairs": pairs}, secret)

    assert [fault["where"] for fault in response.json()["first_faults"]] == [
        ["body", "pairs", "1", "1"]
    ]


def test_more_than_100000_pairs_are_refused_whole(client, secret):
    pair = [str(uuid4()), "2026-01-01T00:00:00Z"]

    response = post(client, ELIGIBILITY, {"pairs": [pair] * 100_001}, secret)

    assert response.status_code == 400
    assert "at most 100000" in response.content.decode()


def test_as_of_still_to_come_is_refused(client, secret):
    later = (timezone.now() + timedelta(hours=1)).isoformat()

    response = post(client, ELIGIBILITY, {"as_of": later, "pairs": []}, secret)

    assert response.status_code == 400
    assert response.json()["first_faults"] == [
        {"where": ["body", "as_of"], "problem": "as_of cannot be a moment still to come"}
    ]


@pytest.mark.parametrize(
    ("token", "said"),
    [
        (None, 'Bearer realm="api"'),  # no bearer token sent: no error to name (RFC 6750, 3.1)
        ("", 'Bearer realm="api"'),
        ("Bearer", 'Bearer realm="api"'),
        ("Basic abc", 'Bearer realm="api"'),
        ("Bearer cst_wrong", 'Bearer realm="api", error="invalid_token"'),
    ],
)
def test_a_missing_or_wrong_token_gets_a_401(client, token, said):
    headers = {} if token is None else {"Authorization": token}
    response = client.post(ELIGIBILITY, "{}", content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == said
    assert "Authorization: Bearer <token>" in response.json()["detail"]


def test_a_revoked_or_expired_token_gets_a_401(client):
    revoked, revoked_secret = api_token_create(name="old", scopes=["eligibility"])
    api_token_revoke(tokens=[revoked])
    expiring, expiring_secret = api_token_create(
        name="short", scopes=["eligibility"], expires_at=timezone.now() + timedelta(hours=1)
    )
    ApiToken.objects.filter(pk=expiring.pk).update(expires_at=timezone.now())

    for secret in (revoked_secret, expiring_secret):
        assert post(client, ELIGIBILITY, {"pairs": []}, secret).status_code == 401


def test_a_token_without_the_scope_gets_a_403(client):
    _, runs_only = api_token_create(name="runs", scopes=["runs"])
    _, eligibility_only = api_token_create(name="answers", scopes=["eligibility"])

    assert post(client, ELIGIBILITY, {"pairs": []}, runs_only).status_code == 403
    response = post(client, "/api/v1/runs", {"name": "x"}, eligibility_only)
    assert response.status_code == 403
    assert "runs scope" in response.content.decode()


def test_a_refused_scope_says_which_and_is_not_a_use(client):
    token, secret = api_token_create(name="answers", scopes=["eligibility"])

    response = post(client, "/api/v1/runs", {"name": "x"}, secret)

    assert response.status_code == 403
    assert response["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", scope="runs"'
    )
    token.refresh_from_db()
    assert token.last_used_at is None


def test_a_token_sent_the_wrong_way_is_never_logged(client, settings, caplog, monkeypatch):
    settings.DEBUG = (
        True  # ninja logs such a header whole, on the logger "django", when DEBUG is on
    )
    monkeypatch.setattr(logging.getLogger("django"), "propagate", True)  # to reach caplog
    _, secret = api_token_create(name="answers", scopes=["eligibility"])
    basic = base64.b64encode(f"x:{secret}".encode()).decode()

    for header in (f"Token {secret}", f"Bearer\t{secret}", f"Basic {basic}"):
        response = client.post(
            ELIGIBILITY, "{}", content_type="application/json", headers={"Authorization": header}
        )
        assert response.status_code == 401

    assert secret not in caplog.text
    assert basic not in caplog.text


def test_a_token_is_kept_hashed_and_its_use_is_noted(client):
    token, secret = api_token_create(name="pipeline", scopes=["eligibility"])

    post(client, ELIGIBILITY, {"pairs": []}, secret)

    token.refresh_from_db()
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiToken.objects.values().get())
    assert token.last_used_at is not None


def test_the_command_prints_a_working_token_on_its_last_line(client):
    out = StringIO()

    call_command("api_token_create", "--name", "cli", "--scope", "eligibility", stdout=out)

    secret = out.getvalue().strip().splitlines()[-1]
    assert post(client, ELIGIBILITY, {"pairs": []}, secret).status_code == 200


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        (["--name", "x" * 101], "name is at most 100 characters"),
        (["--name", "cli", "--expires-in-days", "99999999"], "--expires-in-days: .* too far"),
        (["--name", "cli", "--expires-in-days", "0"], "--expires-in-days must be at least 1"),
    ],
    ids=["long-name", "too-far", "zero-days"],
)
def test_the_command_refuses_a_token_it_cannot_make_and_writes_nothing(arguments, why):
    with pytest.raises(CommandError, match=why):
        call_command("api_token_create", *arguments, "--scope", "runs", stdout=StringIO())

    assert not ApiToken.objects.exists()


def test_a_token_name_of_100_characters_is_kept_whole():
    token, _ = api_token_create(name="x" * 100, scopes=["runs"])

    token.refresh_from_db()
    assert token.name == "x" * 100


def test_a_token_name_too_long_is_refused_and_nothing_written():
    with pytest.raises(TokenError, match="name is at most 100 characters"):
        api_token_create(name="x" * 101, scopes=["runs"])

    assert not ApiToken.objects.exists()


def test_the_openapi_document_describes_the_api(client):
    document = client.get("/api/v1/openapi.json").json()

    assert {"/api/v1/eligibility", "/api/v1/runs", "/api/v1/runs/{run_id}"} <= set(
        document["paths"]
    )
    answers = document["paths"]["/api/v1/eligibility"]["post"]["responses"]
    assert {"200", "400", "401", "403"} <= set(answers)
    assert client.get("/api/v1/docs").status_code == 200
    assert client.get("/api/v1/").url == "/api/v1/docs"


# Training runs


def test_a_run_keeps_its_snapshot_and_answers_while_users_change(
    client, secret, consumer, allowed_an_hour_ago
):
    other = UserFactory(plan="max")
    chat = [[str(consumer.subject_id), (allowed_an_hour_ago + timedelta(minutes=1)).isoformat()]]
    response = post(client, "/api/v1/runs", {"name": "model-7"}, secret)
    assert response.status_code == 201
    run = response.json()
    assert (run["name"], run["snapshot"]["subjects"], run["snapshot"]["rows"]) == ("model-7", 1, 1)

    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    services.consent_change(user=other, allowed=True, channel=Channel.SETTINGS)
    drained()

    again = client.get(f"/api/v1/runs/{run['id']}", headers={"Authorization": f"Bearer {secret}"})
    assert again.json()["snapshot"] == run["snapshot"]
    answers = post(client, f"/api/v1/runs/{run['id']}/eligibility", {"pairs": chat}, secret)
    assert answers.json() == {"as_of": run["as_of"], "eligible": [True]}
    assert run["as_of"] == run["snapshot"]["as_of"]
    # A run answers as of its own moment: one asked for another is refused, not ignored.
    other_moment = {"pairs": chat, "as_of": timezone.now().isoformat()}
    refused = post(client, f"/api/v1/runs/{run['id']}/eligibility", other_moment, secret)
    assert refused.status_code == 400
    assert post(client, ELIGIBILITY, {"pairs": chat}, secret).json()["eligible"] == [False]
    file = run["files"][0]
    download = client.get(file["url"], headers={"Authorization": f"Bearer {secret}"})
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == file["sha256"]
    assert download["Content-Type"] == "application/vnd.apache.parquet"


@pytest.mark.parametrize("leaves", ["turns it off", "deletes the account"])
def test_a_run_registered_now_as_of_earlier_leaves_out_whoever_stopped_allowing_meanwhile(
    client, secret, consumer, allowed_an_hour_ago, leaves
):
    stays = UserFactory(plan="max")
    services.consent_change(user=stays, allowed=True, channel=Channel.SETTINGS)
    drained()
    before = timezone.now()
    if leaves == "turns it off":
        services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
        browser = client.__class__()
        browser.force_login(consumer)
    else:
        services.account_delete(user=consumer, channel=Channel.SETTINGS)
    drained()
    # The same moment, asked of the eligibility API, still says who allowed training then.
    chats = [
        [str(consumer.subject_id), (allowed_an_hour_ago + timedelta(minutes=1)).isoformat()],
        [str(stays.subject_id), before.isoformat()],
    ]
    asked = post(client, ELIGIBILITY, {"pairs": chats, "as_of": before.isoformat()}, secret)
    assert asked.json()["eligible"] == [True, True]

    response = post(
        client, "/api/v1/runs", {"name": "backdated", "as_of": before.isoformat()}, secret
    )

    assert response.status_code == 201
    run = response.json()
    assert run["snapshot"]["subjects"] == 1
    assert run["snapshot"]["still_allowing_at"] > run["as_of"]
    answers = post(client, f"/api/v1/runs/{run['id']}/eligibility", {"pairs": chats}, secret)
    assert answers.json()["eligible"] == [False, True]
    if leaves == "turns it off":  # and the user is not told a run took their chats
        page = browser.get("/settings/privacy/").content.decode()
        assert "No training run has selected" in page


def test_a_run_needs_a_name_and_a_moment_already_past(client, secret):
    assert post(client, "/api/v1/runs", {"name": ""}, secret).status_code == 400
    later = (timezone.now() + timedelta(days=1)).isoformat()
    assert post(client, "/api/v1/runs", {"name": "x", "as_of": later}, secret).status_code == 400
    assert not TrainingRun.objects.exists()


UNSEEN = "holds a character that cannot be seen"


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("nul\x00name", UNSEEN),
        ("\u200b", UNSEEN),
        ("red\x1b[31m", UNSEEN),
        ("abc\u202edef", UNSEEN),
        ("x" * 199 + "\u0958", "at most 200 characters"),  # one character, two once normalised
    ],
    ids=["nul", "zero-width-only", "terminal-escape", "right-to-left-override", "too-long"],
)
def test_a_run_name_must_be_seen_as_it_is(client, secret, name, fault):
    response = post(client, "/api/v1/runs", {"name": name}, secret)

    assert response.status_code == 400
    (refused,) = response.json()["first_faults"]  # said where, as every fault in a request is
    assert refused["where"] == ["body", "name"] and fault in refused["problem"]
    assert not TrainingRun.objects.exists()


def test_names_written_two_ways_for_the_same_text_are_one_run(client, secret, allowed_an_hour_ago):
    as_of = timezone.now().isoformat()

    composed = post(client, "/api/v1/runs", {"name": "caf\u00e9", "as_of": as_of}, secret)
    decomposed = post(client, "/api/v1/runs", {"name": "cafe\u0301", "as_of": as_of}, secret)

    assert (composed.status_code, decomposed.status_code) == (201, 200)
    assert decomposed.json()["id"] == composed.json()["id"]


def test_a_retried_registration_is_the_run_already_registered(
    client, secret, consumer, allowed_an_hour_ago, settings
):
    as_of = timezone.now().isoformat()
    first = post(client, "/api/v1/runs", {"name": "model-9", "as_of": as_of}, secret)

    again = post(client, "/api/v1/runs", {"name": " model-9 ", "as_of": as_of}, secret)
    now = post(client, "/api/v1/runs", {"name": "model-9"}, secret)
    earlier = (timezone.now() - timedelta(days=1)).isoformat()
    other = post(client, "/api/v1/runs", {"name": "model-9", "as_of": earlier}, secret)

    assert [r.status_code for r in (first, again, now, other)] == [201, 200, 409, 409]
    assert again.json() == first.json()
    assert f"/api/v1/runs/{first.json()['id']}" in other.json()["detail"]
    assert "If this request retries that registration, send that as_of" in now.json()["detail"]
    assert TrainingRun.objects.count() == 1
    assert [path.name for path in settings.TRAINING_RUNS_DIR.iterdir()] == [first.json()["id"]]
    client.force_login(consumer)
    assert "1 training run selected" in client.get("/settings/privacy/").content.decode()


def test_a_registration_that_loses_a_race_returns_the_winner(allowed_an_hour_ago, monkeypatch):
    as_of = timezone.now()
    snapshot_write, written = runs.snapshot_write, []

    def meanwhile(*, as_of, out, **options):  # the same request, made twice at once, wins
        written.append(out)
        winner = TrainingRun.objects.create(name="model-10", as_of=as_of, snapshot={"files": []})
        return snapshot_write(as_of=as_of, out=out, **options) | {"winner": str(winner.pk)}

    monkeypatch.setattr(runs, "snapshot_write", meanwhile)
    run, new = runs.run_register(name="model-10", as_of=as_of)

    assert (new, TrainingRun.objects.count(), run.snapshot) == (False, 1, {"files": []})
    assert not written[0].exists()


def test_an_unknown_run_or_file_is_a_404(client, secret):
    headers = {"Authorization": f"Bearer {secret}"}
    run = post(client, "/api/v1/runs", {"name": "x"}, secret).json()

    unknown = client.get(f"/api/v1/runs/{uuid4()}", headers=headers)
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": "No training run has this id."},
    )
    assert client.get(f"/api/v1/runs/{run['id']}/files/../x", headers=headers).status_code == 404
    assert (
        client.get(f"/api/v1/runs/{run['id']}/files/x.parquet", headers=headers).status_code == 404
    )


def test_a_form_is_refused_in_json_and_never_read_before_the_token(client, secret):
    form = {"pairs": "all of them"}  # the test client sends it as multipart/form-data

    without_token = client.post(ELIGIBILITY, form)
    with_token = client.post(ELIGIBILITY, form, headers={"Authorization": f"Bearer {secret}"})

    assert without_token.status_code == 401
    assert with_token.status_code == 400
    assert with_token["Content-Type"].startswith("application/json")


def test_a_request_too_large_gets_a_413_that_says_the_limit(client, secret, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    pairs = [[str(uuid4()), "2026-01-01T00:00:00Z"]] * 20

    response = post(client, ELIGIBILITY, {"pairs": pairs}, secret)

    assert response.status_code == 413
    assert "1,000 bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", ELIGIBILITY, 405),
        ("POST", "/api/v1/nothing", 404),
        ("GET", "/api/v1/runs/", 404),
        ("GET", "/api/v1/runs?x=%00", 401),
    ],
)
def test_every_refusal_under_the_api_is_json_and_private(client, method, path, status):
    response = client.generic(method, path)

    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]
    assert response["Content-Length"] == str(len(response.content))
    assert set(response["Cache-Control"].split(", ")) == {"private", "no-store"}
    assert response["X-Content-Type-Options"] == "nosniff"
    if status == 405:
        assert response["Allow"] == "POST"


@pytest.mark.parametrize(("method", "path"), [("POST", "openapi.json"), ("PUT", "docs")])
def test_the_openapi_document_and_its_page_take_get_alone(method, path):
    browser = Client(enforce_csrf_checks=True)  # as a client outside the tests is checked

    response = browser.generic(method, f"/api/v1/{path}")

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response["Content-Type"].startswith("application/json")


def test_a_request_for_another_host_is_refused_in_json(client):
    response = client.get("/api/v1/runs", headers={"Host": "elsewhere.example"})

    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert response["Content-Length"] == str(len(response.content))
    assert "private" in response["Cache-Control"]


# The history the answers are read from


def test_superseded_changes_leave_no_gap_in_the_history(policy, consumer):
    start = timezone.now() - timedelta(hours=3)
    for hours, allowed in [(0, True), (1, False), (2, True)]:
        services.consent_change(
            user=consumer,
            allowed=allowed,
            channel=Channel.SETTINGS,
            now=start + timedelta(hours=hours),
        )

    drained()  # one batch: the two older deliveries are superseded, never sent

    assert Delivery.objects.filter(sink="warehouse", state="superseded").count() == 2
    stored = EligibilityInterval.objects.using("warehouse").order_by("allowed_from")
    assert [(i.allowed_from, i.allowed_until) for i in stored] == [
        (start, start + timedelta(hours=1)),
        (start + timedelta(hours=2), None),
    ]


def test_the_snapshot_command_writes_parquet_and_a_manifest(
    consumer, allowed_an_hour_ago, tmp_path, settings
):
    settings.AUDIT_CHECKPOINT_SETTLE_SECONDS = 60
    out = tmp_path / "snapshot"

    call_command("eligibility_snapshot", "--out", str(out), "--wait", "0", stdout=StringIO())

    manifest = json.loads((out / "manifest.json").read_text())
    # As of the latest moment whose changes have all been committed.
    as_of = timezone.datetime.fromisoformat(manifest["as_of"])
    assert timezone.now() - timedelta(seconds=62) < as_of <= timezone.now() - timedelta(seconds=60)
    assert (manifest["rows"], manifest["subjects"], manifest["withheld_subjects"]) == (1, 1, 0)
    (file,) = manifest["files"]
    assert hashlib.sha256((out / file["name"]).read_bytes()).hexdigest() == file["sha256"]
    assert manifest["newest_event"]["id"] > 0


@pytest.mark.parametrize(
    ("as_of", "why"),
    [
        ("yesterday", "RFC 3339 text with seconds and a zone"),
        ("2026-01-01T00:00:00", "RFC 3339 text with seconds and a zone"),
        ("2026-12-01", "RFC 3339 text with seconds and a zone"),
        ("2026-12-01T12:00Z", "RFC 3339 text with seconds and a zone"),  # the API's rule too
        ("2026-02-30T12:00:00Z", "not a moment that exists"),
        ("2026-12-01T12:00:00+05:60", "RFC 3339 text with seconds and a zone"),
        ("2999-01-01T00:00:00Z", "still to come"),
    ],
    ids=["text", "no-zone", "a-date", "no-seconds", "no-such-day", "zone-of-60", "future"],
)
def test_the_snapshot_command_refuses_a_bad_moment(as_of, why, tmp_path):
    with pytest.raises(CommandError, match=f"--as-of.*{why}"):
        call_command("eligibility_snapshot", "--as-of", as_of, "--out", str(tmp_path / "s"))


def test_the_snapshot_command_refuses_a_file_as_its_directory(tmp_path):
    out = tmp_path / "a-file"
    out.write_text("kept\n")

    with pytest.raises(CommandError, match=r"--out: .*a-file is not a directory"):
        call_command("eligibility_snapshot", "--out", str(out), "--wait", "0")

    assert out.read_text() == "kept\n"


def test_the_snapshot_command_refuses_a_directory_it_cannot_make(tmp_path):
    (tmp_path / "a-file").write_text("")

    with pytest.raises(CommandError, match=r"--out: cannot make .*a-file/s"):
        call_command("eligibility_snapshot", "--out", str(tmp_path / "a-file" / "s"), "--wait", "0")


@pytest.mark.parametrize("wait", ["-1", "nan", "inf"])
def test_the_snapshot_command_refuses_a_wait_that_is_not_a_number_of_seconds(wait, tmp_path):
    with pytest.raises(CommandError, match=r"--wait: .*0 or more"):
        call_command("eligibility_snapshot", "--out", str(tmp_path / "s"), "--wait", wait)

    assert not (tmp_path / "s").exists()


def test_the_admin_lists_runs_read_only(admin_client, secret, client):
    run = post(client, "/api/v1/runs", {"name": "model-8"}, secret).json()

    listing = admin_client.get("/admin/consent/trainingrun/").content.decode()

    assert "model-8" in listing
    detail = admin_client.get(f"/admin/consent/trainingrun/{run['id']}/change/")
    assert detail.status_code == 200 and 'type="submit" value="Save"' not in detail.content.decode()


def test_the_privacy_page_says_which_runs_selected_the_users_data(
    client, secret, consumer, allowed_an_hour_ago
):
    post(client, "/api/v1/runs", {"name": "first"}, secret)
    post(client, "/api/v1/runs", {"name": "second"}, secret)
    browser = client.__class__()
    browser.force_login(consumer)

    page = browser.get("/settings/privacy/").content.decode()
    assert "2 training runs selected your chats and coding sessions" in page
    assert "Runs from now on" not in page

    swapped = browser.post(
        "/settings/privacy/",
        {"policy_version": 1, "allowed": ["off", "off"]},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert 'hx-get="/settings/privacy/runs/"' in swapped
    runs = browser.get("/settings/privacy/runs/", headers={"HX-Request": "true"}).content.decode()
    assert "2 training runs selected" in runs
    assert "Runs from now on will not use your stored chats." in runs


def test_a_user_never_selected_is_told_so(client, consumer, policy):
    client.force_login(consumer)

    assert "No training run has selected" in client.get("/settings/privacy/").content.decode()


def test_a_run_registered_before_runs_were_checked_at_registration_still_counts(
    client, consumer, allowed_an_hour_ago
):
    # Its snapshot took whoever allowed training as of its moment, this user among them.
    as_of = allowed_an_hour_ago + timedelta(minutes=1)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    TrainingRun.objects.create(name="old", as_of=as_of, snapshot={"files": []})
    client.force_login(consumer)

    page = client.get("/settings/privacy/").content.decode()

    assert "1 training run selected your chats and coding sessions" in page
