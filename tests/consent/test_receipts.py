import pytest

from consent.models import ConsentEvent, ConsentState
from consent.receipts import event_type

S = ConsentState


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (S.UNDECIDED, S.ALLOWED, "given"),
        (S.UNDECIDED, S.DECLINED, "refused"),
        (S.DECLINED, S.ALLOWED, "given"),
        (S.ALLOWED, S.DECLINED, "withdrawn"),
        (S.ALLOWED, S.ALLOWED, "renewed"),
        (S.DECLINED, S.DECLINED, "refused"),
    ],
)
def test_each_decision_is_named_as_a_consent_record_event(before, after, expected):
    assert event_type(ConsentEvent(before=before, after=after)) == expected
