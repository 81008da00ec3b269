"""API tokens in the admin: made and shown once, kept hashed, revoked, never edited or deleted."""

import re

import pytest

from accounts.models import ApiToken, api_token_hash
from accounts.services import api_token_create

pytestmark = pytest.mark.django_db
TOKENS = "/admin/accounts/apitoken/"


def test_an_admin_makes_a_token_and_sees_it_once(admin_client, admin_user):
    response = admin_client.post(
        f"{TOKENS}add/", {"name": "nightly pipeline", "scopes": ["eligibility", "runs"]}
    )

    page = response.content.decode()
    secret = re.search(r'value="(cst_[^"]+)"', page)
    assert response.status_code == 200 and secret is not None
    assert {"private", "no-store"} <= set(response["Cache-Control"].split(", "))
    token = ApiToken.objects.get()
    assert (token.name, token.scopes, token.created_by) == (
        "nightly pipeline",
        ["eligibility", "runs"],
        admin_user,
    )
    assert token.key_hash == api_token_hash(secret[1])
    assert secret[1] not in admin_client.get(f"{TOKENS}{token.pk}/change/").content.decode()


@pytest.mark.parametrize(
    "form",
    [
        {"name": "", "scopes": ["eligibility"]},
        {"name": "x"},
        {"name": "x", "scopes": ["everything"]},
        {"name": "x", "scopes": ["runs"], "expires_at": "2001-01-01T00:00"},
        {"name": "x", "scopes": ["runs"], "expires_at": "soon"},
        {"name": "x" * 101, "scopes": ["runs"]},
        {"name": "x", "scopes": ["runs"], "expires_at": "10000-01-01T00:00"},
    ],
    ids=["no-name", "no-scope", "unknown-scope", "expired", "not-a-time", "long-name", "too-far"],
)
def test_a_bad_token_form_is_refused_and_makes_nothing(admin_client, form):
    response = admin_client.post(f"{TOKENS}add/", form)

    assert response.status_code == 200
    assert "cst_" not in response.content.decode()
    assert (
        'class="errornote"' in response.content.decode() or "errorlist" in response.content.decode()
    )
    assert not ApiToken.objects.exists()


def test_tokens_are_revoked_not_deleted(admin_client):
    token, _ = api_token_create(name="old", scopes=["eligibility"])

    admin_client.post(TOKENS, {"action": "revoke", "_selected_action": [token.pk]})

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert admin_client.post(f"{TOKENS}{token.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_a_non_staff_user_cannot_make_tokens(client, consumer):
    client.force_login(consumer)

    assert client.post(f"{TOKENS}add/", {"name": "x", "scopes": ["runs"]}).status_code == 403
    assert not ApiToken.objects.exists()


def test_the_token_list_and_page_name_the_scopes_in_words(admin_client):
    token, _ = api_token_create(name="nightly", scopes=["runs", "eligibility"])

    listing = admin_client.get(TOKENS).content.decode()
    page = admin_client.get(f"{TOKENS}{token.pk}/change/").content.decode()

    for html in (listing, page):
        assert "eligibility, runs" in html
        assert "[&quot;" not in html  # not the JSON the field holds
