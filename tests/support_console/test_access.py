"""Who reaches the support console and the admin: agents in; everyone else signed in gets a 403."""

import pytest

from accounts.models import User
from consent.models import ConsentEvent, Delivery
from support.models import AccessRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def support_urls(account: User) -> list[tuple[str, str]]:
    return [
        ("get", "/support/"),
        ("get", "/support/?q=user"),
        ("get", f"/support/users/{account.pk}/"),
        ("get", f"/support/users/{account.pk}/audit/"),
        ("get", f"/support/users/{account.pk}/history.csv"),
        ("get", f"/support/users/{account.pk}/history.json"),
        ("get", f"/support/users/{account.pk}/change/"),
        ("post", f"/support/users/{account.pk}/change/"),
    ]


CHANGE = {"policy_version": "1", "allowed": "off", "reason": "Asked", "reference": "T-1"}


def assert_nothing_written() -> None:
    assert not AccessRecord.objects.exists()
    assert not ConsentEvent.objects.filter(kind="decision").exists()
    assert not Delivery.objects.exists()


def test_anonymous_visitors_are_sent_to_sign_in(client, policy, consumer):
    for method, url in support_urls(consumer):
        response = getattr(client, method)(url, CHANGE if method == "post" else None)

        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next=/support/"), url
    assert_nothing_written()


def test_users_without_the_support_role_get_403_on_every_support_url(
    client, policy, consumer, commercial
):
    client.force_login(consumer)

    # Their own id and someone else's, guessed: the same refusal, nothing about either shown.
    for account in (consumer, commercial):
        for method, url in support_urls(account):
            response = getattr(client, method)(url, CHANGE if method == "post" else None)

            assert response.status_code == 403, url
            assert commercial.email not in response.content.decode()
    assert_nothing_written()


def test_staff_without_the_support_role_get_403_too(client, policy, consumer):
    staff = UserFactory(is_staff=True, plan=User.Plan.TEAM)
    client.force_login(staff)

    for method, url in support_urls(consumer):
        assert getattr(client, method)(url).status_code == 403, url
    assert_nothing_written()


def test_an_unknown_user_id_is_404_for_an_agent_and_leaves_no_record(agent_client, policy):
    missing = (User.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1

    for method, url in support_urls(User(pk=missing))[2:]:
        response = getattr(agent_client, method)(url, CHANGE if method == "post" else None)

        assert response.status_code == 404, url
    assert_nothing_written()


def test_a_superuser_has_the_support_role(admin_client, consumer):
    assert admin_client.get(f"/support/users/{consumer.pk}/").status_code == 200


@pytest.mark.parametrize(
    "url", ["/admin/", "/admin/login/", "/admin/consent/consentevent/", "/admin/accounts/user/"]
)
def test_an_agent_without_staff_status_cannot_reach_the_admin(agent_client, url):
    assert agent_client.get(url).status_code == 403


def test_a_user_without_staff_status_cannot_reach_the_admin(client, consumer):
    client.force_login(consumer)

    assert client.get("/admin/").status_code == 403
    assert client.post("/admin/login/", {"username": "x", "password": "y"}).status_code == 403


def test_anonymous_visitors_of_the_admin_are_sent_to_its_sign_in(client):
    response = client.get("/admin/consent/consentevent/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/admin/login/").status_code == 200


def test_an_agent_who_is_also_staff_reaches_the_admin(client, support_agent):
    support_agent.is_staff = True
    support_agent.save()
    client.force_login(support_agent)

    assert client.get("/admin/").status_code == 200


def test_the_navigation_shows_support_only_to_agents(client, support_agent, policy, consumer):
    client.force_login(support_agent)
    assert 'href="/support/"' in client.get("/help/privacy/").content.decode()

    client.force_login(consumer)
    assert 'href="/support/"' not in client.get("/help/privacy/").content.decode()


def test_the_403_page_says_what_is_wrong_in_the_site_s_own_layout(client, consumer):
    client.force_login(consumer)

    page = client.get("/support/").content.decode()

    assert "This page is not for your account" in page
    assert 'href="/settings/privacy/"' in page
