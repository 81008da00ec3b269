from django.core.management.base import BaseCommand

from consent.audit import audit_checkpoint


class Command(BaseCommand):
    help = "Sign a checkpoint of the audit log now, and copy it outside the database."

    def handle(self, *args: object, **options: object) -> None:
        checkpoint = audit_checkpoint()
        if checkpoint is None:
            self.stdout.write("No new event to cover: the latest checkpoint stands.")
            return
        self.stdout.write(f"Checkpoint of {checkpoint.tree_size} events:\n{checkpoint.note}")
