"""What support, the user and the downstream stores are told about a user's consent, in the
corners a probe as a support agent found them wrong: terms not in force, choices under older
terms, plan changes, "Not now" to older terms, deleted staff, skipped and pruned deliveries, and
the audit chain page."""

import json
from datetime import timedelta

import pgtrigger
import pytest
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.audit import audit_first_break
from consent.changes import change_for
from consent.exceptions import ConsentError
from consent.models import ConsentEvent, Delivery, TrainingConsent
from consent.outbox import outbox_drain, outbox_prune
from consent.services import Channel
from support.models import AccessRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])
State = Delivery.State


def url(user: User, suffix: str = "") -> str:
    return f"/support/users/{user.pk}/{suffix}"


def publish(
    version_title: str,
    *,
    effective_in=timedelta(0),
    requires_new_choice=True,
    decision_deadline_in=timedelta(days=30),
    **kw,
):
    now = timezone.now()
    return policies.policy_publish(
        title=version_title,
        text=f"{version_title}: the text users read.",
        effective_at=now + effective_in,
        decision_deadline=now + effective_in + decision_deadline_in,
        defer_for=timedelta(days=1),
        requires_new_choice=requires_new_choice,
        **kw,
    )


@pytest.fixture
def staff_admin(db) -> User:
    return UserFactory(plan=User.Plan.TEAM, is_staff=True, email="admin2@example.com")


def test_terms_not_yet_in_force_are_not_called_current(agent_client, policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    publish("Version two", effective_in=timedelta(days=7))

    page = agent_client.get(url(consumer)).content.decode()

    # Version 1 is the one in force for a week yet; the help page says "Until then, version 1
    # applies". Support must not tell the user that version 2 is the current one.
    assert "Version 2 is current" not in page
    assert "Version 2 (“Version two”) is published, and users are asked about it" in page
    assert "Until then, version 1 applies." in page


def test_a_choice_under_older_terms_is_not_said_to_be_under_the_current_ones(
    agent_client, policy, consumer
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    publish("Wording fixes", requires_new_choice=False)

    page = agent_client.get(url(consumer)).content.decode()

    assert "under policy version 1" in page  # the current choice line, correct
    assert "This user has chosen under it." not in page  # ...contradicted below it
    assert "This user chose under version 1; the newer terms do not ask again" in page


def test_a_plan_change_keeps_the_terms_the_choice_was_made_under(policy, consumer, admin_user):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    publish("Shorter retention", requires_new_choice=False, retention_days_allowed=100)

    event = services.user_change_plan(
        user=consumer, plan=User.Plan.MAX, channel=Channel.ADMIN, actor=admin_user, reason="Up"
    )

    change = change_for(event)
    assert change.allowed
    # The user agreed to version 1 (1825 days); version 2 did not ask them again.
    assert (change.policy_version, change.retention_days) == (1, 1825)


def test_back_to_a_consumer_plan_never_sends_allowed_for_an_expired_choice(
    policy, consumer, admin_user
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.user_change_plan(
        user=consumer, plan=User.Plan.TEAM, channel=Channel.ADMIN, actor=admin_user, reason="Team"
    )
    publish("Choose again")
    services.consent_expire_for_new_terms()  # the minute task, run once the terms are in force

    event = services.user_change_plan(
        user=consumer, plan=User.Plan.PRO, channel=Channel.ADMIN, actor=admin_user, reason="Pro"
    )

    assert not change_for(event).allowed


def test_who_acted_stays_answerable_for_the_staff_account_cannot_be_deleted(
    agent_client, policy, consumer, staff_admin, admin_user
):
    # What the admin's Users page does on a plan change (accounts/admin.py).
    services.user_change_plan(
        user=consumer, plan=User.Plan.MAX, channel=Channel.ADMIN, actor=staff_admin, reason="Up"
    )
    with pytest.raises(ConsentError, match="an administrator can deactivate it, not delete it"):
        services.account_delete(
            user=staff_admin, channel=Channel.ADMIN, actor=admin_user, reason="Left the company"
        )

    exported = json.loads(agent_client.get(url(consumer, "history.json")).content)
    assert exported["events"][0]["acted_by_email"] == staff_admin.email


def test_superseded_is_not_said_applied_while_the_newer_change_fails(
    agent_client, policy, consumer, settings
):
    settings.CONSENT_SINKS = {"redis": {}}
    older = services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    newer = services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    # As a drain leaves them (consent/outbox.py marks the older superseded before sending the
    # newer), when the sink then refuses the newer one.
    Delivery.objects.filter(event=older).update(state=State.SUPERSEDED)
    Delivery.objects.filter(event=newer).update(state=State.DEAD, attempts=12, last_error="down")

    page = agent_client.get(url(consumer)).content.decode()

    assert "a newer change was applied instead" not in page


def test_a_choice_carried_by_a_later_plan_change_is_not_said_unapplied(
    client, policy, consumer, admin_user, settings
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.user_change_plan(
        user=consumer, plan=User.Plan.MAX, channel=Channel.ADMIN, actor=admin_user, reason="Up"
    )
    for sink in settings.CONSENT_SINKS:
        outbox_drain(sink)
    assert Delivery.objects.filter(state=State.PENDING).count() == 0

    client.force_login(consumer)
    page = client.get("/settings/privacy/").content.decode()

    assert "Applied to 0 of" not in page
    total = len(settings.CONSENT_SINKS)
    assert f"Applied to {total} of {total} systems that act on this choice." in page


def test_a_pruned_superseded_change_is_not_said_sent(agent_client, policy, consumer, settings):
    start = timezone.now() - timedelta(days=30)
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=start)
    services.consent_change(
        user=consumer, allowed=False, channel=Channel.SETTINGS, now=start + timedelta(minutes=1)
    )
    for sink in settings.CONSENT_SINKS:
        outbox_drain(sink)  # the first is superseded, never sent
    outbox_prune()

    page = agent_client.get(url(consumer, "?kind=decision&before=2")).content.decode()

    assert "#1" in page
    assert "Sent to the downstream stores;" not in page  # perhaps never sent: it may be either
    assert "Sent to the downstream stores, or skipped there for a newer change" in page


def test_reading_a_users_audit_chain_is_recorded(agent_client, policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    response = agent_client.get(url(consumer, "audit/"))

    assert consumer.email in response.content.decode()
    record = AccessRecord.objects.get(subject_id=consumer.subject_id)
    assert record.detail == "audit chain"
    # Loaded into the user's page, which records the look itself: not twice.
    agent_client.get(url(consumer, "audit/"), headers={"HX-Request": "true"})
    assert AccessRecord.objects.filter(subject_id=consumer.subject_id).count() == 1


def test_a_chain_cut_at_its_end_is_not_called_intact(agent_client, policy, consumer):
    for n in range(3):
        services.consent_change(user=consumer, allowed=n % 2 == 0, channel=Channel.SETTINGS)
    with pgtrigger.ignore("consent.ConsentEvent:append_only"):
        last = ConsentEvent.objects.get(subject_id=consumer.subject_id, number=3)
        Delivery.objects.filter(event=last).delete()
        last.delete()

    page = agent_client.get(url(consumer, "audit/")).content.decode()

    assert "This user's chain is intact." not in page
    said = (
        "Event number 2 fails the check: the chain ends here, yet event 3 is the newest on record"
    )
    assert said in page


def test_events_written_after_the_record_was_read_are_no_break(policy, consumer):
    for n in range(3):
        services.consent_change(user=consumer, allowed=n % 2 == 0, channel=Channel.SETTINGS)
    second = ConsentEvent.objects.get(subject_id=consumer.subject_id, number=2)
    # The record as read just before the third change committed.
    TrainingConsent.objects.filter(user=consumer).update(head_number=2, head_hash=second.hash)

    assert audit_first_break(subject_id=consumer.subject_id) is None


def _choice_then_new_terms_in_force_two_hours_ago(consumer):
    services.consent_change(
        user=consumer,
        allowed=True,
        channel=Channel.SETTINGS,
        now=timezone.now() - timedelta(hours=3),
    )
    return policies.policy_publish(
        title="Choose again",
        text="Choose again.",
        effective_at=timezone.now() - timedelta(hours=2),
        decision_deadline=timezone.now() + timedelta(days=30),
        defer_for=timedelta(days=1),
        now=timezone.now() - timedelta(hours=2),
    )


def test_a_choice_ended_by_terms_in_force_is_not_said_to_allow(agent_client, policy, consumer):
    _choice_then_new_terms_in_force_two_hours_ago(consumer)

    page = agent_client.get(url(consumer)).content.decode()

    assert "Allows training" not in page  # it ended two hours ago; eligibility says so
    assert "(training not allowed)" in page  # and its retention is the declined one's


def test_the_expiry_says_when_the_choice_ended(policy, consumer):
    new = _choice_then_new_terms_in_force_two_hours_ago(consumer)

    services.consent_expire_for_new_terms()  # recorded when it runs, saying when it happened

    expired = ConsentEvent.objects.get(subject_id=consumer.subject_id, kind="choice_expired")
    assert f"came into force on {new.in_force_from:%Y-%m-%d %H:%M:%S} UTC" in expired.reason
    assert expired.reason.endswith("the choice ended then.")


def test_not_now_to_older_terms_is_not_said_of_the_current_ones(agent_client, policy, consumer):
    services.consent_defer(user=consumer)  # "Not now" to version 1, for a day
    publish("Urgent", decision_deadline_in=timedelta(hours=2))

    page = agent_client.get(url(consumer)).content.decode()

    # The user never saw version 2, whose deadline is in two hours: they said nothing to it.
    assert "said “Not now” until" not in page


def test_new_terms_are_shown_despite_a_not_now_to_older_ones(policy, consumer):
    from consent.selectors import prompt_for

    services.consent_defer(user=consumer)
    publish("Urgent", decision_deadline_in=timedelta(hours=2))

    assert prompt_for(consumer).show


def test_the_settings_page_that_asks_for_a_choice_shows_the_terms(client, policy, consumer):
    client.force_login(consumer)

    page = client.get("/settings/privacy/").content.decode()

    assert "Save my choice" in page  # it asks, and a choice here is recorded under version 1
    assert policy.title in page or f"/help/privacy/terms/{policy.version}/" in page


def test_a_choice_made_on_the_settings_page_has_a_record_of_what_was_shown(
    client, policy, consumer
):
    client.force_login(consumer)
    client.get("/settings/privacy/")
    client.post("/settings/privacy/choice/", {"policy_version": policy.version, "allowed": "on"})

    kinds = list(
        ConsentEvent.objects.filter(subject_id=consumer.subject_id).values_list("kind", flat=True)
    )
    assert "decision" in kinds
    assert "notice_served" in kinds


def test_the_whole_log_verdict_does_not_vouch_for_events_written_after_it(
    agent_client, policy, consumer
):
    from consent.audit import audit_checkpoint, audit_verify_and_record

    someone = UserFactory(plan=User.Plan.PRO)
    services.consent_change(user=someone, allowed=False, channel=Channel.SETTINGS)
    audit_checkpoint()
    verification = audit_verify_and_record()
    assert verification.verdict == "intact"
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)  # after it

    page = agent_client.get(url(consumer, "audit/")).content.decode()

    assert "agreed with its signed checkpoints when last checked" in page
    assert "0 written since" not in page
    assert "Events written after that are checked at the next hourly check." in page
