"""The audit log's tamper evidence: hash chains per subject, and signed Merkle checkpoints."""

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Max
from django.utils import timezone

from consent.merkle import Frontier, inclusion_path, leaf_hash, node_hash, split
from consent.models import (
    AuditCheckpoint,
    AuditNode,
    AuditRestore,
    AuditVerification,
    CheckpointCopy,
    ConsentEvent,
    ConsentPolicy,
    TermsCopy,
    TrainingConsent,
)
from consent.notes import (
    RESTORE_SUFFIX,
    Checkpoint,
    NoteError,
    NoteKeyUnknown,
    Restore,
    Signer,
    Terms,
    Verifier,
    note_open,
)
from consent.policies import policy_copy_fields, policy_from_copy

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# The hashed fields, in the order of their names: the canonical JSON's order.
HASHED = sorted(
    field.attname
    for field in ConsentEvent._meta.concrete_fields
    if field.name not in {"id", "hash"}
)
UUIDS = [name for name in HASHED if name.endswith("subject_id")]
STORED_LEVEL = 10  # subtrees of 1024 leaves and more are kept (AuditNode)
Verdict = AuditVerification.Verdict


def canonical(value: Any) -> Any:
    """Return a field's value as the hashed JSON holds it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, UUID):
        return str(value)
    return value


def hash_of(fields: dict[str, Any]) -> str:
    """Return the SHA-256 of an event's fields (HASHED), as canonical JSON."""
    # Canonical: keys in order, no spaces, times in UTC to the microsecond, ids as text.
    payload = {name: fields[name] for name in HASHED}  # in HASHED's order, which is sorted
    for name in UUIDS:
        payload[name] = canonical(payload[name])
    payload["created_at"] = canonical(payload["created_at"])
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def event_hash(event: ConsentEvent) -> str:
    """Return the SHA-256 over every field of the event but its own id and hash."""
    return hash_of({name: getattr(event, name) for name in HASHED})


# Keys


def key_parse[Key: (Signer, Verifier)](parse: Callable[[str], Key], text: str, source: str) -> Key:
    """Return the key the text holds; raise NoteError naming where it came from if none."""
    try:
        return parse(text)
    except NoteError as error:
        raise NoteError(f"{source}: {error}") from error


def signer() -> Signer:
    """Return the checkpoints' signing key."""
    if settings.AUDIT_SIGNING_KEY:
        return key_parse(Signer.parse, settings.AUDIT_SIGNING_KEY, "AUDIT_SIGNING_KEY")
    # The embedded default: a key made once into DATA_DIR.
    path = Path(settings.DATA_DIR) / "audit-signing.key"
    if not path.exists():
        # Readable by the owner only from its first byte; linked into place whole, so that of
        # processes starting at once (web, workers) the first one's key is everyone's.
        descriptor, made = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.")  # 0o600
        with os.fdopen(descriptor, "w") as file:
            file.write(f"{Signer.generate(settings.AUDIT_LOG_ORIGIN)}\n")
            file.flush()
            os.fsync(file.fileno())  # never an empty key after a crash
        try:
            os.link(made, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: the last one made is kept
            os.replace(made, path)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(made)
    return key_parse(Signer.parse, path.read_text(), str(path))


def verifiers() -> list[Verifier]:
    """Return the keys whose checkpoints are trusted: the signing key's and AUDIT_VERIFY_KEYS."""
    # The earlier keys in AUDIT_VERIFY_KEYS leave the checkpoints of before a rotation verifiable.
    earlier = [
        key_parse(Verifier.parse, key, "AUDIT_VERIFY_KEYS") for key in settings.AUDIT_VERIFY_KEYS
    ]
    return [signer().verifier, *earlier]


# Chains: each event carries the SHA-256 of all its fields, the previous event's hash among them,
# so a subject's history is a chain.


@dataclass(frozen=True)
class AuditBreak:
    event_id: int
    subject_id: UUID
    number: int
    problem: str

    def __str__(self) -> str:
        return (
            f"event id={self.event_id} (subject {self.subject_id}, number {self.number}): "
            f"{self.problem}"
        )


@dataclass
class Chains:
    """Follows each subject's chain through events taken in the order of their ids."""

    heads: dict[UUID, tuple[int, str]] = field(default_factory=dict)

    def check(self, event_id: int, fields: dict[str, Any], stored: str, computed: str):
        subject, number = fields["subject_id"], fields["number"]
        last_number, last_hash = self.heads.get(subject, (0, GENESIS_HASH))
        self.heads[subject] = (number, stored)
        # After a restore from a backup, the one event that re-establishes what the sinks held
        # skips the numbers of the events lost, and says so (consent_restore).
        skips = fields["kind"] == ConsentEvent.Kind.RESTORED and number > last_number
        if number != last_number + 1 and not skips:
            expected = last_number + 1
            return AuditBreak(event_id, subject, number, f"number {number}, expected {expected}")
        if fields["prev_hash"] != last_hash:
            return AuditBreak(event_id, subject, number, "does not chain to the previous event")
        if stored != computed:
            return AuditBreak(event_id, subject, number, "its fields do not match its hash")
        return None


def _events(**filters: Any) -> Iterator[tuple[int, dict[str, Any], str]]:
    rows = (
        ConsentEvent.objects.filter(**filters)
        .order_by("id")
        .values_list("id", "hash", *HASHED)
        .iterator(chunk_size=10_000)
    )
    for event_id, stored, *values in rows:
        yield event_id, dict(zip(HASHED, values, strict=True)), stored


def audit_first_break(*, subject_id: UUID | None = None) -> AuditBreak | None:
    """Recompute every chain (or one subject's) and return the first break, if any."""
    # A chain cut at its end is a chain still: one subject's is held against the newest event
    # their record names, read first (events written after it are fine). The whole log's end is
    # held against the checkpoints instead.
    recorded = None
    if subject_id is not None:
        head = TrainingConsent.objects.filter(user__subject_id=subject_id)
        recorded = head.values_list("head_number", "head_hash").first()
    chains = Chains()
    filters = {} if subject_id is None else {"subject_id": subject_id}
    reached = not (recorded and recorded[0])
    last: AuditBreak | None = None
    for event_id, fields, stored in _events(**filters):
        broken = chains.check(event_id, fields, stored, hash_of(fields))
        if broken is not None:
            return broken
        reached = reached or (fields["number"], stored) == recorded
        last = AuditBreak(event_id, fields["subject_id"], fields["number"], "")
    if reached or subject_id is None or recorded is None:
        return None
    if last is None:
        return AuditBreak(0, subject_id, recorded[0], "missing, and every event before it")
    problem = f"the chain ends here, yet event {recorded[0]} is the newest on record"
    return replace(last, problem=problem)


# Checkpoints: a chain alone does not stop someone who can write the database, who could
# recompute the hashes. So every minute the number of events and the root of a Merkle tree
# (RFC 6962) over all of them, in the order of their ids, are signed with an Ed25519 key the
# database does not hold (C2SP signed note), and copied to the warehouse and to a directory.


class CopiesMissing(Exception):
    """A signed note could not be copied to a place outside the database."""


def _note_path(kind: str, size: int, at: datetime) -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR) / f"{size:020}-{at:%Y%m%dT%H%M%S%f}.{kind}"


def _notes_to_copy() -> list[tuple[str, int, str, datetime]]:
    """Return the signed notes every place outside the database must hold."""
    # The restore statements, and the latest checkpoint alone: its root covers every event before.
    notes = [
        ("restore", r.kept, r.note, r.created_at)
        for r in AuditRestore.objects.order_by("created_at")
    ]
    latest = AuditCheckpoint.objects.order_by("-tree_size").first()
    if latest is not None:
        notes.append(("checkpoint", latest.tree_size, latest.note, latest.created_at))
    # And every published policy as it stands (its deadline may have moved): signed again each
    # time, the same note while nothing changes (Ed25519 signatures are deterministic).
    key = signer()
    notes += [
        ("terms", p.version, key.sign(_terms(p).text()), p.published_at)
        for p in ConsentPolicy.objects.filter(published_at__isnull=False).order_by("version")
        if p.published_at is not None
    ]
    return notes


def _terms(policy: ConsentPolicy) -> Terms:
    return Terms(settings.AUDIT_LOG_ORIGIN, policy_copy_fields(policy))


def _copy_to_warehouse(kind: str, size: int, note: str) -> None:
    if kind == "terms":  # size: the version
        defaults = {"version": size, "note": note}
        TermsCopy.objects.get_or_create(sha256=_sha256(note), defaults=defaults)
    else:
        CheckpointCopy.objects.get_or_create(note=note, defaults={"tree_size": size})


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _note_in_directory(kind: str, size: int, note: str, at: datetime) -> bool:
    try:
        return _note_path(kind, size, at).read_text() == note
    except (OSError, UnicodeDecodeError):
        return False


def copies_missing() -> list[str]:
    """Return the places outside the database that lack a note they must hold."""
    notes = _notes_to_copy()
    missing = []
    if not all(_note_in_directory(kind, size, note, at) for kind, size, note, at in notes):
        missing.append("directory")
    checkpoints = [note for kind, _, note, _ in notes if kind != "terms"]
    terms = [_sha256(note) for kind, _, note, _ in notes if kind == "terms"]
    try:
        held = CheckpointCopy.objects.filter(note__in=checkpoints).count()
        held += TermsCopy.objects.filter(sha256__in=terms).count()
    except DatabaseError:
        held = -1
    if held < len(notes):
        missing.append("warehouse")
    return missing


def copies_complete() -> None:
    """Copy the notes of _notes_to_copy to the directory and the warehouse, where missing."""
    # A place that cannot be written does not keep the other from being; CopiesMissing then says
    # which failed and why.
    failed = []
    notes = _notes_to_copy()
    try:
        for kind, size, note, at in notes:
            if not _note_in_directory(kind, size, note, at):
                path = _note_path(kind, size, at)
                path.parent.mkdir(parents=True, exist_ok=True)
                # Whole or not at all: a file cut short (a full disk, a killed worker) would
                # never verify, and stay.
                written = path.with_name(f".{path.name}.writing")
                written.write_text(note)
                written.replace(path)
    except OSError as error:
        failed.append(f"the directory {settings.AUDIT_CHECKPOINT_DIR}: {error}")
    try:
        for kind, size, note, _ in notes:
            _copy_to_warehouse(kind, size, note)
    except DatabaseError as error:
        failed.append(f"the warehouse database: {error}")
    if failed:
        raise CopiesMissing(f"Not copied outside the database to {'; '.join(failed)}")


def audit_checkpoint(*, now: datetime | None = None) -> AuditCheckpoint | None:
    """Sign a checkpoint of the events since the last one, copy it outside; None if none came."""
    checkpoint = _checkpoint_sign(now=now or timezone.now())
    # With no new event too: a copy the last checkpoint lacks is made all the same. On
    # CopiesMissing the checkpoint is kept, and the next one tries again.
    copies_complete()
    return checkpoint


def _checkpoint_sign(*, now: datetime) -> AuditCheckpoint | None:
    """Sign a checkpoint of the events written since the last one, in the database only."""
    # Settled events only: one whose transaction is still open could otherwise commit inside a
    # range already signed.
    settled = now - timedelta(seconds=settings.AUDIT_CHECKPOINT_SETTLE_SECONDS)
    with transaction.atomic():
        last = AuditCheckpoint.objects.select_for_update().order_by("-tree_size").first()
        frontier = Frontier.from_json(last.tree_size, last.frontier) if last else Frontier()
        after = last.last_event_id if last else 0
        through = ConsentEvent.objects.filter(pk__gt=after, created_at__lte=settled).aggregate(
            through=Max("pk")
        )["through"]
        if through is None:
            return None
        nodes: list[AuditNode] = []

        def keep(level: int, index: int, node: bytes) -> None:
            if level >= STORED_LEVEL:
                nodes.append(AuditNode(level=level, index=index, hash=node.hex()))

        for _event_id, fields, _stored in _events(pk__gt=after, pk__lte=through):
            frontier.append(leaf_hash(bytes.fromhex(hash_of(fields))), on_full=keep)
        root = frontier.root()
        text = Checkpoint(settings.AUDIT_LOG_ORIGIN, frontier.size, root, now).text()
        AuditNode.objects.bulk_create(nodes)
        return AuditCheckpoint.objects.create(
            tree_size=frontier.size,
            last_event_id=through,
            root_hash=root.hex(),
            frontier=frontier.to_json(),
            note=signer().sign(text),
            created_at=now,
        )


@dataclass(frozen=True)
class KnownCheckpoint:
    size: int
    root: bytes
    time: datetime
    where: tuple[str, ...]


def _notes() -> tuple[list[tuple[str, str]], list[str]]:
    """Return every signed note of the log in and outside the database, and what went unread."""
    notes = [("database", note) for note in AuditCheckpoint.objects.values_list("note", flat=True)]
    notes += [("database", note) for note in AuditRestore.objects.values_list("note", flat=True)]
    outside, unread = _notes_outside(CheckpointCopy, (".checkpoint", ".restore"))
    return notes + outside, unread


def _notes_outside(
    copies: type[CheckpointCopy] | type[TermsCopy], suffixes: tuple[str, ...]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Return the notes of one kind copied outside the database, and what could not be read."""
    # What can be read is verified; what cannot is said, and is no evidence of tampering.
    notes, unread = [], []
    try:
        notes += [("warehouse", note) for note in copies.objects.values_list("note", flat=True)]
    except Exception as error:  # the warehouse away, or its table missing
        unread.append(f"the warehouse's copies could not be read: {error}")
    try:
        paths = sorted(Path(settings.AUDIT_CHECKPOINT_DIR).iterdir())
    except FileNotFoundError:  # nothing copied there yet
        paths = []
    except OSError as error:  # a file in its place, or not ours to read
        unread.append(f"the directory's copies could not be read: {error}")
        paths = []
    for path in paths:
        if path.suffix not in suffixes:  # another kind, or a copy being written
            continue
        try:
            notes.append(("directory", path.read_text()))
        except (OSError, UnicodeDecodeError) as error:
            unread.append(f"the directory's copy {path.name} could not be read: {error}")
    return notes, unread


def known_checkpoints() -> tuple[dict[int, KnownCheckpoint], list[Restore], list[str], list[str]]:
    """Return the checkpoints that verify, by size, the restore statements, and what is amiss."""
    # What is amiss: evidence of tampering, then the places that could not be read.
    keys = verifiers()
    notes, unread = _notes()
    problems = []
    checkpoints: list[tuple[Checkpoint, str]] = []
    restores: dict[str, Restore] = {}
    unverified: Counter[tuple[str, str]] = Counter()
    places: dict[str, list[str]] = {}  # a note kept in three places is verified once
    unknown_key = False
    for where, note in notes:
        places.setdefault(note, []).append(where)
    for note, wheres in places.items():
        try:
            text, _key = note_open(note, keys)
            if text.splitlines()[0].endswith(RESTORE_SUFFIX):
                restore = Restore.parse(text)
                restores.setdefault(text, restore)
            else:
                checkpoints += [(Checkpoint.parse(text), where) for where in wheres]
        except NoteError as error:
            unverified.update((where, str(error)) for where in wheres)
            unknown_key = unknown_key or isinstance(error, NoteKeyUnknown)
    for (where, reason), count in unverified.items():  # the same reason once, with its count
        which = f"a note in the {where} does" if count == 1 else f"{count} notes in the {where} do"
        problems.append(f"{which} not verify: {reason.rstrip('.')}")
    if unknown_key:
        problems.append(
            "if a key named was once this log's signing key, its verifier key belongs in "
            "AUDIT_VERIFY_KEYS; if not, what it signed is forged"
        )
    found: dict[int, KnownCheckpoint] = {}
    # By size, with where each was found, less those a signed restore statement set aside.
    for checkpoint, where in checkpoints:
        if any(r.sets_aside(checkpoint) for r in restores.values()):
            continue
        held = found.get(checkpoint.size)
        if held is None:
            found[checkpoint.size] = KnownCheckpoint(
                checkpoint.size, checkpoint.root, checkpoint.time, (where,)
            )
        elif held.root != checkpoint.root:
            problems.append(f"two signed checkpoints of {checkpoint.size} events disagree")
        elif where not in held.where:
            found[checkpoint.size] = replace(held, where=(*held.where, where))
    return found, sorted(restores.values(), key=lambda r: r.time), problems, unread


def terms_copies() -> tuple[dict[int, ConsentPolicy], set[int], list[str]]:
    """Return the published terms copied outside the database, those in doubt, and problems."""
    # Only copies whose signature verifies, each version as it last stood (its latest deadline).
    # A version copied with two texts is in doubt: its number was published again, after a
    # restore, and which text a choice was made under cannot be told.
    try:
        keys = verifiers()
    except NoteError as error:  # a key in the settings that does not read
        return {}, set(), [f"nothing was verified: {error}"]
    notes, problems = _notes_outside(TermsCopy, (".terms",))
    found: dict[int, ConsentPolicy] = {}
    texts: dict[int, set[str]] = defaultdict(set)
    for note in {note for _, note in notes}:
        try:
            copy = policy_from_copy(Terms.parse(note_open(note, keys)[0]).fields)
        except (NoteError, KeyError, ValueError, TypeError) as error:
            problems.append(f"a copy of terms does not verify: {error}")
            continue
        texts[copy.version].add(copy.content_hash)
        held = found.get(copy.version)
        if held is None or copy.decision_deadline > held.decision_deadline:
            found[copy.version] = copy
    doubts = {version for version, hashes in texts.items() if len(hashes) > 1}
    for version in sorted(doubts):
        problems.append(f"version {version} is copied with two texts: it was published again")
        del found[version]
    return found, doubts, problems


@dataclass
class AuditReport:
    verdict: str
    events: int
    checkpoint: KnownCheckpoint | None  # the latest
    detail: str
    kept: int = 0  # the size of the latest checkpoint the log agrees with


def audit_verify() -> AuditReport:
    """Recompute every chain and the Merkle tree; tell intact, tampered, restored, incomplete."""
    try:
        checkpoints, restores, problems, unread = known_checkpoints()
    except NoteError as error:  # a key in the settings that does not read
        return AuditReport(Verdict.INCOMPLETE, 0, None, f"nothing was verified: {error}")
    chains, frontier = Chains(), Frontier()
    first_break: AuditBreak | None = None
    mismatched: list[int] = []
    for event_id, fields, stored in _events():
        computed = hash_of(fields)
        broken = chains.check(event_id, fields, stored, computed)
        first_break = first_break or broken
        frontier.append(leaf_hash(bytes.fromhex(computed)))
        held = checkpoints.get(frontier.size)
        if held is not None and held.root != frontier.root():
            mismatched.append(frontier.size)
    size = frontier.size
    latest = checkpoints[max(checkpoints)] if checkpoints else None
    agreed = [s for s in checkpoints if s <= size and s not in mismatched]
    # A restore brings back the database's own checkpoints of its time, never one ahead of its
    # events: events missing behind a checkpoint the database holds were removed.
    inside = max((s for s, c in checkpoints.items() if "database" in c.where), default=0)
    if inside > size:
        problems.append(
            f"the database's own checkpoint covers {inside} events, but only {size} are left: "
            "events were removed"
        )
    if first_break is not None or mismatched or problems:
        # Tampered: events missing, changed or reordered before a checkpoint.
        detail = "; ".join(
            [*problems]
            + ([f"the first broken event is {first_break}"] if first_break else [])
            + (
                [
                    f"the events do not match the signed checkpoint of {mismatched[0]} events: "
                    "some before it were changed, removed or reordered"
                ]
                if mismatched
                else []
            )
        )
        verdict = Verdict.TAMPERED
    elif latest is not None and latest.size > size:
        # Restored: shorter than a checkpoint outside the database, yet agreeing with an older one.
        verdict = Verdict.RESTORED
        detail = (
            f"the log holds {size} events, but a checkpoint signed at {latest.time:%Y-%m-%d %H:%M} "
            f"UTC (found in the {', '.join(latest.where)}) covers {latest.size}: events missing "
            f"from its end: {latest.size - size}; the log agrees with the "
            f"checkpoint of {max(agreed, default=0)} events: it was restored from an older backup"
        )
    else:
        # Intact: events written after the latest checkpoint are fine.
        since = size - latest.size if latest else size
        detail = (
            f"{size} events; all agree with the checkpoint of {latest.size} events signed at "
            f"{latest.time:%Y-%m-%d %H:%M} UTC; {since} written after that checkpoint"
            if latest
            else f"{size} events; no checkpoint yet"
        )
        for restore in restores:
            detail += (
                f"; restored from a backup on {restore.time:%Y-%m-%d %H:%M} UTC: its events agreed "
                f"with the signed checkpoint of {restore.kept}, and those written after the "
                f"backup was taken, of the {restore.lost_through} signed before the restore, "
                "were lost"
            )
        verdict = Verdict.INTACT
    if unread:
        # A place that could not be read is no evidence of tampering, nor proof of its absence.
        detail = "; ".join([*unread, f"what could be read: {detail}"])
        verdict = Verdict.INCOMPLETE if verdict == Verdict.INTACT else verdict
    return AuditReport(verdict, size, latest, detail, kept=max(agreed, default=0))


def audit_verify_and_record() -> AuditVerification:
    """Verify the whole log and keep what was found, for the support pages and the admin."""
    report = audit_verify()
    return AuditVerification.objects.create(
        verdict=report.verdict,
        events=report.events,
        checkpoint_size=report.checkpoint.size if report.checkpoint else None,
        detail=report.detail,
    )


# Inclusion proofs, for receipts


def _leaves(start: int, end: int, before: AuditCheckpoint | None) -> list[bytes]:
    """Return the leaf hashes of the events at positions start to end of the tree."""
    base_size = before.tree_size if before else 0
    base_id = before.last_event_id if before else 0
    fields = ConsentEvent.objects.filter(pk__gt=base_id).order_by("pk").values_list(*HASHED)
    rows = fields[start - base_size : end - base_size]
    return [leaf_hash(bytes.fromhex(hash_of(dict(zip(HASHED, row, strict=True))))) for row in rows]


def _subtree(start: int, end: int) -> bytes:
    """Return the hash of the subtree over leaves start to end, from kept nodes where it can."""
    size = end - start
    if size >= 1 << STORED_LEVEL and size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        node = AuditNode.objects.filter(level=level, index=start >> level).first()
        if node is not None:
            return bytes.fromhex(node.hash)
    if size <= 1 << STORED_LEVEL:
        before = AuditCheckpoint.objects.filter(tree_size__lte=start).order_by("-tree_size")
        frontier = Frontier()
        frontier.extend(_leaves(start, end, before.first()))
        return frontier.root()
    k = split(size)
    return node_hash(_subtree(start, start + k), _subtree(start + k, end))


@dataclass(frozen=True)
class Inclusion:
    checkpoint: AuditCheckpoint
    index: int
    path: list[bytes]


def inclusion_of(event: ConsentEvent) -> Inclusion | None:
    """Return the proof that the event is in the latest checkpoint's tree; None until it is."""
    checkpoint = AuditCheckpoint.objects.order_by("-tree_size").first()
    if checkpoint is None or event.pk > checkpoint.last_event_id:
        return None
    before = (
        AuditCheckpoint.objects.filter(last_event_id__lt=event.pk).order_by("-tree_size").first()
    )
    base_size, base_id = (before.tree_size, before.last_event_id) if before else (0, 0)
    index = base_size + ConsentEvent.objects.filter(pk__gt=base_id, pk__lt=event.pk).count()
    return Inclusion(checkpoint, index, inclusion_path(index, checkpoint.tree_size, _subtree))


def audit_restore_record(*, kept: int, lost_through: int, detail: str) -> AuditRestore:
    """Sign and keep, in and outside the database, that it was restored from a backup."""
    # The backup kept `kept` events of a log signed up to `lost_through`.
    now = timezone.now()
    text = Restore(settings.AUDIT_LOG_ORIGIN, kept, lost_through, now).text()
    restore = AuditRestore.objects.create(
        kept=kept,
        lost_through=lost_through,
        detail=detail,
        note=signer().sign(text),
        created_at=now,
    )
    try:
        copies_complete()
    except CopiesMissing as error:  # the recovery goes on; the checkpoint task tries again
        logger.error("%s", error)
    return restore
