from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from consent.audit import CopiesMissing, audit_checkpoint
from consent.notes import NoteError


class Command(BaseCommand):
    help = (
        "Sign a checkpoint of the audit log now, and copy it outside the database; exit 1 "
        "naming a place it could not be copied to."
    )

    def handle(self, *args: object, **options: object) -> None:
        try:
            checkpoint = audit_checkpoint()
        except CopiesMissing as error:
            raise CommandError(
                f"{error}. What was signed is kept in the database; the next checkpoint tries "
                "again."
            ) from error
        except NoteError as error:  # a signing key that does not read: nothing was signed
            raise CommandError(str(error)) from error
        if checkpoint is None:
            settle = settings.AUDIT_CHECKPOINT_SETTLE_SECONDS
            self.stdout.write(
                "No new event to cover: the latest checkpoint stands, and is copied outside the "
                f"database. An event is covered once it is {settle} s old (a transaction still "
                "open could commit an older one meanwhile): run this again then."
            )
            return
        self.stdout.write(f"Checkpoint of {checkpoint.tree_size} events:\n{checkpoint.note}")
