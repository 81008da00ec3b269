from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.reconcile import ReconcileFailed, raise_if_failed, reconcile
from consent.sinks import configured_sinks


class Command(BaseCommand):
    help = "Compare each sink with the source of truth; with --repair, fix the drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sink", help="only this sink (default: every configured sink)")
        parser.add_argument("--repair", action="store_true", help="fix what is found")

    def handle(self, *args: object, sink: str | None, repair: bool, **options: object) -> None:
        if sink is not None and sink not in configured_sinks():
            names = ", ".join(configured_sinks())
            raise CommandError(f"Unknown sink {sink!r}; configured: {names}.")
        report = reconcile(sink=sink, repair=repair)
        for drift in report:
            style = self.style.SUCCESS if drift.clean else self.style.WARNING
            self.stdout.write(style(str(drift)))
        try:
            raise_if_failed(report)
        except ReconcileFailed as error:
            raise CommandError(f"Could not compare every sink: {error}") from error
