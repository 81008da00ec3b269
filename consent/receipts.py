"""Consent receipts: one decision as a JSON record shaped after ISO/IEC TS 27560:2023."""

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from consent.models import ConsentEvent, ConsentState

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
                "applies_to": "new and resumed chats and coding sessions, from the event time",
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
            "it applies from then on to new and resumed chats and coding sessions.",
            "url": settings_url,
        },
        "proof": {
            "event_number": event.number,
            "event_hash": event.hash,
            "previous_event_hash": event.prev_hash,
            "hash_algorithm": "SHA-256",
        },
    }
