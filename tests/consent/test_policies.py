"""The life of a policy: a draft, published once, its deadline moved later and never earlier."""

from datetime import timedelta

import pytest
from django.utils import timezone

from consent import policies, services
from consent.eligibility import Terms
from consent.exceptions import ConsentError
from consent.models import ConsentPolicy, PolicyEvent
from consent.selectors import policy_current, prompt_for
from consent.services import Channel
from tests.conftest import is_eligible

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])


def new_draft(**overrides) -> ConsentPolicy:
    now = timezone.now()
    fields = {
        "title": "  Updated terms ",
        "text": " Train on your chats? ",
        "effective_at": now,
        "decision_deadline": now + timedelta(days=30),
        "defer_for": timedelta(days=1),
    } | overrides
    return policies.policy_draft_save(policy=ConsentPolicy(**fields))


def test_a_draft_takes_the_next_number_and_is_asked_about_by_nobody(policy, consumer):
    draft = new_draft()

    assert draft.version == 2
    assert (draft.title, draft.text, draft.content_hash) == (
        "Updated terms",
        "Train on your chats?",
        "",
    )
    assert not draft.is_published
    assert policy_current() == policy
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    assert not prompt_for(consumer).show
    assert is_eligible(consumer, timezone.now())


def test_one_draft_at_a_time_and_nothing_published_past_it(policy):
    new_draft()

    with pytest.raises(ConsentError, match="Draft v2 is waiting"):
        new_draft(title="Second draft")
    with pytest.raises(ConsentError, match="Draft v2 is waiting"):
        policies.policy_publish(
            title="Direct",
            text="Published at once",
            effective_at=timezone.now(),
            decision_deadline=timezone.now() + timedelta(days=1),
        )


def test_publishing_a_draft_fixes_it_and_records_who(policy, admin_user):
    draft = new_draft()

    published = policies.policy_draft_publish(policy=draft, actor=admin_user)

    assert published.is_published
    assert published.content_hash == policies.policy_content_hash(
        title="Updated terms", text="Train on your chats?"
    )
    assert policy_current() == published
    event = PolicyEvent.objects.get(policy=published)
    assert (event.kind, event.actor, event.deadline_after) == (
        "published",
        admin_user,
        published.decision_deadline,
    )
    published.text = "Other words"
    with pytest.raises(ConsentError, match="cannot be edited"):
        policies.policy_draft_save(policy=published)
    with pytest.raises(ConsentError, match="already published"):
        policies.policy_draft_publish(policy=published, actor=admin_user)


def test_only_an_admin_publishes(policy, consumer, support_agent):
    draft = new_draft()

    for actor in (consumer, support_agent):
        with pytest.raises(ConsentError, match="Only an admin"):
            policies.policy_draft_publish(policy=draft, actor=actor)
    draft.refresh_from_db()
    assert not draft.is_published


def test_a_draft_past_its_deadline_or_with_bad_terms_is_not_published(policy, admin_user):
    now = timezone.now()
    late = new_draft(effective_at=now - timedelta(days=3), decision_deadline=now - timedelta(1))

    with pytest.raises(ConsentError, match="deadline has passed"):
        policies.policy_draft_publish(policy=late, actor=admin_user)
    late.title = " "
    with pytest.raises(ConsentError, match="title and a text"):
        policies.policy_draft_save(policy=late)
    late.title, late.retention_days_declined = "Fine", 0
    with pytest.raises(ConsentError, match="Retention is 1 to 36500 days"):
        policies.policy_draft_save(policy=late)
    late.retention_days_declined, late.defer_for = 30, timedelta(0)
    with pytest.raises(ConsentError, match="a minute to a year"):
        policies.policy_draft_save(policy=late)


def test_publishing_at_once_is_recorded_without_an_actor(policy):
    event = PolicyEvent.objects.get(policy=policy)

    assert (event.kind, event.actor, event.created_at) == ("published", None, policy.published_at)


def test_a_deadline_moves_later_with_a_reason_and_never_earlier(policy, admin_user):
    before = policy.decision_deadline
    later = before + timedelta(days=7)

    event = policies.policy_deadline_extend(
        policy=policy, decision_deadline=later, actor=admin_user, reason=" Outage "
    )

    policy.refresh_from_db()
    assert policy.decision_deadline == later
    assert (event.deadline_before, event.deadline_after, event.reason) == (before, later, "Outage")
    for earlier in (later, later - timedelta(seconds=1), before):
        with pytest.raises(ConsentError, match="only move later"):
            policies.policy_deadline_extend(
                policy=policy, decision_deadline=earlier, actor=admin_user, reason="Oops"
            )
    with pytest.raises(ConsentError, match="needs a reason"):
        policies.policy_deadline_extend(
            policy=policy, decision_deadline=later + timedelta(1), actor=admin_user, reason=" "
        )
    assert PolicyEvent.objects.filter(kind="deadline_extended").count() == 1


def test_extending_a_passed_deadline_gives_not_now_back(consumer, admin_user):
    now = timezone.now()
    policy = policies.policy_publish(
        title="Passed",
        text="Choose.",
        effective_at=now - timedelta(days=40),
        decision_deadline=now - timedelta(days=1),
        now=now - timedelta(days=40),
    )
    assert prompt_for(consumer).blocking

    policies.policy_deadline_extend(
        policy=policy,
        decision_deadline=now + timedelta(days=14),
        actor=admin_user,
        reason="Users were locked out by a bug",
    )

    prompt = prompt_for(consumer)
    assert prompt.show and prompt.can_defer and not prompt.blocking


def test_a_draft_whose_effective_date_passed_is_in_force_from_its_publication(
    policy, admin_user, consumer
):
    now = timezone.now()
    draft = new_draft(effective_at=now - timedelta(days=6))

    published = policies.policy_draft_publish(policy=draft, actor=admin_user, now=now)

    assert published.in_force_from == now == published.published_at
    assert published.effective_at == now - timedelta(days=6)  # as the admin wrote it
    assert (published.version, now, True) in Terms.published().in_force  # as eligibility reads it
    ahead = new_draft(effective_at=now + timedelta(days=6))
    in_force = policies.policy_draft_publish(policy=ahead, actor=admin_user, now=now).in_force_from
    assert in_force == now + timedelta(days=6)
