"""Terms that ask for a new choice: old choices stand until they are in force, then expire."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.audit import audit_first_break
from consent.changes import change_for
from consent.models import ConsentEvent, ConsentState, Delivery
from consent.selectors import consent_for, prompt_for
from consent.services import Channel
from tests.conftest import is_eligible
from tests.factories import choice_then_terms_asking_again, terms_published

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])


def publish_new_terms():
    now = timezone.now()
    return policies.policy_publish(
        title="New terms",
        text="Choose again.",
        effective_at=now + timedelta(days=7),
        decision_deadline=now + timedelta(days=30),
        requires_new_choice=True,
    )


def test_old_choices_stand_until_the_new_terms_are_in_force(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    now = timezone.now()
    new = policies.policy_publish(
        title="New terms",
        text="Choose again.",
        effective_at=now + timedelta(days=7),
        decision_deadline=now + timedelta(days=30),
        requires_new_choice=True,
    )

    assert services.consent_expire_for_new_terms(now=now) == 0
    assert consent_for(consumer).state == ConsentState.ALLOWED
    assert prompt_for(consumer).show  # asked already, before the terms are in force

    in_force = new.effective_at + timedelta(minutes=1)
    assert services.consent_expire_for_new_terms(now=in_force) == 1

    consent = consent_for(consumer)
    assert (consent.state, consent.policy, consent.decided_at) == (
        ConsentState.UNDECIDED,
        None,
        None,
    )
    expired = ConsentEvent.objects.get(subject_id=consumer.subject_id, number=2)
    assert (expired.kind, expired.actor_role) == ("choice_expired", "system")
    assert not change_for(expired).allowed
    assert Delivery.objects.filter(event=expired, sink="warehouse").exists()
    assert not is_eligible(consumer, in_force + timedelta(minutes=1))
    assert audit_first_break() is None


def test_expiry_runs_once_and_spares_new_and_commercial_choices(policy, consumer):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    moved = User.objects.create_user("moved@example.com", "a-long-password-123", plan="pro")
    services.consent_change(user=moved, allowed=True, channel=Channel.SETTINGS)
    services.user_change_plan(user=moved, plan=User.Plan.TEAM, channel=Channel.SYSTEM)
    new_terms = publish_new_terms()
    rechosen = User.objects.create_user("again@example.com", "a-long-password-123", plan="max")
    services.consent_change(user=rechosen, allowed=True, channel=Channel.SETTINGS)  # under v2
    in_force = new_terms.effective_at + timedelta(minutes=1)

    assert services.consent_expire_for_new_terms(now=in_force) == 1
    assert services.consent_expire_for_new_terms(now=in_force) == 0
    assert consent_for(rechosen).state == ConsentState.ALLOWED
    assert not ConsentEvent.objects.filter(subject_id=moved.subject_id, kind="choice_expired")


def test_choosing_again_after_expiry_works(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    new_terms = publish_new_terms()
    in_force = new_terms.effective_at + timedelta(minutes=1)
    services.consent_expire_for_new_terms(now=in_force)

    event = services.consent_change(
        user=consumer, allowed=True, channel=Channel.POPUP, shown_default=True, now=in_force
    )

    assert event is not None and event.before == ConsentState.UNDECIDED
    assert is_eligible(consumer, in_force + timedelta(minutes=1))


def test_the_settings_page_says_an_expired_choice_ended_with_the_terms(policy, consumer, client):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    new = publish_new_terms()
    services.consent_expire_for_new_terms(now=new.effective_at + timedelta(minutes=1))
    client.force_login(consumer)

    page = client.get("/settings/privacy/").content.decode()

    assert "your earlier choice ended when the terms changed" in page


def test_back_to_a_consumer_plan_never_sends_allowed_for_an_expired_choice(
    policy, consumer, admin_user
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.user_change_plan(
        user=consumer, plan=User.Plan.TEAM, channel=Channel.ADMIN, actor=admin_user, reason="Team"
    )
    terms_published("Choose again")
    services.consent_expire_for_new_terms()  # the minute task, run once the terms are in force

    event = services.user_change_plan(
        user=consumer, plan=User.Plan.PRO, channel=Channel.ADMIN, actor=admin_user, reason="Pro"
    )

    assert not change_for(event).allowed


def test_the_expiry_says_when_the_choice_ended(policy, consumer):
    new = choice_then_terms_asking_again(consumer)

    services.consent_expire_for_new_terms()  # recorded when it runs, saying when it happened

    expired = ConsentEvent.objects.get(subject_id=consumer.subject_id, kind="choice_expired")
    assert f"came into force on {new.in_force_from:%Y-%m-%d %H:%M:%S} UTC" in expired.reason
    assert expired.reason.endswith("the choice ended then.")


def test_new_terms_are_shown_despite_a_not_now_to_older_ones(policy, consumer):
    services.consent_defer(user=consumer)
    terms_published("Urgent", decision_deadline_in=timedelta(hours=2))

    assert prompt_for(consumer).show
