from django.core.management.base import BaseCommand, CommandError

from consent.audit import audit_verify_and_record
from consent.models import AuditVerification

Verdict = AuditVerification.Verdict


class Command(BaseCommand):
    help = (
        "Recompute every event's hash, every subject's chain and the Merkle tree, and hold them "
        "against every signed checkpoint; exit 1 naming the first bad event if the log was "
        "tampered with, 2 if it was restored from an older backup."
    )

    def handle(self, *args: object, **options: object) -> None:
        verification = audit_verify_and_record()
        if verification.verdict == Verdict.TAMPERED:
            raise CommandError(f"Audit log tampered with: {verification.detail}", returncode=1)
        if verification.verdict == Verdict.RESTORED:
            raise CommandError(f"Audit log restored: {verification.detail}", returncode=2)
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {verification.detail}."))
