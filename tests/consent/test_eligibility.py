"""Eligibility for training, point in time: what the API answers for (subject, moment) pairs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from consent import eligibility, policies, services
from consent.eligibility import subjects_intervals
from consent.services import Channel
from tests.conftest import eligible_answers, is_eligible
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])


def test_eligibility_follows_the_history_before_between_and_after_changes(policy, consumer):
    t0 = timezone.now()
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=t0)
    services.consent_change(
        user=consumer, allowed=False, channel=Channel.SETTINGS, now=t0 + timedelta(hours=1)
    )
    services.consent_change(
        user=consumer, allowed=True, channel=Channel.SETTINGS, now=t0 + timedelta(hours=2)
    )

    moments = [
        t0 - timedelta(minutes=1),  # before any decision: undecided
        t0,  # the decision itself
        t0 + timedelta(minutes=30),
        t0 + timedelta(minutes=90),  # declined
        t0 + timedelta(hours=3),  # allowed again
    ]
    assert [is_eligible(consumer, at) for at in moments] == [
        False,
        True,
        True,
        False,
        True,
    ]


def test_an_undecided_or_unknown_subject_is_never_eligible(policy, consumer):
    assert not is_eligible(consumer, timezone.now())
    other = User(email="ghost@example.com")
    assert not is_eligible(other, timezone.now())


def test_a_commercial_plan_ends_eligibility_from_the_move(policy, consumer):
    t0 = timezone.now()
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=t0)
    services.user_change_plan(
        user=consumer, plan=User.Plan.TEAM, channel=Channel.SYSTEM, now=t0 + timedelta(hours=1)
    )

    assert is_eligible(consumer, t0 + timedelta(minutes=30))
    assert not is_eligible(consumer, t0 + timedelta(hours=2))


def test_nothing_is_eligible_before_the_policy_is_in_force(consumer):
    now = timezone.now()
    policies.policy_publish(
        title="Future terms",
        text="From next week.",
        effective_at=now + timedelta(days=7),
        decision_deadline=now + timedelta(days=30),
    )
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=now)

    assert not is_eligible(consumer, now + timedelta(days=1))
    assert is_eligible(consumer, now + timedelta(days=8))


def test_a_policy_asking_for_a_new_choice_suspends_older_decisions(policy, consumer):
    t0 = timezone.now()
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=t0)
    policies.policy_publish(
        title="New terms",
        text="Choose again.",
        effective_at=t0 + timedelta(days=1),
        decision_deadline=t0 + timedelta(days=30),
        requires_new_choice=True,
        now=t0,
    )

    assert is_eligible(consumer, t0 + timedelta(hours=12))
    assert not is_eligible(consumer, t0 + timedelta(days=2))
    services.consent_change(
        user=consumer,
        allowed=True,
        channel=Channel.POPUP,
        shown_default=True,
        now=t0 + timedelta(days=3),
    )
    assert is_eligible(consumer, t0 + timedelta(days=4))


def test_a_deleted_account_is_not_eligible_afterwards(policy, consumer):
    t0 = timezone.now()
    subject_id = consumer.subject_id
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, now=t0)
    services.account_delete(user=consumer, channel=Channel.SETTINGS, now=t0 + timedelta(hours=1))

    soon, later = t0 + timedelta(minutes=1), t0 + timedelta(hours=2)
    assert eligible_answers([(subject_id, soon)], as_of=soon) == [True]
    assert eligible_answers([(subject_id, soon)], as_of=later) == [False]  # deleted by then


def test_intervals_read_a_few_subjects_at_a_time_are_the_same(policy, monkeypatch):
    users = UserFactory.create_batch(5)
    t0 = timezone.now()
    for step, user in enumerate(users):
        for hour in range(step + 1):  # 1 to 5 decisions, on and off
            at = t0 + timedelta(hours=hour)
            services.consent_change(
                user=user, allowed=hour % 2 == 0, channel=Channel.SETTINGS, now=at
            )
    up_to = {user.subject_id: 3 for user in users}
    as_of = t0 + timedelta(hours=5)
    pairs = [(user.subject_id, t0 + timedelta(minutes=m)) for m in (30, 150) for user in users]

    whole = subjects_intervals(up_to)
    answers = eligible_answers(pairs, as_of=as_of)
    monkeypatch.setattr(eligibility, "SUBJECTS_A_BATCH", 2)
    monkeypatch.setattr(eligibility, "SUBJECTS_A_QUERY", 2)

    assert subjects_intervals(up_to) == whole
    assert [len(whole[user.subject_id]) for user in users] == [1, 1, 2, 2, 2]
    assert eligible_answers(pairs, as_of=as_of) == answers
    assert answers == [True, False, True, False, True] * 2
