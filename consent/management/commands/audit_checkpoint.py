from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from consent.audit import CopiesMissing, audit_checkpoint_sign, copies_complete


class Command(BaseCommand):
    help = "Sign a checkpoint of the audit log now, and copy it outside the database."

    def handle(self, *args: object, **options: object) -> None:
        checkpoint = audit_checkpoint_sign(timezone.now())
        if checkpoint is None:
            self.stdout.write("No new event to cover: the latest checkpoint stands.")
        else:
            self.stdout.write(f"Checkpoint of {checkpoint.tree_size} events:\n{checkpoint.note}")
        try:
            copies_complete()
        except CopiesMissing as error:
            raise CommandError(f"{error}. The next checkpoint tries again.") from error
