import copy
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import services
from consent.audit import audit_checkpoint, verifiers
from consent.models import AuditNode, ConsentEvent, ConsentState
from consent.notes import Signer
from consent.receipts import event_type, receipt_signed, receipt_verify
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


def forged(path: Path, forge) -> Path:
    receipt = json.loads(path.read_text())
    forge(receipt)
    path.write_text(json.dumps(receipt))
    return path


@pytest.mark.django_db(databases=["default", "warehouse"])
@pytest.mark.parametrize(
    "forge",
    [
        lambda r: r["purposes"][0]["retention"].update(days=30),
        lambda r: r["notice"].update(content_hash="sha256:" + "0" * 64),
        lambda r: r["notice"].update(version=r["notice"]["version"] + 1),
        lambda r: r["notice"].update(effective_at="2020-01-01T00:00:00+00:00"),
        lambda r: r["event"].update(type="withdrawn"),
        lambda r: r["pii_controller"].update(name="Someone else"),
        lambda r: r["purposes"][0].update(purpose="Nothing at all"),
        lambda r: r["withdrawal"].update(url="https://example.org/"),
        lambda r: r.update(issued_at="2020-01-01T00:00:00+00:00"),
        lambda r: r.update(extra="a field added"),
        lambda r: r["event"].update(
            state="allowed" if r["event"]["state"] == "declined" else "declined"
        ),
        lambda r: r["proof"]["inclusion"]["path"].reverse(),
    ],
    ids=[
        "retention",
        "notice-hash",
        "notice-version",
        "notice-effective",
        "type",
        "controller",
        "purpose",
        "withdrawal",
        "issued",
        "added",
        "claim",
        "path",
    ],
)
def test_a_receipt_changed_anywhere_after_it_was_issued_does_not_hold(
    client, consumer, decisions, tmp_path, forge
):
    audit_checkpoint()
    path = forged(receipt_file(client, consumer, decisions[-2].number, tmp_path), forge)

    with pytest.raises(CommandError, match="changed after it was issued"):
        verify(path)


@pytest.mark.django_db(databases=["default", "warehouse"])
@pytest.mark.parametrize(
    ("forge", "problem"),
    [
        (
            lambda r: r["event"].update(
                state="allowed" if r["event"]["state"] == "declined" else "declined"
            ),
            "says other than its event",
        ),
        (lambda r: r["event"].update(type="renewed"), "says other than its event"),
        (lambda r: r["proof"]["event"].update(reason="I never agreed"), "do not match its hash"),
        (
            lambda r: r["proof"]["inclusion"].update(
                leaf_index=r["proof"]["inclusion"]["leaf_index"] + 1
            ),
            "not in the signed checkpoint's tree",
        ),
        (lambda r: r["proof"]["inclusion"]["path"].reverse(), "not in the signed checkpoint"),
        (
            lambda r: r["pii_principal"].update(id="00000000-0000-0000-0000-000000000000"),
            "names another subject",
        ),
    ],
    ids=["claim", "type", "field", "index", "path", "subject"],
)
def test_a_receipt_signed_again_by_the_key_still_answers_to_its_event_and_the_log(
    client, consumer, decisions, tmp_path, forge, problem
):
    # Whoever holds the signing key can sign anything: the event's hash and its place in the
    # checkpoint's tree are still checked.
    audit_checkpoint()
    path = receipt_file(client, consumer, decisions[-2].number, tmp_path)
    receipt = json.loads(path.read_text())
    forge(receipt)
    path.write_text(json.dumps(receipt_signed(receipt)))

    with pytest.raises(CommandError, match=problem):
        verify(path)


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_receipt_without_its_signature_does_not_hold(client, consumer, decisions, tmp_path):
    audit_checkpoint()
    path = forged(
        receipt_file(client, consumer, decisions[-1].number, tmp_path),
        lambda r: r.pop("signature"),
    )

    with pytest.raises(
        CommandError, match="not a signed receipt with a proof: it has no 'signature' part"
    ):
        verify(path)


@pytest.mark.parametrize(
    ("receipt", "said"),
    [
        ({}, "it has no 'proof' part"),
        ({"proof": [], "event": {}}, "a part of it is not what a receipt holds"),
    ],
)
def test_what_is_not_a_receipt_is_told_in_words_not_in_python(receipt, said):
    (problem,) = receipt_verify(receipt, verifiers())

    assert problem == f"not a signed receipt with a proof: {said}"


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
    with pytest.raises(CommandError, match="is as it was issued, but its decision is not proved"):
        verify(receipt_file(client, consumer, 1, tmp_path))


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_receipt_says_what_its_decision_applies_to(client, policy, consumer, tmp_path):
    allowed, declined = decide(consumer, 10)[:2]  # the consumer's first two: on, then off

    on = json.loads(receipt_file(client, consumer, allowed.number, tmp_path).read_text())
    off = json.loads(receipt_file(client, consumer, declined.number, tmp_path).read_text())

    assert on["purposes"][0]["applies_to"].startswith("new and resumed chats")
    assert off["purposes"][0]["applies_to"].startswith("every chat and coding session, those")
    assert "those already stored included" in off["withdrawal"]["method"]


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_a_receipt_issued_before_a_key_rotation_still_holds(
    client, consumer, decisions, tmp_path, settings
):
    audit_checkpoint()
    path = receipt_file(client, consumer, decisions[-1].number, tmp_path)
    old = Signer.parse(settings.AUDIT_SIGNING_KEY)
    settings.AUDIT_SIGNING_KEY = str(Signer.generate(old.name))

    with pytest.raises(CommandError, match="does not verify with these keys"):
        verify(path)
    settings.AUDIT_VERIFY_KEYS = [str(old.verifier)]
    assert "The receipt holds" in verify(path)


PARTS = ["signature", "proof", "event", "pii_principal", "record_id"]
ANYTHING = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["note", "event", "inclusion", "id", "path"]), children)
    ),
    max_leaves=6,
)


@pytest.mark.parametrize(
    ("setting", "value", "why"),
    [
        ("AUDIT_SIGNING_KEY", "garbage", "AUDIT_SIGNING_KEY: Not a signer key"),
        ("AUDIT_VERIFY_KEYS", ["garbage"], "AUDIT_VERIFY_KEYS: Not a verifier key: 'garbage'"),
    ],
)
def test_a_key_in_the_settings_that_does_not_parse_is_named(setting, value, why, tmp_path):
    path = tmp_path / "receipt.json"
    path.write_text("{}")

    with override_settings(**{setting: value}), pytest.raises(CommandError, match=why):
        verify(path)


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_any_malformed_receipt_gets_an_answer_not_a_traceback(
    client, consumer, decisions, tmp_path
):
    audit_checkpoint()
    issued = json.loads(receipt_file(client, consumer, decisions[-1].number, tmp_path).read_text())
    keys = verifiers()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        part=st.sampled_from(PARTS), inner=st.sampled_from([None, "note", "event"]), value=ANYTHING
    )
    def malformed(part, inner, value):
        receipt = copy.deepcopy(issued)
        if inner is not None and isinstance(receipt.get(part), dict):
            receipt[part][inner] = value
        else:
            receipt[part] = value

        problems = receipt_verify(receipt, keys)

        assert all(isinstance(problem, str) for problem in problems)
        if receipt["signature"] == issued["signature"]:  # the signature holds a note it ignores
            assert problems

    malformed()
