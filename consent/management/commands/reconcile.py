from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.reconcile import ReconcileFailed, raise_if_failed, reconcile
from consent.sinks import configured_sinks

SHOWN = 20


class Command(BaseCommand):
    help = (
        "Compare each sink with the source of truth and name the subjects that drifted (the "
        f"first {SHOWN} of each kind; every one with -v 2); with --repair, fix the drift. Exit 1 "
        "if a sink could not be compared, 3 if drift was found and left unrepaired."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sink", help="only this sink (default: every configured sink)")
        parser.add_argument("--repair", action="store_true", help="fix what is found")

    def handle(
        self, *args: object, sink: str | None, repair: bool, verbosity: int, **options: object
    ) -> None:
        if sink is not None and sink not in configured_sinks():
            names = ", ".join(configured_sinks())
            raise CommandError(f"Unknown sink {sink!r}; configured: {names}.")
        report = reconcile(sink=sink, repair=repair)
        shown = None if verbosity > 1 else SHOWN
        for drift in report:
            style = self.style.SUCCESS if drift.clean else self.style.WARNING
            self.stdout.write(style(str(drift)))
            for kind, subjects in drift.subjects().items():
                listed = subjects[:shown]
                more = (
                    f" and {len(subjects) - len(listed)} more"
                    if len(listed) < len(subjects)
                    else ""
                )
                self.stdout.write(f"  {kind}: {', '.join(map(str, listed))}{more}")
        try:
            raise_if_failed(report)
        except ReconcileFailed as error:
            raise CommandError(f"Could not compare every sink: {error}") from error
        if not repair and any(drift.has_drift for drift in report):
            raise CommandError("Drift found and not repaired (--repair repairs it).", returncode=3)
