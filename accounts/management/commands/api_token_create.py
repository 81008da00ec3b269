from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import ApiToken
from accounts.services import TokenError, api_token_create


class Command(BaseCommand):
    help = "Make an API token for a machine client; print it on the last line, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="who or what will use it")
        parser.add_argument(
            "--scope",
            action="append",
            required=True,
            choices=ApiToken.Scope.values,
            help="what it may do; repeat for several",
        )
        parser.add_argument("--expires-in-days", type=int, help="never, if left out")

    def handle(self, *args: object, **options) -> None:
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        try:
            expires_at = timezone.now() + timedelta(days=days) if days else None
        except OverflowError as error:
            raise CommandError(
                f"--expires-in-days: {days} days from now is too far, after the year 9999."
            ) from error
        try:
            token, secret = api_token_create(
                name=options["name"], scopes=options["scope"], expires_at=expires_at
            )
        except TokenError as error:
            raise CommandError(str(error)) from error
        expiry = (
            f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC"
            if token.expires_at
            else "never expires"
        )
        self.stderr.write(
            f"Token {token.name!r} ({', '.join(token.scopes)}), {expiry}. "
            "It is shown once: keep it now."
        )
        self.stdout.write(secret)
