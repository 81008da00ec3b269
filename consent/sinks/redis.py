"""A per-user record in Redis that an online service reads in one round trip (HGETALL)."""

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import batched
from uuid import UUID

import redis

from consent.sinks.base import APPLIED, SUBJECTS_A_BATCH, Change, Entry, Result

logger = logging.getLogger(__name__)

# Write the record only if its version (ARGV[1]) is newer than what Redis holds or, for a repair,
# if what Redis holds is not past the ceiling (ARGV[2]). Atomic: Redis runs a script alone.
_WRITE_IF_NEWER = """
-- A version that is not digits only (written by hand: "v2", "1e9") is older than any, as it
-- is to reconcile (_number): overwritten.
local raw = redis.call('HGET', KEYS[1], 'version') or '0'
local held = string.match(raw, '^%d+$') and tonumber(raw) or 0
local version = tonumber(ARGV[1])
if (ARGV[2] == '' and version > held) or (ARGV[2] ~= '' and held <= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'version', ARGV[1], unpack(ARGV, 3))
  return 1
end
return 0
"""


# As Entry holds them.
FIELDS = ("version", "allowed", "deleted", "plan", "policy_version", "changed_at", "retention_days")


class RedisSink:
    readable = True
    keeps_newest = True
    keeps_history = False

    def __init__(self, *, name: str, url: str, prefix: str = "consent:training:") -> None:
        self.name = name
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.script = self.client.register_script(_WRITE_IF_NEWER)

    def key(self, subject_id: UUID) -> str:
        return f"{self.prefix}{subject_id}"

    def _write(self, changes: list[Change], ceiling: dict[UUID, int] | None = None) -> None:
        pipe = self.client.pipeline(transaction=False)
        for change in changes:
            fields: dict[str, str | int] = {
                "allowed": int(change.allowed),
                "deleted": int(change.deleted),
                "plan": change.plan,
                "policy_version": change.policy_version or "",
                "retention_days": change.retention_days or "",
                "changed_at": change.changed_at.isoformat(),
            }
            flat: list[str | int] = [item for pair in fields.items() for item in pair]
            limit: str | int = "" if ceiling is None else ceiling[change.subject_id]
            self.script(
                keys=[self.key(change.subject_id)], args=[change.version, limit, *flat], client=pipe
            )
        pipe.execute()

    def apply(self, changes: list[Change]) -> dict[int, Result]:
        self._write(changes)
        return {change.delivery_id: APPLIED for change in changes}

    def subjects(self) -> Iterator[list[UUID]]:
        keys = self.client.scan_iter(match=f"{self.prefix}*", count=1000)
        for batch in batched(keys, SUBJECTS_A_BATCH, strict=False):
            subjects = []
            for key in batch:
                subject_id = _subject_of(key.removeprefix(self.prefix.encode()))
                if subject_id is None:  # not a record of ours: neither counted nor dropped
                    logger.warning("%s: the key %r is not a subject's; left alone.", self.name, key)
                else:
                    subjects.append(subject_id)
            yield subjects

    def entries(self, subjects: Sequence[UUID]) -> dict[UUID, Entry]:
        pipe = self.client.pipeline(transaction=False)
        for subject_id in subjects:
            pipe.hmget(self.key(subject_id), *FIELDS)
        found = {}
        for subject_id, values in zip(subjects, pipe.execute(), strict=True):
            if not any(values):  # no such key
                continue
            version, allowed, deleted, plan, policy_version, changed_at, retention_days = values
            # A field that does not read as this sink writes it is drift, to be repaired.
            found[subject_id] = Entry(
                version=_number(version) or 0,
                allowed=allowed == b"1",
                deleted=deleted == b"1",
                plan=(plan or b"").decode(errors="replace"),
                policy_version=_number(policy_version),
                changed_at=_moment(changed_at),
                retention_days=_number(retention_days),
            )
        return found

    def repair(self, changes: list[Change], *, ceiling: dict[UUID, int], drop: list[UUID]) -> None:
        if changes:
            self._write(changes, ceiling)
        if drop:
            self.client.delete(*[self.key(subject_id) for subject_id in drop])


def _subject_of(suffix: bytes) -> UUID | None:
    """Return the subject a key is for, if it is one: its id written as this sink writes it."""
    try:
        subject_id = UUID(suffix.decode())
    except ValueError:
        return None
    return subject_id if str(subject_id).encode() == suffix else None


def _number(value: bytes | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _moment(value: bytes | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.decode()) if value else None
    except (UnicodeDecodeError, ValueError):
        return None
