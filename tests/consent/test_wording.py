"""consent.wording: the settings page's sentences say what the template's tags used to say."""

from datetime import UTC, datetime

import pytest
from django.template.defaultfilters import date as date_filter
from django.utils import timezone, translation

from consent.history import moment
from consent.selectors import Propagation
from consent.wording import day_and_time, reach_sentence

MOMENTS = [
    datetime(2026, 1, 5, 7, 3, 9, tzinfo=UTC),
    datetime(2026, 7, 31, 23, 59, 1, tzinfo=UTC),  # a new day, a new month in Paris
]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/St_Johns"])
@pytest.mark.parametrize("when", MOMENTS)
def test_moments_read_as_the_date_filter_would(zone, when):
    with timezone.override(zone):
        local = timezone.localtime(when)
        assert day_and_time(when) == date_filter(local, "j F Y, H:i e")
        assert moment(when) == date_filter(local, "j M Y, H:i")
        assert moment(when, seconds=True) == date_filter(local, "j M Y, H:i:s")


def test_a_moment_that_happens_twice_names_its_zone():
    # 02:30 comes twice in Paris the night summer time ends. The date filter leaves the zone's
    # name out for such a moment; the page says which of the two it was.
    first, second = (
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    )
    with timezone.override("Europe/Paris"):
        assert day_and_time(first) == "25 October 2026, 02:30 CEST"
        assert day_and_time(second) == "25 October 2026, 02:30 CET"


def test_month_names_follow_the_language():
    with translation.override("de"):
        assert day_and_time(MOMENTS[0]).startswith("5 Januar 2026")


@pytest.mark.parametrize(
    ("propagation", "sentence"),
    [
        (Propagation(applied=0, total=1, failed=0, superseded=0), "Applied to 0 of 1 system "),
        (Propagation(applied=2, total=3, failed=0, superseded=0), "Applied to 2 of 3 systems "),
        (
            Propagation(applied=1, total=3, failed=2, superseded=0),
            "Applied to 1 of 3 systems that act on this choice. 2 could not be reached",
        ),
    ],
)
def test_reach_says_applied_and_failed(propagation, sentence):
    assert sentence in reach_sentence(propagation)


def test_no_change_to_reach_says_nothing():
    assert reach_sentence(None) == ""
