"""Consent receipts: one decision as a JSON record shaped after ISO/IEC TS 27560:2023."""

import base64
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from consent.audit import HASHED, canonical, hash_of, inclusion_of, signer, verifiers
from consent.merkle import leaf_hash, root_from_path
from consent.models import ConsentEvent, ConsentState
from consent.notes import NoteError, Verifier, checkpoint_open, note_open

SCHEMA = "ISO/IEC TS 27560:2023 consent record (receipt)"
PURPOSE = "Train and improve AI models on chat transcripts and coding sessions"
PII_CATEGORIES = ("chat transcripts", "coding sessions")
RECORD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:consent:receipt")
SIGNED_AS = (
    "a signed note (C2SP) of the SHA-256 of this receipt without its signature, as JSON with "
    "sorted keys and no spaces"
)
NOT_COVERED_YET = "no checkpoint of the audit log covers its decision yet"


def record_id(event_hash: str) -> str:
    return f"urn:uuid:{uuid.uuid5(RECORD_NAMESPACE, event_hash)}"


def _digest(receipt: dict[str, Any]) -> str:
    """Return the SHA-256 of the receipt without its signature, as canonical JSON."""
    unsigned = {name: value for name, value in receipt.items() if name != "signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def event_type(event: ConsentEvent) -> str:
    """Name the decision the way consent records do: given, refused, withdrawn or renewed."""
    allowed = event.allows_training
    if event.before == event.after:
        return "renewed" if allowed else "refused"
    if allowed:
        return "given"
    return "withdrawn" if event.before == ConsentState.ALLOWED else "refused"


def receipt_for(
    event: ConsentEvent, *, settings_url: str, now: datetime | None = None
) -> dict[str, Any]:
    """Return the receipt of one decision event; settings_url is where to change it."""
    policy = event.policy
    assert policy is not None, "a decision always names its policy"
    allowed = event.allows_training
    receipt = {
        "schema_version": SCHEMA,
        "record_id": record_id(event.hash),
        "issued_at": (now or timezone.now()).isoformat(),
        "pii_principal": {"id": str(event.subject_id), "id_type": "pseudonymous subject id"},
        "pii_controller": {"name": settings.CONSENT_CONTROLLER_NAME},
        "notice": {
            "version": policy.version,
            "title": policy.title,
            "content_hash": f"sha256:{policy.content_hash}",
            "effective_at": policy.in_force_from.isoformat(),
            "language": settings.LANGUAGE_CODE,
            "shown_default": {True: "on", False: "off", None: None}[event.shown_default],
            "browser_opt_out_signal": event.gpc,
        },
        "purposes": [
            {
                "purpose": PURPOSE,
                "setting": settings.CONSENT_PRODUCT_NAME,
                "pii_categories": list(PII_CATEGORIES),
                "legal_basis": "consent",
                "applies_to": (
                    "new and resumed chats and coding sessions, from the event time"
                    if allowed
                    else "every chat and coding session, those already stored included, for "
                    "every training run that selects data after the event time"
                ),
                "retention": {"days": policy.retention_days(allowed=allowed)},
            }
        ],
        "event": {
            "type": event_type(event),
            "time": event.created_at.isoformat(),
            "state": event.after,
            "previous_state": event.before,
            "channel": event.channel,
            "actor_role": event.actor_role,
        },
        "withdrawal": {
            "method": f"Turn '{settings.CONSENT_PRODUCT_NAME}' off in the privacy settings; "
            "no training run that selects data from then on uses the chats and coding "
            "sessions, those already stored included.",
            "url": settings_url,
        },
        "proof": proof_of(event),
    }
    return receipt_signed(receipt)


def receipt_signed(receipt: dict[str, Any]) -> dict[str, Any]:
    """Return the receipt with its signature, by the audit log's key, over all the rest."""
    # Signed whole, so that no part of it, the notice and the retention included, can be changed
    # after it was issued; the audit log's public key alone checks it, offline.
    text = f"{settings.AUDIT_LOG_ORIGIN} receipt\n{_digest(receipt)}\n"
    return {**receipt, "signature": {"format": SIGNED_AS, "note": signer().sign(text)}}


def proof_of(event: ConsentEvent) -> dict[str, Any]:
    """Return what proves the receipt offline: its event, and the event's signed inclusion."""
    # manage.py verify_receipt checks it with the audit log's public key alone.
    proof: dict[str, Any] = {
        "event_number": event.number,
        "event_hash": event.hash,
        "previous_event_hash": event.prev_hash,
        "hash_algorithm": "SHA-256 over the event's fields as canonical JSON",
        "event": {name: canonical(getattr(event, name)) for name in HASHED},
    }
    inclusion = inclusion_of(event)
    if inclusion is None:
        proof["inclusion"] = None
        proof["inclusion_pending"] = (
            "The audit log's next checkpoint, within minutes, covers this decision: download "
            "the receipt again then for its proof of inclusion."
        )
        return proof
    proof["inclusion"] = {
        "tree": "RFC 6962 Merkle tree over every event of the audit log, in order",
        "leaf_index": inclusion.index,
        "tree_size": inclusion.checkpoint.tree_size,
        "path": [base64.b64encode(node).decode() for node in inclusion.path],
        "checkpoint": inclusion.checkpoint.note,
        "verifier_keys": [str(key) for key in verifiers()],
    }
    return proof


def receipt_verify(receipt: dict[str, Any], keys: list[Verifier]) -> list[str]:
    """Return what is wrong with a receipt, checked offline with the keys alone; none if sound."""
    try:
        proof, claims = receipt["proof"], receipt["event"]
        event = proof["event"]
        computed = hash_of(event)
        signed = _signed_digest(receipt["signature"]["note"], keys)
    except KeyError as error:
        return [f"not a signed receipt with a proof: it has no {error.args[0]!r} part"]
    except TypeError:
        return ["not a signed receipt with a proof: a part of it is not what a receipt holds"]
    except NoteError as error:
        return [f"its signature does not verify with these keys: {error}"]
    if signed != _digest(receipt):
        return ["it was changed after it was issued: its signature is over other content"]
    problems = []
    if computed != proof["event_hash"]:
        problems.append("the event's fields do not match its hash")
    said = {
        "type": event_type(ConsentEvent(before=event["before"], after=event["after"])),
        "state": event["after"],
        "previous_state": event["before"],
        "time": datetime.fromisoformat(event["created_at"]).isoformat(),
        "channel": event["channel"],
        "actor_role": event["actor_role"],
    }
    claimed = {name: claims.get(name) for name in said}
    if claimed["time"]:
        claimed["time"] = datetime.fromisoformat(claimed["time"]).isoformat()
    if said != claimed or receipt.get("record_id") != record_id(proof["event_hash"]):
        problems.append("the receipt says other than its event does")
    if receipt.get("pii_principal", {}).get("id") != event["subject_id"]:
        problems.append("the receipt names another subject than its event")
    inclusion = proof.get("inclusion")
    if not inclusion:
        return [*problems, f"{NOT_COVERED_YET}: download the receipt again in a few minutes"]
    try:
        checkpoint, _key = checkpoint_open(inclusion["checkpoint"], keys)
        path = [base64.b64decode(node) for node in inclusion["path"]]
        index, size = int(inclusion["leaf_index"]), int(inclusion["tree_size"])
    except (NoteError, KeyError, ValueError) as error:
        return [*problems, f"the checkpoint does not verify with these keys: {error}"]
    leaf = leaf_hash(bytes.fromhex(computed))
    if size != checkpoint.size or root_from_path(leaf, index, size, path) != checkpoint.root:
        problems.append("the event is not in the signed checkpoint's tree")
    return problems


def _signed_digest(note: str, keys: list[Verifier]) -> str:
    """Return the digest a receipt's signature vouches for; raise NoteError if none does."""
    if not isinstance(note, str):
        raise NoteError("It is not a signed note.")
    text, _key = note_open(note, keys)
    lines = text.splitlines()
    if len(lines) != 2 or not lines[0].endswith(" receipt"):
        raise NoteError("It is not a receipt's signature.")
    return lines[1]
