from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import DataError
from django.utils import timezone

from accounts.models import User
from consent import policies, services
from consent.audit import audit_first_break
from consent.changes import change_for
from consent.exceptions import ChoiceMade, ConsentError, ConsentThrottled
from consent.metadata import RequestMeta
from consent.models import ConsentEvent, ConsentState, Delivery, TrainingConsent
from consent.selectors import consent_for, prompt_for
from consent.services import Channel
from tests.factories import UserFactory, terms_published

pytestmark = pytest.mark.django_db


def events_of(user: User) -> list[ConsentEvent]:
    return list(ConsentEvent.objects.filter(subject_id=user.subject_id).order_by("number"))


def test_a_new_user_is_undecided_and_asked(policy, consumer):
    assert consent_for(consumer).state == ConsentState.UNDECIDED
    assert prompt_for(consumer).show


def test_deciding_in_the_popup_records_the_policy_and_the_default_shown(policy, consumer):
    event = services.consent_change(
        user=consumer, allowed=False, channel=Channel.POPUP, shown_default=True
    )

    consent = TrainingConsent.objects.get(user=consumer)
    assert consent.state == ConsentState.DECLINED
    assert consent.policy == policy
    assert consent.head_number == 1
    assert event is not None
    assert (event.kind, event.before, event.after) == ("decision", "undecided", "declined")
    assert event.shown_default is True
    assert event.actor_role == ConsentEvent.Role.USER
    assert not prompt_for(consumer).show


def test_changing_in_settings_flips_the_state_and_numbers_events(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    assert [(e.number, e.before, e.after) for e in events_of(consumer)] == [
        (1, "undecided", "allowed"),
        (2, "allowed", "declined"),
    ]
    assert consent_for(consumer).state == ConsentState.DECLINED


def test_saving_the_same_value_records_nothing(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    again = services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    assert again is None
    assert len(events_of(consumer)) == 1


@pytest.mark.parametrize("bad", ["on", 1, None, "true"])
def test_a_value_other_than_a_boolean_is_rejected_and_writes_nothing(policy, consumer, bad):
    with pytest.raises(ConsentError):
        services.consent_change(user=consumer, allowed=bad, channel=Channel.SETTINGS)

    assert events_of(consumer) == []
    assert not TrainingConsent.objects.filter(user=consumer, head_number__gt=0).exists()


def test_an_unknown_channel_is_rejected(policy, consumer):
    with pytest.raises(ConsentError):
        services.consent_change(user=consumer, allowed=True, channel="carrier-pigeon")
    assert events_of(consumer) == []


def test_a_stale_policy_version_is_rejected(policy, consumer):
    with pytest.raises(ConsentError, match="not the current one"):
        services.consent_change(
            user=consumer, allowed=True, channel=Channel.SETTINGS, policy_version=policy.version + 1
        )
    assert events_of(consumer) == []


def test_nothing_can_be_decided_before_a_policy_is_published(consumer):
    with pytest.raises(ConsentError, match="No consent policy"):
        services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)


def test_a_popup_decision_must_say_which_default_was_shown(policy, consumer):
    with pytest.raises(ConsentError):
        services.consent_change(user=consumer, allowed=True, channel=Channel.POPUP)
    assert events_of(consumer) == []


def test_commercial_users_cannot_decide_defer_or_be_prompted(policy, commercial):
    with pytest.raises(ConsentError, match="commercial"):
        services.consent_change(user=commercial, allowed=True, channel=Channel.SETTINGS)
    with pytest.raises(ConsentError, match="commercial"):
        services.consent_defer(user=commercial)
    with pytest.raises(ConsentError, match="commercial"):
        services.notice_record_served(user=commercial)

    assert events_of(commercial) == []
    assert not prompt_for(commercial).show


def test_another_user_cannot_act_on_the_users_channels(policy, consumer):
    other = User.objects.create_user("other@example.com", "a-long-password-123")
    with pytest.raises(ConsentError, match="Only the user"):
        services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, actor=other)
    assert events_of(consumer) == []


def test_support_changes_need_the_role_a_reason_and_a_reference(policy, consumer, support_agent):
    with pytest.raises(ConsentError, match="reason and a reference"):
        services.consent_change(
            user=consumer, allowed=False, channel=Channel.SUPPORT, actor=support_agent, reason="x"
        )
    stranger = User.objects.create_user("stranger@example.com", "a-long-password-123")
    with pytest.raises(ConsentError, match="support agent"):
        services.consent_change(
            user=consumer,
            allowed=False,
            channel=Channel.SUPPORT,
            actor=stranger,
            reason="asked",
            reference="T-1",
        )
    assert events_of(consumer) == []

    event = services.consent_change(
        user=consumer,
        allowed=False,
        channel=Channel.SUPPORT,
        actor=support_agent,
        reason="User wrote in to opt out",
        reference="T-42",
    )

    assert event is not None
    assert event.actor_role == ConsentEvent.Role.SUPPORT
    assert event.actor_subject_id == support_agent.subject_id
    assert (event.reason, event.reference) == ("User wrote in to opt out", "T-42")


def test_not_now_hides_the_popup_for_the_policy_interval(policy, consumer):
    now = timezone.now()

    services.consent_defer(user=consumer, now=now)

    assert not prompt_for(consumer, now=now + timedelta(hours=23)).show
    assert prompt_for(consumer, now=now + timedelta(hours=25)).show
    assert consent_for(consumer).state == ConsentState.UNDECIDED
    assert [e.kind for e in events_of(consumer)] == ["deferred"]


def test_a_second_not_now_while_deferred_records_nothing(policy, consumer):
    services.consent_defer(user=consumer)
    assert services.consent_defer(user=consumer) is None
    assert len(events_of(consumer)) == 1


def test_not_now_is_refused_after_the_deadline_and_the_prompt_blocks(policy, consumer):
    after_deadline = policy.decision_deadline + timedelta(minutes=1)

    with pytest.raises(ConsentError, match="deadline"):
        services.consent_defer(user=consumer, now=after_deadline)

    prompt = prompt_for(consumer, now=after_deadline)
    assert prompt.show and prompt.blocking and not prompt.can_defer
    assert events_of(consumer) == []


def test_a_deferral_never_reaches_past_the_deadline(policy, consumer):
    near_deadline = policy.decision_deadline - timedelta(hours=1)

    services.consent_defer(user=consumer, now=near_deadline)

    assert consent_for(consumer).deferred_until == policy.decision_deadline


def test_deciding_after_the_deadline_unblocks_the_app(policy, consumer):
    after_deadline = policy.decision_deadline + timedelta(days=1)

    services.consent_change(
        user=consumer, allowed=False, channel=Channel.POPUP, shown_default=True, now=after_deadline
    )

    assert not prompt_for(consumer, now=after_deadline).show


def test_there_is_nothing_to_defer_once_decided(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    with pytest.raises(ConsentError, match="no pending choice"):
        services.consent_defer(user=consumer)


def test_the_served_notice_is_recorded_once_per_policy_version(policy, consumer):
    first = services.notice_record_served(user=consumer)
    second = services.notice_record_served(user=consumer)

    assert first is not None
    assert first.shown_default is True
    assert second is None


def test_gpc_turns_the_shown_default_off_and_is_recorded_once(policy, consumer):
    meta = RequestMeta(ip_prefix="203.0.113.0/24", user_agent="test", gpc=True)

    notice = services.notice_record_served(user=consumer, meta=meta)
    signal = services.gpc_record_signal(user=consumer, meta=meta)

    assert notice is not None and notice.shown_default is False
    assert signal is not None and signal.channel == Channel.GPC and signal.gpc
    assert services.gpc_record_signal(user=consumer, meta=meta) is None
    assert consent_for(consumer).state == ConsentState.UNDECIDED


def test_gpc_never_flips_an_explicit_choice_and_a_conflict_is_recorded(policy, consumer):
    gpc = RequestMeta(gpc=True)
    services.consent_change(
        user=consumer, allowed=True, channel=Channel.POPUP, shown_default=False, meta=gpc
    )

    services.gpc_record_signal(user=consumer, meta=gpc)

    assert consent_for(consumer).state == ConsentState.ALLOWED
    decision = events_of(consumer)[0]
    assert decision.gpc and decision.after == ConsentState.ALLOWED


def test_a_new_policy_asking_for_a_new_choice_reprompts_decided_users(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    now = timezone.now()
    new = policies.policy_publish(
        title="New terms",
        text="Again?",
        effective_at=now,
        decision_deadline=now + timedelta(days=10),
        requires_new_choice=True,
    )

    assert prompt_for(consumer).show
    confirmed = services.consent_change(
        user=consumer, allowed=True, channel=Channel.POPUP, shown_default=True
    )

    assert confirmed is not None and confirmed.policy == new
    assert not prompt_for(consumer).show


def test_a_new_policy_without_a_new_choice_keeps_the_decision(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    now = timezone.now()
    policies.policy_publish(
        title="Clarified terms",
        text="Same choice.",
        effective_at=now,
        decision_deadline=now + timedelta(days=10),
        requires_new_choice=False,
    )

    assert not prompt_for(consumer).show
    assert services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS) is None


def test_moving_to_a_commercial_plan_is_recorded(policy, consumer, admin_user):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    event = services.user_change_plan(
        user=consumer,
        plan=User.Plan.ENTERPRISE,
        channel=Channel.ADMIN,
        actor=admin_user,
        reason="Company contract",
    )

    consumer.refresh_from_db()
    assert consumer.plan == User.Plan.ENTERPRISE and not consumer.is_consumer
    assert event is not None and event.plan == User.Plan.ENTERPRISE
    assert event.actor_role == ConsentEvent.Role.ADMIN
    assert (
        services.user_change_plan(user=consumer, plan=User.Plan.ENTERPRISE, channel=Channel.SYSTEM)
        is None
    )


def test_an_unknown_plan_is_rejected(policy, consumer):
    with pytest.raises(ConsentError, match="Unknown plan"):
        services.user_change_plan(user=consumer, plan="platinum", channel=Channel.SYSTEM)
    consumer.refresh_from_db()
    assert consumer.plan == User.Plan.PRO
    assert events_of(consumer) == []


def test_deleting_an_account_keeps_the_events_under_the_pseudonymous_id(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    subject_id = consumer.subject_id

    services.account_delete(user=consumer, channel=Channel.SETTINGS)

    assert not User.objects.filter(subject_id=subject_id).exists()
    kinds = list(
        ConsentEvent.objects.filter(subject_id=subject_id)
        .order_by("number")
        .values_list("kind", flat=True)
    )
    assert kinds == ["decision", "account_deleted"]
    assert audit_first_break(subject_id=subject_id) is None


@pytest.mark.parametrize("late", ["change", "defer", "notice"])
def test_a_change_that_comes_after_the_account_was_deleted_is_refused(policy, consumer, late):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    request_user = User.objects.get(pk=consumer.pk)  # loaded by a request under way
    services.account_delete(user=consumer, channel=Channel.SETTINGS)

    with pytest.raises(ConsentError, match="account was deleted"):
        {
            "change": lambda: services.consent_change(
                user=request_user, allowed=False, channel=Channel.SETTINGS
            ),
            "defer": lambda: services.consent_defer(user=request_user),
            "notice": lambda: services.notice_record_served(user=request_user),
        }[late]()

    assert not TrainingConsent.objects.exists()
    kinds = ConsentEvent.objects.filter(subject_id=consumer.subject_id).values_list("kind")
    assert sorted(kind for (kind,) in kinds) == ["account_deleted", "decision"]


def test_every_event_chains_to_the_previous_one(policy, consumer):
    services.notice_record_served(user=consumer)
    services.consent_change(user=consumer, allowed=True, channel=Channel.POPUP, shown_default=True)
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    events = events_of(consumer)
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert audit_first_break() is None


def test_no_raw_ip_address_is_stored(policy, consumer, rf):
    request = rf.post("/", REMOTE_ADDR="198.51.100.77", HTTP_USER_AGENT="Browser/1.0")

    event = services.consent_change(
        user=consumer,
        allowed=True,
        channel=Channel.SETTINGS,
        meta=RequestMeta.from_request(request),
    )

    assert event is not None
    assert event.ip_prefix == "198.51.100.0/24"
    assert "198.51.100.77" not in str(ConsentEvent.objects.filter(pk=event.pk).values().get())


def test_policies_are_numbered_and_hashed(policy):
    assert policy.version == 1
    assert len(policy.content_hash) == 64
    with pytest.raises(ConsentError, match="deadline"):
        policies.policy_publish(
            title="t",
            text="x",
            effective_at=timezone.now(),
            decision_deadline=timezone.now() - timedelta(days=1),
        )


def test_a_change_is_five_statements_the_lock_included(
    policy, consumer, settings, django_assert_max_num_queries
):
    settings.CONSENT_SINKS = {"warehouse": {}, "redis": {}, "webhook": {}}
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    # Five, and the test's own savepoint and its release.
    with django_assert_max_num_queries(5 + 2) as captured:
        services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    statements = [q["sql"] for q in captured if "SAVEPOINT" not in q["sql"]]
    assert [sql.split()[0] for sql in statements] == [
        "SELECT",  # the current policy
        "SELECT",  # the user's consent row, locked, with the policy it was decided under
        "INSERT",  # the event
        "INSERT",  # its three deliveries
        "UPDATE",  # the row's new state and head
    ]
    assert statements[1].endswith('FOR UPDATE OF "consent_trainingconsent"')


def test_a_change_writes_its_event_deliveries_and_head_together(policy, consumer, settings):
    settings.CONSENT_SINKS = {"warehouse": {}, "redis": {}, "search": {}}
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    event = services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    assert event is not None
    stored = ConsentEvent.objects.get(pk=event.pk)
    assert (stored.number, stored.after, stored.hash) == (2, "declined", event.hash)
    deliveries = Delivery.objects.filter(event=stored).order_by("sink")
    assert [(d.sink, d.subject_id, d.event_number, d.state) for d in deliveries] == [
        ("redis", consumer.subject_id, 2, "pending"),
        ("search", consumer.subject_id, 2, "pending"),
        ("warehouse", consumer.subject_id, 2, "pending"),
    ]
    consent = TrainingConsent.objects.get(user=consumer)
    assert (consent.state, consent.head_number, consent.head_hash) == ("declined", 2, event.hash)
    assert (consent.policy_id, consent.decided_at) == (policy.pk, event.created_at)
    assert audit_first_break(subject_id=consumer.subject_id) is None


def test_a_first_change_creates_the_consent_row(policy, consumer):
    assert not TrainingConsent.objects.filter(user=consumer).exists()

    event = services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    assert event is not None and event.number == 1
    assert TrainingConsent.objects.get(user=consumer).head_hash == event.hash


RATE = (10, 60)  # a burst of 10, then one every 6 s


def flip(user: User, *, at, rate=RATE, channel=Channel.SETTINGS, **kwargs):
    """Change the user's setting to the other value, at that moment, under the rate."""
    allowed = consent_for(user).state != ConsentState.ALLOWED
    return services.consent_change(
        user=user, allowed=allowed, channel=channel, rate=rate, now=at, **kwargs
    )


def test_the_rate_allows_a_burst_then_one_change_per_interval(policy, consumer):
    start = timezone.now()
    for _ in range(10):
        assert flip(consumer, at=start) is not None

    with pytest.raises(ConsentThrottled) as refused:
        flip(consumer, at=start)
    assert refused.value.retry_after == 6

    assert flip(consumer, at=start + timedelta(seconds=6)) is not None
    with pytest.raises(ConsentThrottled) as refused:
        flip(consumer, at=start + timedelta(seconds=7))
    assert refused.value.retry_after == 5
    assert flip(consumer, at=start + timedelta(seconds=12)) is not None


def test_a_refused_change_writes_nothing(policy, consumer):
    start = timezone.now()
    for _ in range(2):
        flip(consumer, at=start, rate=(2, 60))
    before = TrainingConsent.objects.values().get(user=consumer)

    with pytest.raises(ConsentThrottled):
        flip(consumer, at=start + timedelta(seconds=10), rate=(2, 60))

    assert TrainingConsent.objects.values().get(user=consumer) == before
    assert len(events_of(consumer)) == 2
    assert Delivery.objects.filter(subject_id=consumer.subject_id).count() == 2 * len(
        django_settings.CONSENT_SINKS
    )


def test_the_rate_forgets_a_burst_after_a_quiet_period(policy, consumer):
    start = timezone.now()
    for _ in range(10):
        flip(consumer, at=start)

    later = start + timedelta(seconds=60)
    for _ in range(10):
        assert flip(consumer, at=later) is not None
    with pytest.raises(ConsentThrottled):
        flip(consumer, at=later)


def test_only_the_users_own_decisions_count_against_the_rate(policy, consumer, support_agent):
    now = timezone.now()
    for _ in range(2):
        flip(
            consumer,
            at=now,
            rate=(1, 60),
            channel=Channel.SUPPORT,
            actor=support_agent,
            reason="Asked by phone",
            reference="T-1",
        )

    # Support's two changes use up nothing of the user's allowance of one a minute.
    assert flip(consumer, at=now, rate=(1, 60)) is not None
    with pytest.raises(ConsentThrottled):
        flip(consumer, at=now, rate=(1, 60))
    assert consent_for(consumer).head_number == 3


def test_saving_the_same_value_at_the_limit_is_no_change_not_a_refusal(policy, consumer):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS, rate=(1, 60))

    again = services.consent_change(
        user=consumer, allowed=True, channel=Channel.SETTINGS, rate=(1, 60)
    )

    assert again is None


def test_a_long_value_is_refused_not_cut(policy, consumer, support_agent):
    # The reference column holds 100 characters; the hash would be of all 101.
    with pytest.raises(DataError):
        services.consent_change(
            user=consumer,
            allowed=True,
            channel=Channel.SUPPORT,
            actor=support_agent,
            reason="Asked by phone",
            reference="T" * 101,
        )

    assert not events_of(consumer)


def test_a_pop_up_choice_once_one_stands_is_refused_and_writes_nothing(policy, consumer):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    before = ConsentEvent.objects.count()

    with pytest.raises(ChoiceMade):
        services.consent_change(
            user=consumer, allowed=True, channel=Channel.POPUP, shown_default=True
        )

    assert ConsentEvent.objects.count() == before
    assert consent_for(consumer).state == ConsentState.DECLINED


@pytest.fixture
def staff_admin(db) -> User:
    return UserFactory(plan=User.Plan.TEAM, is_staff=True, email="admin2@example.com")


def test_a_plan_change_keeps_the_terms_the_choice_was_made_under(policy, consumer, admin_user):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    terms_published("Shorter retention", requires_new_choice=False, retention_days_allowed=100)

    event = services.user_change_plan(
        user=consumer, plan=User.Plan.MAX, channel=Channel.ADMIN, actor=admin_user, reason="Up"
    )

    change = change_for(event)
    assert change.allowed
    # The user agreed to version 1 (1825 days); version 2 did not ask them again.
    assert (change.policy_version, change.retention_days) == (1, 1825)


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

    page = agent_client.get(f"/support/users/{consumer.pk}/history.json")
    assert page.json()["events"][0]["acted_by_email"] == staff_admin.email
