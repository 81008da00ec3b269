"""consent.wording: the sentences the settings page says about the user's choice."""

from datetime import UTC, datetime

import pytest
from django.utils import translation

from consent.models import ConsentPolicy, ConsentState, TrainingConsent
from consent.selectors import Propagation
from consent.wording import choice_sentence, reach_sentence

DECIDED_AT = datetime(2026, 1, 5, 7, 3, 9, tzinfo=UTC)


def decided(state: str) -> TrainingConsent:
    return TrainingConsent(state=state, policy=ConsentPolicy(version=3), decided_at=DECIDED_AT)


def test_a_choice_says_what_when_and_under_which_version():
    sentence = choice_sentence(decided(ConsentState.ALLOWED), choice_ended=False)

    assert sentence == "Allowed, chosen on 5 January 2026, 07:03 UTC under policy version 3."


def test_month_names_follow_the_language():
    with translation.override("de"):
        sentence = choice_sentence(decided(ConsentState.DECLINED), choice_ended=False)

    assert "5 Januar 2026" in sentence


def test_an_ended_choice_says_so():
    ended = choice_sentence(TrainingConsent(), choice_ended=True)

    assert ended.startswith("Not chosen under the current terms")


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
