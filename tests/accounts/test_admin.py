import pytest
from django.contrib.admin import site

from accounts.admin import UserAdmin
from accounts.models import User
from consent import services
from consent.models import ConsentEvent, Delivery
from consent.services import Channel
from support.models import AccessRecord
from support.services import support_group_ensure
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


def test_a_user_deleted_meanwhile_is_deleted_once_without_an_error(
    policy, admin_user, consumer, rf
):
    # Two admins, or a double click: both loaded the user, the other deleted it first.
    stale = User.objects.get(pk=consumer.pk)
    services.account_delete(user=consumer, channel=Channel.ADMIN, actor=admin_user, reason="Asked")
    request = rf.post("/")
    request.user = admin_user

    UserAdmin(User, site).delete_model(request, stale)

    deleted = ConsentEvent.objects.filter(kind=ConsentEvent.Kind.ACCOUNT_DELETED)
    assert deleted.filter(subject_id=consumer.subject_id).count() == 1


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


def user_form(user, **overrides):
    return {
        "email": user.email,
        "name": user.name,
        "plan": user.plan,
        "plan_change_reason": "",
        "is_active": "on",
        "groups": [],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    } | overrides


def test_a_plan_change_in_the_admin_goes_through_the_one_writer(
    policy, client, admin_user, consumer
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    client.force_login(admin_user)

    response = client.post(
        f"/admin/accounts/user/{consumer.pk}/change/",
        user_form(consumer, plan="enterprise", plan_change_reason="Joined their company's plan"),
    )

    assert response.status_code == 302, response.content.decode()
    consumer.refresh_from_db()
    assert consumer.plan == "enterprise"
    event = ConsentEvent.objects.get(subject_id=consumer.subject_id, kind="plan_changed")
    assert (event.channel, event.actor_role) == ("admin", "admin")
    assert event.actor_subject_id == admin_user.subject_id
    assert event.reason == "Joined their company's plan"
    assert event.plan == "enterprise"
    assert Delivery.objects.filter(event=event).exists()


def test_a_plan_change_without_a_reason_changes_nothing(policy, admin_client, consumer):
    response = admin_client.post(
        f"/admin/accounts/user/{consumer.pk}/change/", user_form(consumer, plan="free")
    )

    assert response.status_code == 200
    assert "Say why the plan changes." in response.content.decode()
    consumer.refresh_from_db()
    assert consumer.plan == "pro"
    assert not ConsentEvent.objects.filter(kind="plan_changed").exists()


def test_other_edits_record_no_plan_event(policy, admin_client, consumer):
    admin_client.post(
        f"/admin/accounts/user/{consumer.pk}/change/", user_form(consumer, name="Pat Pro")
    )

    consumer.refresh_from_db()
    assert consumer.name == "Pat Pro"
    assert not ConsentEvent.objects.exists()


def test_groups_are_editable_so_an_admin_makes_an_agent(policy, admin_client, consumer):
    support = support_group_ensure()

    admin_client.post(
        f"/admin/accounts/user/{consumer.pk}/change/", user_form(consumer, groups=[support.pk])
    )

    assert consumer.has_perm("consent.view_consent_history")


def test_the_user_page_shows_the_consent_read_only_with_a_link_to_support(
    policy, admin_client, consumer, commercial
):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    page = admin_client.get(f"/admin/accounts/user/{consumer.pk}/change/").content.decode()

    assert "Declines training, since" in page and "under policy version 1" in page
    assert f'href="/support/users/{consumer.pk}/"' in page
    assert 'name="consent_state"' not in page
    commercial_page = admin_client.get(f"/admin/accounts/user/{commercial.pk}/change/")
    assert "Not eligible for training (commercial plan)" in commercial_page.content.decode()


def test_an_agent_with_access_records_cannot_be_deleted_in_the_admin(
    policy, admin_client, support_agent, consumer
):
    AccessRecord.objects.create(
        agent=support_agent, subject_id=consumer.subject_id, action="viewed"
    )

    change = admin_client.get(f"/admin/accounts/user/{support_agent.pk}/change/")
    response = admin_client.post(
        f"/admin/accounts/user/{support_agent.pk}/delete/", {"post": "yes"}
    )

    # Not offered, then refused: such an account is deactivated (its "Active" box) instead.
    assert f"/admin/accounts/user/{support_agent.pk}/delete/" not in change.content.decode()
    assert response.status_code == 403
    assert User.objects.filter(pk=support_agent.pk).exists()


def test_staff_who_changed_a_users_setting_or_plan_cannot_be_deleted_in_the_admin(
    policy, admin_client, consumer
):
    staff = UserFactory(plan=User.Plan.TEAM, is_staff=True)
    bystander = UserFactory(plan=User.Plan.TEAM, is_staff=True)
    services.user_change_plan(
        user=consumer, plan=User.Plan.MAX, channel=Channel.ADMIN, actor=staff, reason="Upgrade"
    )

    response = admin_client.post(f"/admin/accounts/user/{staff.pk}/delete/", {"post": "yes"})

    # Support keeps naming who did it: the account is deactivated instead.
    assert response.status_code == 403
    assert User.objects.filter(pk=staff.pk).exists()
    # Chosen with another for the list's "delete selected": refused whole, nothing deleted.
    selected = {"action": "delete_selected", "_selected_action": [staff.pk, bystander.pk]}
    bulk = admin_client.post("/admin/accounts/user/", {**selected, "post": "yes"})
    assert bulk.status_code == 403
    assert User.objects.filter(pk__in=[staff.pk, bystander.pk]).count() == 2
    deleted = admin_client.post(f"/admin/accounts/user/{bystander.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302 and not User.objects.filter(pk=bystander.pk).exists()
