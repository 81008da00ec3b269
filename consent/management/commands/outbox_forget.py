from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.exceptions import ConsentError
from consent.outbox import outbox_forget


class Command(BaseCommand):
    help = (
        "Delete the pending and dead deliveries to a sink taken out of the settings "
        "(CONSENT_SINKS), which would otherwise wait, and page, for ever. Its applied and "
        "superseded ones stay on record, pruned as any sink's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sink", required=True, help="The name of the removed sink.")

    def handle(self, *args: object, **options: str) -> None:
        try:
            forgotten = outbox_forget(options["sink"])
        except ConsentError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Deleted {forgotten} deliveries to {options['sink']}.")
