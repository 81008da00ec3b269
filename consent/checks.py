from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


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
