"""Moments as the API and the commands take them: RFC 3339 text with seconds and a zone."""

import re
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

RFC_3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6}([0-9]*))?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
EXAMPLE = "2026-12-01T12:00:00Z"


def moment_check(text: str) -> None:
    """Raise ValueError, saying why, unless the text is a moment the product takes."""
    # Seconds and a zone (Z or +hh:mm) are required, digits past the microsecond must be 0, a
    # leap second is refused, and the moment must fall within the years 1 to 9999 in UTC.
    matched = RFC_3339.fullmatch(text)
    if not matched:
        raise ValueError(f"a moment is RFC 3339 text with seconds and a zone, e.g. {EXAMPLE}")
    # Cut to the microsecond, a moment would move earlier: data a fraction after as_of would
    # read as before it, and as_of a fraction past a retention as within it.
    if (matched[1] or "").strip("0"):
        raise ValueError("a moment is taken to the microsecond: at most 6 digits of a second")
    if text[17:19] == "60":
        raise ValueError("a leap second (:60) is not taken: say :59.999999")
    if text.startswith(("0001-", "9999-")):  # the only years a zone can take out of range
        moment_within_utc(_parsed(text))


def moment_parse(text: str) -> datetime:
    """Return the moment the text says, once moment_check has taken it."""
    moment_check(text)
    return _parsed(text)


def moment_within_utc(moment: datetime) -> datetime:
    """Raise ValueError if the moment has no place in UTC (a zone took it past year 1 or 9999)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("a moment is between the years 1 and 9999 in UTC") from None
    return moment


def moment_past(moment: datetime) -> datetime:
    """Raise ValueError if the moment is still to come: no data can be selected as of then."""
    if moment > timezone.now():
        raise ValueError("as_of cannot be a moment still to come")
    return moment


def _parsed(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:
        raise ValueError(f"not a moment that exists, e.g. {EXAMPLE}") from None


def moment_settled(now: datetime | None = None) -> datetime:
    """Return the latest moment by which every change made has been committed."""
    # A change takes its time before its transaction commits, within this many seconds: the
    # audit log's checkpoints rely on it too. Selecting later, a run could miss a change dated
    # before it that commits after its snapshot was taken.
    return (now or timezone.now()) - timedelta(seconds=settings.AUDIT_CHECKPOINT_SETTLE_SECONDS)
