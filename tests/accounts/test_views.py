import pytest

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_signing_up_creates_a_free_consumer_and_signs_in(client):
    response = client.post(
        "/accounts/signup/",
        {"email": " New@Example.com ", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert user.plan == User.Plan.FREE and user.is_consumer
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    "form",
    [
        {"email": "not-an-email", "password1": PASSWORD, "password2": PASSWORD},
        {"email": "a@example.com", "password1": PASSWORD, "password2": "different-123456"},
        {"email": "a@example.com", "password1": "123", "password2": "123"},
        {"password1": PASSWORD, "password2": PASSWORD},
    ],
)
def test_bad_signups_get_a_form_error_and_create_nobody(client, form):
    response = client.post("/accounts/signup/", form)

    assert response.status_code == 200
    assert response.context["form"].errors
    assert not User.objects.exists()


def test_an_email_can_sign_up_only_once(client, consumer):
    response = client.post(
        "/accounts/signup/",
        {"email": consumer.email.upper(), "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert User.objects.count() == 1


def test_signing_in_by_email_and_out(client, consumer):
    response = client.post("/accounts/login/", {"username": consumer.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200

    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_a_wrong_password_is_a_form_error(client, consumer):
    response = client.post("/accounts/login/", {"username": consumer.email, "password": "nope"})
    assert response.status_code == 200
    assert response.context["form"].errors


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_pages_carry_a_strict_content_security_policy(client):
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
