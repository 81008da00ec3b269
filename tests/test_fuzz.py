"""Arbitrary strings in every query parameter and form field of every page: never a 500."""

import json

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.services import api_token_create
from consent import services
from consent.services import Channel
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])

# Values that broke pages before, or break code that trusts what looks like a number or a date.
NASTY = [
    "",
    "0",
    "-1",
    "²",
    "٣",
    "1e9",
    "9223372036854775808",
    "999999999999",
    "-0",
    "99999",
    "\x00",
    "-1 00:00:00",
    "999999999 00:00:00",
    "9999-12-31",
    "' OR 1=1 --",
    "<script>",
]
# Anything a client can send: text of every kind, numbers past every column's range, dates.
VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.dates().map(str),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.from_regex(r"-?[0-9]{1,10} [0-9]{2}:[0-9]{2}:[0-9]{2}", fullmatch=True),
)
# A name given more than once: a page reads one of its values, a filter may read them all.
VALUES = st.one_of(VALUES, st.lists(VALUES, min_size=2, max_size=3))

# (who, method, path, the fields it reads): "{user}" is the signed-in consumer's id.
PAGES = [
    ("anonymous", "get", "/accounts/login/", ["next"]),
    ("anonymous", "post", "/accounts/login/", ["username", "password", "next"]),
    ("anonymous", "post", "/accounts/signup/", ["email", "password1", "password2"]),
    ("anonymous", "post", "/accounts/signup/confirm/MQ/x/", ["password"]),
    ("user", "post", "/accounts/delete/", ["password"]),
    ("anonymous", "post", "/accounts/password_reset/", ["email"]),
    ("anonymous", "get", "/accounts/reset/MQ/x/", ["x"]),
    ("anonymous", "get", "/help/privacy/", ["q"]),
    ("anonymous", "get", "/help/privacy/terms/1/", ["q"]),
    ("user", "get", "/", ["q"]),
    ("user", "post", "/consent/decision/", ["policy_version", "allowed"]),
    ("user", "post", "/consent/not-now/", ["policy_version"]),
    ("user", "get", "/settings/privacy/", ["q"]),
    ("user", "post", "/settings/privacy/", ["policy_version", "allowed"]),
    ("user", "post", "/settings/privacy/choice/", ["policy_version", "allowed"]),
    ("user", "get", "/settings/privacy/history/", ["before", "format"]),
    ("user", "get", "/settings/privacy/history/1/receipt/", ["format"]),
    ("user", "get", "/settings/privacy/propagation/", ["x"]),
    ("user", "get", "/settings/privacy/runs/", ["x"]),
    ("support", "get", "/support/", ["q", "after"]),
    ("support", "get", "/support/users/{user}/", ["kind", "channel", "since", "until", "before"]),
    ("support", "get", "/support/users/{user}/audit/", ["x"]),
    ("support", "get", "/support/users/{user}/history.csv", ["x"]),
    (
        "support",
        "get",
        "/support/subjects/{subject}/",
        ["kind", "channel", "since", "until", "before"],
    ),
    ("support", "get", "/support/subjects/{subject}/history.json", ["x"]),
    (
        "support",
        "post",
        "/support/users/{user}/change/",
        ["allowed", "reason", "reference", "policy_version"],
    ),
    ("admin", "get", "/admin/consent/consentevent/", ["q", "created_at__year", "kind__exact"]),
    (
        "admin",
        "get",
        "/admin/consent/consentevent/",
        ["created_at__year", "created_at__month", "created_at__day"],
    ),
    ("admin", "get", "/admin/consent/delivery/", ["q", "sink", "state__exact", "failing"]),
    ("admin", "get", "/admin/consent/trainingrun/", ["q", "as_of__year"]),
    ("admin", "get", "/admin/consent/reconciliation/", ["sink", "repaired__exact", "part__exact"]),
    ("admin", "get", "/admin/consent/reconciliation/", ["finished_at__year", "finished_at__month"]),
    ("admin", "get", "/admin/accounts/user/", ["q", "plan__exact"]),
    ("admin", "get", "/admin/accounts/user/", ["date_joined__year", "last_login__year"]),
    ("admin", "get", "/admin/accounts/user/", ["email__startswith", "is_staff__exact"]),
    ("admin", "get", "/admin/accounts/apitoken/", ["expires_at__year", "last_used_at__year"]),
    ("admin", "get", "/admin/consent/delivery/", ["created_at__year", "applied_at__month"]),
    ("admin", "get", "/admin/consent/consentpolicy/", ["effective_at__year", "published_at__day"]),
    ("admin", "get", "/admin/consent/trainingrun/", ["created_at__year"]),
    ("admin", "get", "/admin/consent/reconciliation/", ["started_at__year"]),
    ("admin", "get", "/admin/support/accessrecord/", ["q", "at__year"]),
    (
        "admin",
        "post",
        "/admin/consent/consentpolicy/add/",
        [
            "title",
            "text",
            "effective_at",
            "decision_deadline",
            "retention_days_allowed",
            "retention_days_declined",
            "defer_for",
        ],
    ),
    ("admin", "post", "/admin/accounts/apitoken/add/", ["name", "scopes", "expires_at"]),
    ("admin", "post", "/admin/consent/delivery/reconcile/", ["sink", "repair"]),
]


@pytest.fixture
def deleted(policy):
    """The subject id of a deleted account's history."""
    user = UserFactory()
    services.consent_change(user=user, allowed=True, channel=Channel.SETTINGS)
    services.account_delete(user=user, channel=Channel.SETTINGS)
    return user.subject_id


@pytest.fixture
def clients(policy, consumer, support_agent, admin_user):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    signed_in = {}
    for who, user in [("user", consumer), ("support", support_agent), ("admin", admin_user)]:
        signed_in[who] = Client(raise_request_exception=False)
        signed_in[who].force_login(user)
    signed_in["anonymous"] = Client(raise_request_exception=False)
    return signed_in


def answer(client: Client, method: str, path: str, data: dict):
    with transaction.atomic():  # a failed statement must not spoil the next example's
        return getattr(client, method)(path, data)


def page_id(page: tuple) -> str:
    who, method, path, _fields = page
    return f"{who}-{method}-{path}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
@pytest.mark.parametrize("value", NASTY)
def test_no_page_answers_500_to_a_known_nasty_value(clients, consumer, deleted, page, value):
    who, method, path, fields = page
    data = dict.fromkeys(fields, value)

    response = answer(clients[who], method, path.format(user=consumer.pk, subject=deleted), data)

    assert response.status_code < 500, response.content[:500]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_page_answers_500_to_anything(clients, consumer, deleted, page):
    who, method, path, fields = page

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def fuzz(data):
        values = {name: data.draw(VALUES, label=name) for name in fields}
        response = answer(
            clients[who], method, path.format(user=consumer.pk, subject=deleted), values
        )
        assert response.status_code < 500, (values, response.content[:500])

    fuzz()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["pairs", "as_of", "name", "x"]), children, max_size=3
            )
        ),
        max_leaves=12,
    ),
    path=st.sampled_from(["/api/v1/eligibility", "/api/v1/runs"]),
)
def test_the_api_answers_anything_with_a_4xx_at_worst(client, settings, body, path, tmp_path):
    _, secret = api_token_create(name="fuzz", scopes=["eligibility", "runs"])

    with transaction.atomic():
        response = Client(raise_request_exception=False).post(
            path,
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {secret}"},
        )

    assert response.status_code < 500, (path, body, response.content[:500])
