from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.reconcile import ReconcileFailed, raise_if_failed
from consent.recovery import recover, recovery_plan


class Command(BaseCommand):
    help = (
        "After the database was restored from an older backup: take back from the downstream "
        "stores the newest state of every user they know newer than the database, move each "
        "one's numbering past what was sent, drop from the stores whom the database never knew, "
        "and sign a statement of the restore for verify_audit (docs/operations.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would be done")

    def handle(self, *args: object, **options: object) -> None:
        plan = recovery_plan()
        self.stdout.write(f"Audit log: {plan.audit.verdict}: {plan.audit.detail}.")
        self.stdout.write(
            f"{len(plan.ahead)} users are known newer downstream than here; "
            f"{len(plan.unknown)} subjects downstream are unknown here."
        )
        for copy in plan.terms_back:
            self.stdout.write(
                f"Terms version {copy.version} (published {copy.published_at:%Y-%m-%d %H:%M} UTC, "
                f"deadline {copy.decision_deadline:%Y-%m-%d %H:%M} UTC): lost with the backup, "
                "taken back from its signed copy outside the database."
            )
        for problem in plan.terms_problems:
            self.stdout.write(f"Copies of terms: {problem}.")
        if plan.terms_conflicting:
            self.stdout.write(
                f"Terms versions held here with another text than their copy outside the "
                f"database: {', '.join(map(str, plan.terms_conflicting))}. They were published "
                "again after the restore: the numbers now name two texts (docs/operations.md)."
            )
        if plan.policies_lost:
            self.stdout.write(
                f"Terms versions the stores name but the database lacks, and no copy outside it "
                f"holds: {', '.join(map(str, plan.policies_lost))}. Choices made under them are "
                "not re-established. Publish their text again, in order and word for word, before "
                "any other: the next version published takes the first of these numbers "
                "(docs/operations.md, 'Restoring the database')."
            )
        for ahead in plan.ahead[:20]:
            self.stdout.write(f"  {ahead.subject_id}: {ahead.detail()}")
        if not plan.needed:
            self.stdout.write("Nothing to recover: the database holds all the stores know.")
            return
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing was changed.")
            return
        report = recover(plan)
        for drift in report:
            self.stdout.write(f"  {drift}")
        try:
            raise_if_failed(report)
        except ReconcileFailed as error:
            raise CommandError(
                f"Recovered, but a sink could not be repaired: {error}. Bring its store back "
                "and run manage.py reconcile --repair before starting the workers."
            ) from error
        self.stdout.write(
            self.style.SUCCESS("Recovered. Start the workers, then run verify_audit.")
        )
