from django.core.management.base import BaseCommand, CommandError

from consent.audit import audit_first_break
from consent.models import ConsentEvent


class Command(BaseCommand):
    help = "Recompute every user's audit hash chain; exit 1 naming the first broken event."

    def handle(self, *args: object, **options: object) -> None:
        broken = audit_first_break()
        if broken is not None:
            raise CommandError(f"Audit chain broken at {broken}")
        events = ConsentEvent.objects.count()
        subjects = ConsentEvent.objects.values("subject_id").distinct().count()
        self.stdout.write(
            self.style.SUCCESS(f"Audit chain intact: {events} events from {subjects} subjects.")
        )
