import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from consent import services
from consent.audit import audit_checkpoint
from consent.models import AuditNode, ConsentEvent, ConsentState
from consent.notes import Signer
from consent.receipts import event_type
from consent.services import Channel
from tests.factories import UserFactory

S = ConsentState


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (S.UNDECIDED, S.ALLOWED, "given"),
        (S.UNDECIDED, S.DECLINED, "refused"),
        (S.DECLINED, S.ALLOWED, "given"),
        (S.ALLOWED, S.DECLINED, "withdrawn"),
        (S.ALLOWED, S.ALLOWED, "renewed"),
        (S.DECLINED, S.DECLINED, "refused"),
    ],
)
def test_each_decision_is_named_as_a_consent_record_event(before, after, expected):
    assert event_type(ConsentEvent(before=before, after=after)) == expected


def decide(consumer, times: int) -> list[ConsentEvent]:
    """Record decisions of the consumer among other users' events; return the consumer's."""
    others = UserFactory.create_batch(3, plan="pro")
    allowed = {user.pk: False for user in [*others, consumer]}
    for n in range(times):
        user = others[n % 3] if n % 5 else consumer
        allowed[user.pk] = not allowed[user.pk]
        services.consent_change(user=user, allowed=allowed[user.pk], channel=Channel.SETTINGS)
    return list(ConsentEvent.objects.filter(subject_id=consumer.subject_id).order_by("number"))


@pytest.fixture
def decisions(policy, consumer):
    return decide(consumer, 40)


def receipt_file(client, consumer, number, tmp_path) -> Path:
    client.force_login(consumer)
    response = client.get(f"/settings/privacy/history/{number}/receipt/")
    path = tmp_path / f"receipt-{number}.json"
    path.write_bytes(response.content)
    return path


def verify(path: Path, *keys: str) -> str:
    out = StringIO()
    call_command("verify_receipt", str(path), *(f"--key={key}" for key in keys), stdout=out)
    return out.getvalue()


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_receipt_proves_its_decision_offline_with_the_public_key(
    client, policy, consumer, tmp_path, settings
):
    # Past 2048 events over two checkpoints: proofs use the kept subtrees of 1024 events.
    public = str(Signer.parse(settings.AUDIT_SIGNING_KEY).verifier)
    decide(consumer, 1200)
    audit_checkpoint()
    decisions = decide(consumer, 900)
    audit_checkpoint()
    assert AuditNode.objects.filter(level__gte=10).count() == 3  # two of 1024, one of 2048

    for event in (decisions[0], decisions[len(decisions) // 2], decisions[-1]):
        path = receipt_file(client, consumer, event.number, tmp_path)
        assert "The receipt holds" in verify(path, public)

    receipt = json.loads(path.read_text())
    assert receipt["proof"]["inclusion"]["tree_size"] == ConsentEvent.objects.count()


@pytest.mark.django_db(databases=["default", "warehouse"])
@pytest.mark.parametrize(
    "forge",
    [
        lambda r: r["event"].update(
            state="allowed" if r["event"]["state"] == "declined" else "declined"
        ),
        lambda r: r["proof"]["event"].update(reason="I never agreed"),
        lambda r: r["proof"]["inclusion"].update(
            leaf_index=r["proof"]["inclusion"]["leaf_index"] + 1
        ),
        lambda r: r["proof"]["inclusion"]["path"].reverse(),
        lambda r: r["pii_principal"].update(id="00000000-0000-0000-0000-000000000000"),
    ],
    ids=["claim", "field", "index", "path", "subject"],
)
def test_a_receipt_changed_after_it_was_issued_does_not_hold(
    client, consumer, decisions, tmp_path, forge
):
    audit_checkpoint()
    path = receipt_file(client, consumer, decisions[-2].number, tmp_path)
    receipt = json.loads(path.read_text())
    forge(receipt)
    path.write_text(json.dumps(receipt))

    with pytest.raises(CommandError, match="does not hold"):
        verify(path)


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_receipt_signed_by_another_key_does_not_hold(client, consumer, decisions, tmp_path):
    audit_checkpoint()
    path = receipt_file(client, consumer, decisions[-1].number, tmp_path)

    with pytest.raises(CommandError, match="does not verify with these keys"):
        verify(path, str(Signer.generate("someone else").verifier))


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_receipt_before_any_checkpoint_says_its_proof_comes_later(
    client, consumer, policy, tmp_path
):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)

    receipt = json.loads(receipt_file(client, consumer, 1, tmp_path).read_text())

    assert receipt["proof"]["inclusion"] is None
    assert "download the receipt again" in receipt["proof"]["inclusion_pending"]


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_receipt_says_what_its_decision_applies_to(client, policy, consumer, tmp_path):
    allowed, declined = decide(consumer, 10)[:2]  # the consumer's first two: on, then off

    on = json.loads(receipt_file(client, consumer, allowed.number, tmp_path).read_text())
    off = json.loads(receipt_file(client, consumer, declined.number, tmp_path).read_text())

    assert on["purposes"][0]["applies_to"].startswith("new and resumed chats")
    assert off["purposes"][0]["applies_to"].startswith("every chat and coding session, those")
    assert "those already stored included" in off["withdrawal"]["method"]
