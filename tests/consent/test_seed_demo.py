import pytest
from django.core.management import call_command

from accounts.models import User
from consent import services
from consent.models import ConsentEvent, ConsentPolicy, ConsentState
from consent.selectors import consent_for, prompt_for

pytestmark = pytest.mark.django_db


def snapshot():
    return (
        sorted(User.objects.values_list("email", "plan", "is_staff", "is_superuser")),
        sorted(ConsentPolicy.objects.values_list("version", "content_hash")),
        sorted(ConsentEvent.objects.values_list("hash", flat=True)),
    )


def test_seed_demo_run_twice_leaves_the_same_data():
    call_command("seed_demo")
    first = snapshot()

    call_command("seed_demo")

    assert snapshot() == first


def test_seed_demo_creates_the_personas_of_the_spec():
    call_command("seed_demo")

    def user(email):
        found = User.objects.get(email=email)
        assert found.check_password("demo-password-123")
        return found

    assert consent_for(user("free@example.com")).state == ConsentState.UNDECIDED
    assert prompt_for(user("free@example.com")).show
    assert consent_for(user("pro@example.com")).state == ConsentState.ALLOWED
    max_user = user("max@example.com")
    assert consent_for(max_user).state == ConsentState.DECLINED
    decisions = ConsentEvent.objects.filter(subject_id=max_user.subject_id, kind="decision")
    assert decisions.count() >= 3
    assert not user("team@example.com").is_consumer
    assert not user("enterprise@example.com").is_consumer
    assert user("support@example.com").groups.filter(name="Support").exists()
    assert user("admin@example.com").is_superuser
    policy = ConsentPolicy.objects.get()
    assert policy.decision_deadline > policy.effective_at
    assert prompt_for(user("free@example.com")).can_defer


def test_a_demo_user_deleted_then_seeded_again_gets_no_invented_past():
    call_command("seed_demo")
    max_user = User.objects.get(email="max@example.com")
    services.account_delete(user=max_user, channel=services.Channel.SETTINGS, actor=max_user)
    events = ConsentEvent.objects.count()

    call_command("seed_demo")

    # Back, as the spec has it, without events dated before the ones already recorded (and signed).
    again = User.objects.get(email="max@example.com")
    assert consent_for(again).state == ConsentState.DECLINED
    history = ConsentEvent.objects.filter(subject_id=again.subject_id)
    newest_before = ConsentEvent.objects.exclude(subject_id=again.subject_id).latest("created_at")
    assert all(event.created_at >= newest_before.created_at for event in history)
    assert ConsentEvent.objects.count() > events
