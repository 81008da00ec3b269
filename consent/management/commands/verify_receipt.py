import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.audit import verifiers
from consent.notes import NoteError, Verifier
from consent.receipts import NOT_COVERED_YET, receipt_verify


class Command(BaseCommand):
    help = (
        "Check a consent receipt offline with one of the given public keys (by default, this "
        "site's): its signature over all of it, its event's hash, and the event's inclusion in "
        "a signed audit checkpoint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("receipt", type=Path, help="the receipt's JSON file")
        parser.add_argument(
            "--key",
            action="append",
            default=[],
            help="a verifier key (name+id+key) to trust; repeat for several",
        )

    def handle(self, *args: object, **options) -> None:
        try:
            receipt = json.loads(options["receipt"].read_text())
            keys = [Verifier.parse(key) for key in options["key"]] or verifiers()
        except (OSError, ValueError, NoteError) as error:
            raise CommandError(str(error)) from error
        problems = receipt_verify(receipt, keys)
        if len(problems) == 1 and problems[0].startswith(NOT_COVERED_YET):
            raise CommandError(
                "The receipt is as it was issued, but its decision is not proved to be in the "
                f"audit log yet: {problems[0]}."
            )
        if problems:
            raise CommandError("The receipt does not hold: " + "; ".join(problems))
        inclusion = receipt["proof"]["inclusion"]
        self.stdout.write(
            self.style.SUCCESS(
                "The receipt holds: all of it is as it was issued, signed by a trusted key, and "
                f"event {receipt['proof']['event_number']} of subject "
                f"{receipt['pii_principal']['id']} is leaf {inclusion['leaf_index']} of the "
                f"audit log's checkpoint of {inclusion['tree_size']} events."
            )
        )
