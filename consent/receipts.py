"""Consent receipts: one decision as a JSON record shaped after ISO/IEC TS 27560:2023."""

import base64
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from consent.audit import HASHED, canonical, hash_of, inclusion_of, verifiers
from consent.merkle import leaf_hash, root_from_path
from consent.models import ConsentEvent, ConsentState
from consent.notes import NoteError, Verifier, checkpoint_open

SCHEMA = "ISO/IEC TS 27560:2023 consent record (receipt)"
PURPOSE = "Train and improve AI models on chat transcripts and coding sessions"
PII_CATEGORIES = ("chat transcripts", "coding sessions")
RECORD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:consent:receipt")


def event_type(event: ConsentEvent) -> str:
    """Name the decision the way consent records do: given, refused, withdrawn or renewed."""
    allowed = event.after == ConsentState.ALLOWED
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
    allowed = event.after == ConsentState.ALLOWED
    return {
        "schema_version": SCHEMA,
        "record_id": f"urn:uuid:{uuid.uuid5(RECORD_NAMESPACE, event.hash)}",
        "issued_at": (now or timezone.now()).isoformat(),
        "pii_principal": {"id": str(event.subject_id), "id_type": "pseudonymous subject id"},
        "pii_controller": {"name": settings.CONSENT_CONTROLLER_NAME},
        "notice": {
            "version": policy.version,
            "title": policy.title,
            "content_hash": f"sha256:{policy.content_hash}",
            "effective_at": policy.effective_at.isoformat(),
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


def proof_of(event: ConsentEvent) -> dict[str, Any]:
    """Return what proves the receipt offline: the event's fields and hash, and its inclusion in
    a signed checkpoint of the audit log (manage.py verify_receipt checks it with the public
    key alone)."""
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
    """Return what is wrong with a receipt, checked offline with the keys alone; nothing if it
    holds: its event's hash, its claims, its inclusion in a checkpoint those keys signed."""
    try:
        proof, claims = receipt["proof"], receipt["event"]
        event = proof["event"]
        computed = hash_of(event)
    except (KeyError, TypeError) as error:
        return [f"not a receipt with a proof: {error!r} is missing"]
    problems = []
    if computed != proof["event_hash"]:
        problems.append("the event's fields do not match its hash")
    said = {
        "state": event["after"],
        "previous_state": event["before"],
        "time": datetime.fromisoformat(event["created_at"]).isoformat(),
        "channel": event["channel"],
    }
    claimed = {name: claims.get(name) for name in said}
    if claimed["time"]:
        claimed["time"] = datetime.fromisoformat(claimed["time"]).isoformat()
    if said != claimed:
        problems.append("the receipt says other than its event does")
    if receipt.get("pii_principal", {}).get("id") != event["subject_id"]:
        problems.append("the receipt names another subject than its event")
    inclusion = proof.get("inclusion")
    if not inclusion:
        return [*problems, "no proof of inclusion yet: download the receipt again later"]
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
