"""Values no column can store are refused before any view reads them."""

import pytest

from consent.models import ConsentEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "query",
    [
        "plan__exact=%00",
        "plan__exact=%00&plan__exact=free",  # the last value alone looks fine
        "plan__exact=free&plan__exact=%00",
        "email__startswith%00=a",
    ],
)
def test_a_nul_anywhere_in_a_query_is_a_400(admin_client, query):
    response = admin_client.get(f"/admin/accounts/user/?{query}")

    assert response.status_code == 400
    assert b"NUL" in response.content


def test_a_nul_in_the_user_agent_is_dropped_from_the_change_recorded(policy, consumer, client):
    client.force_login(consumer)

    response = client.post(
        "/settings/privacy/",
        {"policy_version": policy.version, "allowed": "on"},
        headers={"User-Agent": "Mozilla\x00/5.0"},
    )

    assert response.status_code == 302
    decision = ConsentEvent.objects.get(subject_id=consumer.subject_id, kind="decision")
    assert decision.user_agent == "Mozilla/5.0"
