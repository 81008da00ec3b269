import math
from argparse import ArgumentTypeError
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.moments import moment_parse, moment_past, moment_settled
from consent.snapshots import snapshot_write


def seconds(text: str) -> float:
    """Read a number of seconds to wait, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return value


class Command(BaseCommand):
    help = (
        "Write the eligibility snapshot as of a moment (Parquet files and manifest.json) into a "
        "directory, for pipelines that join their data on it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--as-of",
            help="the moment the run selects its data, RFC 3339 with a zone; if left out, the "
            "latest by which every change made has been committed (a minute ago)",
        )
        parser.add_argument("--out", required=True, type=Path, help="the directory to write")
        parser.add_argument(
            "--wait",
            type=seconds,
            default=10.0,
            help="seconds to wait for changes made by then to reach the history store",
        )

    def handle(self, *args: object, **options) -> None:
        as_of = moment_settled()
        if options["as_of"]:
            try:
                as_of = moment_past(moment_parse(options["as_of"]))
            except ValueError as error:
                raise CommandError(f"--as-of: {error}.") from error
        out: Path = options["out"]
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out: {out} is not a directory.")
        if out.exists() and any(out.iterdir()):
            raise CommandError(f"{out} is not empty: a snapshot is written once, into a new place.")
        try:  # made now, so that a place it cannot be is said before the wait, not after
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandError(f"--out: cannot make {out}: {error.strerror or error}.") from error
        manifest = snapshot_write(as_of=as_of, out=out, wait=options["wait"])
        self.stdout.write(
            f"Snapshot as of {manifest['as_of']}: intervals {manifest['rows']}, subjects "
            f"{manifest['subjects']}, files {len(manifest['files'])}, subjects withheld "
            f"{manifest['withheld_subjects']}; {out / 'manifest.json'}"
        )
