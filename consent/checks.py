from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from consent.audit import key_parse
from consent.notes import NoteError, Signer, Verifier


@register(Tags.security, deploy=True)
def audit_signing_key_check(**kwargs: object) -> list[CheckMessage]:
    """In production the checkpoints' signing key comes from the environment, not DATA_DIR."""
    if settings.AUDIT_SIGNING_KEY:
        return []
    return [
        Warning(
            "AUDIT_SIGNING_KEY is not set: audit checkpoints are signed with a key made into "
            "DATA_DIR, beside the data it is meant to vouch for.",
            hint="Set AUDIT_SIGNING_KEY (docs/security.md says how to make one).",
            id="consent.W001",
        )
    ]


@register(Tags.security)
def audit_keys_check(**kwargs: object) -> list[CheckMessage]:
    """Check that the audit keys in the settings read as consent.audit reads them."""
    # Otherwise nothing says so until a checkpoint is signed, or the log verified, with them.
    errors: list[CheckMessage] = []
    if settings.AUDIT_SIGNING_KEY:
        try:
            key_parse(Signer.parse, settings.AUDIT_SIGNING_KEY, "AUDIT_SIGNING_KEY")
        except NoteError as error:  # its text is a secret, and the error does not show it
            hint = "docs/security.md says how to make one."
            errors.append(Error(str(error), hint=hint, id="consent.E001"))
    for key in settings.AUDIT_VERIFY_KEYS:
        try:
            key_parse(Verifier.parse, key, "AUDIT_VERIFY_KEYS")
        except NoteError as error:
            hint = "Verifier keys (name+id+key), comma-separated."
            errors.append(Error(str(error), hint=hint, id="consent.E002"))
    return errors
