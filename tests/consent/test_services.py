from datetime import timedelta

import pytest
from django.db import DataError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from consent import services
from consent.audit import audit_first_break
from consent.metadata import RequestMeta
from consent.models import ConsentEvent, ConsentPolicy, ConsentState, Delivery, TrainingConsent
from consent.outbox import outbox_deliveries
from consent.selectors import consent_and_policy, consent_for, prompt_for
from consent.services import Channel, ConsentError
from consent.sql import change_save

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
    assert consent.version == 1
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
    assert not TrainingConsent.objects.filter(user=consumer, version__gt=0).exists()


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
    new = services.policy_publish(
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
    services.policy_publish(
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
        services.policy_publish(
            title="t",
            text="x",
            effective_at=timezone.now(),
            decision_deadline=timezone.now() - timedelta(days=1),
        )


def test_a_change_is_one_read_and_one_write_of_event_deliveries_and_state(
    policy, consumer, settings
):
    settings.CONSENT_SINKS = {"warehouse": {}, "redis": {}}
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    with CaptureQueriesContext(connection) as queries:
        event = services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    statements = [
        q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]
    ]  # the test's transaction
    assert len(statements) == 2  # the lock, then one write
    assert event is not None
    stored = ConsentEvent.objects.get(pk=event.pk)
    assert (stored.number, stored.after, stored.hash) == (2, "declined", event.hash)
    deliveries = Delivery.objects.filter(event=stored).order_by("sink")
    assert [(d.sink, d.version, d.state) for d in deliveries] == [
        ("redis", 2, "pending"),
        ("warehouse", 2, "pending"),
    ]
    consent = TrainingConsent.objects.get(user=consumer)
    assert (consent.state, consent.version, consent.head_hash) == ("declined", 2, event.hash)
    assert audit_first_break(subject_id=consumer.subject_id) is None


def decision_from(
    consent: TrainingConsent, current: ConsentPolicy | None, *, allowed: bool
) -> ConsentEvent:
    """Return the user's change of the setting made from this read, not yet saved."""
    event = services._decision(
        consent,
        current,
        allowed=allowed,
        channel=Channel.SETTINGS,
        role=ConsentEvent.Role.USER,
        actor=None,
        policy_version=None,
        shown_default=None,
        reason="",
        reference="",
        meta=RequestMeta(),
        now=None,
    )
    assert event is not None
    return event


def test_a_change_made_from_a_stale_read_is_not_written(policy, consumer, settings):
    settings.CONSENT_SINKS = {"warehouse": {}}
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    consent, current = consent_and_policy(consumer)
    read_version = consent.version
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    event = decision_from(consent, current, allowed=False)

    written = change_save(
        event,
        outbox_deliveries(event),
        consent,
        services.CONSENT_FIELDS,
        read_version=read_version,
    )

    assert written is False
    assert event.pk is None
    assert [(e.number, e.after) for e in events_of(consumer)] == [(1, "allowed"), (2, "declined")]
    assert Delivery.objects.count() == 2
    assert TrainingConsent.objects.get(user=consumer).version == 2


def test_each_delivery_written_with_a_change_gets_its_own_key(policy, consumer, settings):
    settings.CONSENT_SINKS = {"warehouse": {}, "redis": {}, "search": {}}
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    consent, current = consent_and_policy(consumer)
    event = decision_from(consent, current, allowed=False)
    deliveries = outbox_deliveries(event)

    written = change_save(
        event, deliveries, consent, services.CONSENT_FIELDS, read_version=event.number - 1
    )

    assert written is True
    stored = Delivery.objects.in_bulk([delivery.pk for delivery in deliveries])
    assert [(stored[d.pk].sink, stored[d.pk].event_id) for d in deliveries] == [
        ("warehouse", event.pk),
        ("redis", event.pk),
        ("search", event.pk),
    ]
    assert {(d.version, d.subject_id, d.state) for d in stored.values()} == {
        (2, consumer.subject_id, "pending")
    }


RATE = (10, 60)


def settings_change(user: User, *, allowed: bool, seen=None, rate=RATE, **kwargs):
    """Change the setting as the settings page does: its policy version, the rate, its claim."""
    return services.consent_change(
        user=user,
        allowed=allowed,
        channel=Channel.SETTINGS,
        policy_version=1,
        rate=rate,
        seen=seen,
        **kwargs,
    )


def statements_of(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]


def test_a_change_made_from_what_the_page_showed_is_one_statement(policy, consumer, settings):
    settings.CONSENT_SINKS = {"warehouse": {}, "redis": {}}
    first = settings_change(consumer, allowed=True)
    assert first is not None
    seen = services.Seen.of(consent_for(consumer))
    assert seen == services.Seen(1, "allowed", first.hash)

    with CaptureQueriesContext(connection) as queries:
        event = settings_change(consumer, allowed=False, seen=seen)

    assert len(statements_of(queries)) == 1  # no read: only the guarded write
    assert event is not None
    stored = ConsentEvent.objects.get(pk=event.pk)
    assert (stored.number, stored.before, stored.after) == (2, "allowed", "declined")
    assert (stored.prev_hash, stored.policy_id, stored.hash) == (first.hash, policy.pk, event.hash)
    assert Delivery.objects.filter(event=stored).count() == 2
    consent = TrainingConsent.objects.get(user=consumer)
    assert (consent.state, consent.version, consent.head_hash) == ("declined", 2, event.hash)
    assert (consent.policy_id, consent.decided_at) == (policy.pk, event.created_at)
    assert audit_first_break(subject_id=consumer.subject_id) is None


def test_a_stale_claim_is_not_written_and_the_change_is_made_from_a_read(policy, consumer):
    settings_change(consumer, allowed=True)
    stale = services.Seen.of(consent_for(consumer))
    settings_change(consumer, allowed=False)  # in another tab
    settings_change(consumer, allowed=True)

    with CaptureQueriesContext(connection) as queries:
        event = settings_change(consumer, allowed=False, seen=stale)

    assert len(statements_of(queries)) == 3  # the claimed write, the read, the write
    assert event is not None
    assert [(e.number, e.before, e.after) for e in events_of(consumer)][-1] == (
        4,
        "allowed",
        "declined",
    )
    assert audit_first_break(subject_id=consumer.subject_id) is None


@pytest.mark.parametrize(
    "forge",
    [
        lambda seen: services.Seen(seen.version, seen.state, "f" * 64),
        lambda seen: services.Seen(seen.version + 1, seen.state, seen.head_hash),
        lambda seen: services.Seen(seen.version - 1, seen.state, seen.head_hash),
        lambda seen: services.Seen(seen.version, "undecided", seen.head_hash),
    ],
    ids=["head", "version-ahead", "version-behind", "state"],
)
def test_a_forged_claim_puts_no_wrong_link_in_the_chain(policy, consumer, forge):
    settings_change(consumer, allowed=True)
    settings_change(consumer, allowed=False)
    forged = forge(services.Seen.of(consent_for(consumer)))

    with CaptureQueriesContext(connection) as queries:
        event = settings_change(consumer, allowed=True, seen=forged)

    assert len(statements_of(queries)) == 3  # the claimed write found no row; read; write
    assert event is not None
    assert (event.number, event.before, event.after) == (3, "declined", "allowed")
    assert consent_for(consumer).head_hash == event.hash
    assert audit_first_break(subject_id=consumer.subject_id) is None


def test_a_claim_of_the_wrong_state_cannot_turn_a_change_into_a_no_op(policy, consumer):
    settings_change(consumer, allowed=True)
    real = services.Seen.of(consent_for(consumer))

    # The claim says "allowed": choosing "allowed" is left to a read, which finds a change.
    settings_change(consumer, allowed=False)
    event = settings_change(consumer, allowed=True, seen=real)

    assert event is not None and event.after == "allowed"
    assert consent_for(consumer).state == ConsentState.ALLOWED


def test_a_claimed_change_over_the_rate_is_refused_and_writes_nothing(policy, consumer):
    for allowed in (True, False):
        services.consent_change(
            user=consumer, allowed=allowed, channel=Channel.SETTINGS, rate=(2, 60)
        )
    seen = services.Seen.of(consent_for(consumer))

    with pytest.raises(services.ConsentThrottled) as refused:
        settings_change(consumer, allowed=True, seen=seen, rate=(2, 60))

    assert 0 < refused.value.retry_after <= 60
    assert len(events_of(consumer)) == 2
    assert consent_for(consumer).version == 2


def test_a_claimed_change_counts_only_the_decisions_of_the_period(policy, consumer):
    now = timezone.now()
    for minutes, allowed in [(5, True), (3, False)]:
        settings_change(consumer, allowed=allowed, now=now - timedelta(minutes=minutes))
    seen = services.Seen.of(consent_for(consumer))

    with CaptureQueriesContext(connection) as queries:
        event = settings_change(consumer, allowed=True, seen=seen, rate=(2, 120))

    assert len(statements_of(queries)) == 1
    assert event is not None and event.number == 3


def test_a_change_without_a_rate_is_made_from_a_claim_too(policy, consumer):
    settings_change(consumer, allowed=True)
    seen = services.Seen.of(consent_for(consumer))

    with CaptureQueriesContext(connection) as queries:
        event = services.consent_change(
            user=consumer, allowed=False, channel=Channel.API, policy_version=1, seen=seen
        )

    assert len(statements_of(queries)) == 1
    assert event is not None and (event.number, event.channel) == (2, "api")
    assert audit_first_break(subject_id=consumer.subject_id) is None


def test_another_users_claim_changes_only_the_users_own_row(policy, consumer):
    other = User.objects.create_user("other@example.com", "x-long-password-1", plan="pro")
    settings_change(other, allowed=True)
    settings_change(consumer, allowed=True)
    copied = services.Seen.of(consent_for(other))

    event = settings_change(consumer, allowed=False, seen=copied)

    assert event is not None and event.subject_id == consumer.subject_id
    assert event.prev_hash == events_of(consumer)[0].hash
    assert consent_for(other).state == ConsentState.ALLOWED
    assert len(events_of(other)) == 1
    assert audit_first_break() is None


def test_a_claimed_change_under_replaced_terms_is_refused_and_writes_nothing(policy, consumer):
    settings_change(consumer, allowed=True)
    seen = services.Seen.of(consent_for(consumer))
    now = timezone.now()
    services.policy_publish(
        title="Newer terms",
        text="Again?",
        effective_at=now,
        decision_deadline=now + timedelta(days=30),
    )

    with pytest.raises(ConsentError, match="not the current one"):
        settings_change(consumer, allowed=False, seen=seen)

    assert len(events_of(consumer)) == 1
    assert consent_for(consumer).state == ConsentState.ALLOWED


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.allowed",
        "0.allowed." + "a" * 64,
        "1.maybe." + "a" * 64,
        "1.allowed." + "A" * 64,
        "2147483647.allowed." + "a" * 64,  # its next event's number would not fit
    ],
)
def test_a_claim_is_only_read_from_its_exact_form(text):
    assert services.Seen.parse(text) is None


def test_the_rate_counts_the_decisions_of_the_last_period(policy, consumer):
    now = timezone.now()
    for minutes, allowed in [(5, True), (3, False), (0.5, True)]:
        services.consent_change(
            user=consumer,
            allowed=allowed,
            channel=Channel.SETTINGS,
            now=now - timedelta(minutes=minutes),
        )
    services.notice_record_served(user=consumer)  # not a decision: not counted

    # Two decisions in the last 4 minutes, one in the last minute.
    with pytest.raises(services.ConsentThrottled) as refused:
        services.consent_change(
            user=consumer, allowed=False, channel=Channel.SETTINGS, rate=(2, 240)
        )
    assert 55 <= refused.value.retry_after <= 60  # until the one of 3 minutes ago is 4 old
    assert services.consent_change(
        user=consumer, allowed=False, channel=Channel.SETTINGS, rate=(2, 60)
    )
    assert [e.after for e in events_of(consumer) if e.kind == "decision"] == [
        "allowed",
        "declined",
        "allowed",
        "declined",
    ]


def test_only_the_users_own_decisions_count_against_the_rate(policy, consumer, support_agent):
    for allowed in (True, False):
        services.consent_change(
            user=consumer,
            allowed=allowed,
            channel=Channel.SUPPORT,
            actor=support_agent,
            reason="Asked by phone",
            reference="T-1",
            rate=(1, 60),
        )

    # Support's two changes use up nothing of the user's allowance of one a minute.
    assert services.consent_change(
        user=consumer, allowed=True, channel=Channel.SETTINGS, rate=(1, 60)
    )
    with pytest.raises(services.ConsentThrottled):
        services.consent_change(
            user=consumer, allowed=False, channel=Channel.SETTINGS, rate=(1, 60)
        )
    assert consent_for(consumer).version == 3


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
