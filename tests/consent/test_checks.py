"""consent's system checks: an audit key that does not parse is named before anything runs."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from consent.notes import Signer


def test_a_signing_key_that_does_not_parse_is_named_without_showing_it(settings):
    settings.AUDIT_SIGNING_KEY = "PRIVATE+KEY+consent-audit+secret-part"

    with pytest.raises(SystemCheckError) as failure:
        call_command("check")

    assert "(consent.E001) AUDIT_SIGNING_KEY: Not a signer key" in str(failure.value)
    assert "secret-part" not in str(failure.value)


def test_a_verify_key_that_does_not_parse_is_named(settings):
    good = str(Signer.generate("consent-audit").verifier)
    settings.AUDIT_VERIFY_KEYS = [good, "garbage"]

    with pytest.raises(SystemCheckError) as failure:
        call_command("check")

    assert "(consent.E002) AUDIT_VERIFY_KEYS: Not a verifier key: 'garbage'" in str(failure.value)
    assert good not in str(failure.value)


def test_keys_that_parse_pass_the_check(settings):
    key = Signer.generate("consent-audit")
    settings.AUDIT_SIGNING_KEY, settings.AUDIT_VERIFY_KEYS = str(key), [str(key.verifier)]

    call_command("check", stdout=io.StringIO())
