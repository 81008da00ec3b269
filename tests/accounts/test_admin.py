import pytest

from consent import services
from consent.models import ConsentEvent, Delivery
from consent.services import Channel
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_deleting_a_user_in_the_admin_keeps_the_audit_and_tells_the_sinks(
    policy, admin_client, consumer
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    subject_id = consumer.subject_id

    response = admin_client.post(f"/admin/accounts/user/{consumer.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    events = list(ConsentEvent.objects.filter(subject_id=subject_id).order_by("number"))
    assert [e.kind for e in events] == ["decision", "account_deleted"]
    assert events[-1].actor_role == ConsentEvent.Role.ADMIN
    assert Delivery.objects.filter(event=events[-1]).exists()


def test_bulk_deleting_users_in_the_admin_goes_through_the_service(policy, admin_client):
    users = UserFactory.create_batch(2)

    admin_client.post(
        "/admin/accounts/user/",
        {"action": "delete_selected", "_selected_action": [u.pk for u in users], "post": "yes"},
    )

    deleted = ConsentEvent.objects.filter(kind=ConsentEvent.Kind.ACCOUNT_DELETED)
    assert sorted(deleted.values_list("subject_id", flat=True)) == sorted(
        u.subject_id for u in users
    )
