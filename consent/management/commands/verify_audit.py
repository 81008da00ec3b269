from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.audit import audit_verify, audit_verify_and_record
from consent.models import AuditVerification

Verdict = AuditVerification.Verdict


class Command(BaseCommand):
    help = (
        "Recompute every event's hash, every subject's chain and the Merkle tree, and hold them "
        "against every signed checkpoint; exit 1 naming the first bad event if the log was "
        "tampered with, 2 if it was restored from an older backup, 3 if it could not be fully "
        "checked (a key that does not read, copies outside the database that cannot be read). "
        "The verdict is kept, as the hourly task's is: the support pages and the metrics show "
        "the latest."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-record",
            action="store_true",
            help="Keep nothing: try a change of keys or settings without changing the verdict "
            "the support pages and the metrics show.",
        )

    def handle(self, *args: object, **options: object) -> None:
        found = audit_verify() if options["no_record"] else audit_verify_and_record()
        if found.verdict == Verdict.TAMPERED:
            raise CommandError(f"Audit log tampered with: {found.detail}", returncode=1)
        if found.verdict == Verdict.RESTORED:
            raise CommandError(f"Audit log restored: {found.detail}", returncode=2)
        if found.verdict == Verdict.INCOMPLETE:
            raise CommandError(f"Audit log not fully checked: {found.detail}", returncode=3)
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {found.detail}."))
