import re

import pytest
from psycopg import _queries as psycopg_queries

from consent import services
from consent.services import Channel
from consent.sql import _change_sql, _numbered

pytestmark = pytest.mark.django_db


def test_psycopg_does_not_parse_the_change_statement(policy, consumer, settings, monkeypatch):
    # psycopg parses anew on every run a %s statement of more than 50 parameters: 0.2 ms a change.
    settings.CONSENT_SINKS = {"warehouse": {}, "redis": {}, "search": {}}
    parsed: list[bytes] = []
    parse = psycopg_queries._query2pg_nocache

    def parse_and_count(query: bytes, *args):
        parsed.append(query)
        return parse(query, *args)

    monkeypatch.setattr(psycopg_queries, "_query2pg_nocache", parse_and_count)
    first = services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    second = services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)

    assert first is not None and second is not None
    assert [query for query in parsed if b"INSERT INTO consent_consentevent" in query] == []


@pytest.mark.parametrize(("claimed", "rated"), [(False, False), (True, False), (True, True)])
def test_each_change_statement_comes_with_its_placeholders_numbered(claimed, rated):
    statement = _change_sql(3, services.CONSENT_FIELDS, claimed, rated)

    assert "%s" not in statement
    numbers = [int(n) for n in re.findall(r"\$([0-9]+)", statement)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) > 50


def test_placeholders_are_numbered_in_order():
    assert _numbered("SELECT %s, %s FROM t WHERE a = %s") == "SELECT $1, $2 FROM t WHERE a = $3"
    assert _numbered("SELECT 1") == "SELECT 1"
