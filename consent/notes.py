"""Signed notes (C2SP signed-note) with Ed25519 keys, and audit checkpoints written as them."""

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = b"\x01"
DASH = "\u2014"


class NoteError(Exception):
    """A note, key or checkpoint that cannot be read or does not verify."""


class NoteKeyUnknown(NoteError):
    """A note signed by none of the keys given."""


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> "Verifier":
        try:
            name, key_id, encoded = text.strip().split("+", 2)  # base64 may hold a "+"
            raw = base64.b64decode(encoded, validate=True)
        except ValueError as error:
            raise NoteError(f"Not a verifier key: {text!r}") from error
        if raw[:1] != ED25519 or len(raw) != 33:
            raise NoteError(f"Not an Ed25519 verifier key: {text!r}")
        public = Ed25519PublicKey.from_public_bytes(raw[1:])
        if _key_id(name, raw[1:]).hex() != key_id:
            raise NoteError(f"The verifier key's id does not match its key: {text!r}")
        return cls(name, bytes.fromhex(key_id), public)

    def __str__(self) -> str:
        raw = _raw(self.public)
        encoded = base64.b64encode(ED25519 + raw).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


@dataclass(frozen=True)
class Signer:
    name: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> "Signer":
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> "Signer":
        try:
            private, key, name, key_id, encoded = text.strip().split("+", 4)
            raw = base64.b64decode(encoded, validate=True)
        except ValueError as error:
            raise NoteError("Not a signer key (PRIVATE+KEY+name+id+key).") from error
        if (private, key) != ("PRIVATE", "KEY") or raw[:1] != ED25519 or len(raw) != 33:
            raise NoteError("Not an Ed25519 signer key (PRIVATE+KEY+name+id+key).")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier.key_id.hex() != key_id:
            raise NoteError("The signer key's id does not match its key.")
        return signer

    @property
    def verifier(self) -> Verifier:
        public = self.private.public_key()
        return Verifier(self.name, _key_id(self.name, _raw(public)), public)

    def __str__(self) -> str:
        seed = self.private.private_bytes_raw()
        encoded = base64.b64encode(ED25519 + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    def sign(self, text: str) -> str:
        """Return the note: the text, a blank line, this key's signature."""
        if not text.endswith("\n"):
            raise NoteError("A note's text ends with a newline.")
        signature = self.private.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{text}\n{DASH} {self.name} {encoded}\n"


def note_open(note: str, verifiers: list[Verifier]) -> tuple[str, Verifier]:
    """Return a note's text and the known key that signed it; raise NoteError if none did."""
    text, separator, signatures = note.partition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise NoteError("Not a signed note.")
    text += "\n"
    signers, broken = [], []
    for line in signatures.splitlines():
        dash, _, rest = line.partition(" ")
        name, _, encoded = rest.partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        signers.append(f"{name}+{raw[:4].hex()}")
        for verifier in verifiers:
            if dash != DASH or verifier.name != name or raw[:4] != verifier.key_id:
                continue
            try:
                verifier.public.verify(raw[4:], text.encode())
            except InvalidSignature:
                broken.append(signers[-1])
                continue
            return text, verifier
    if broken:
        raise NoteError(f"Its signature by {', '.join(broken)} does not match its text.")
    known = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers)
    raise NoteKeyUnknown(f"Signed by {', '.join(signers) or 'no key'}, not by {known}.")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: datetime

    def text(self) -> str:
        # C2SP tlog-checkpoint: origin, size, base64 root hash; and here one more line, the time.
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\ntime {self.time.isoformat()}\n"

    @classmethod
    def parse(cls, text: str) -> "Checkpoint":
        lines = text.splitlines()
        try:
            origin, size, root, time_line = lines[:4]
            when = datetime.fromisoformat(time_line.removeprefix("time "))
            return cls(origin, int(size), base64.b64decode(root, validate=True), when)
        except ValueError as error:
            raise NoteError("Not an audit checkpoint.") from error


def checkpoint_open(note: str, verifiers: list[Verifier]) -> tuple[Checkpoint, Verifier]:
    """Return the checkpoint a signed note states, and the key that signed it."""
    text, verifier = note_open(note, verifiers)
    return Checkpoint.parse(text), verifier


RESTORE_SUFFIX = " restore"


@dataclass(frozen=True)
class Restore:
    """A statement that the log was restored from a backup that kept `kept` events."""

    origin: str
    kept: int
    lost_through: int
    time: datetime

    def text(self) -> str:
        return (
            f"{self.origin}{RESTORE_SUFFIX}\n{self.kept}\n{self.lost_through}\n"
            f"time {self.time.isoformat()}\n"
        )

    @classmethod
    def parse(cls, text: str) -> "Restore":
        lines = text.splitlines()
        try:
            origin, kept, lost, time_line = lines[:4]
            when = datetime.fromisoformat(time_line.removeprefix("time "))
            return cls(origin.removesuffix(RESTORE_SUFFIX), int(kept), int(lost), when)
        except ValueError as error:
            raise NoteError("Not an audit restore statement.") from error

    def sets_aside(self, checkpoint: Checkpoint) -> bool:
        """Tell whether the checkpoint describes events this restore lost."""
        return checkpoint.size > self.kept and checkpoint.time < self.time


TERMS_SUFFIX = " terms"


@dataclass(frozen=True)
class Terms:
    """A published policy's fields, as its copies outside the database keep them."""

    origin: str
    fields: dict[str, Any]

    def text(self) -> str:
        # One line of JSON: a note's text ends at its first blank line, and terms may hold one.
        return f"{self.origin}{TERMS_SUFFIX}\n{json.dumps(self.fields, sort_keys=True)}\n"

    @classmethod
    def parse(cls, text: str) -> "Terms":
        origin, _, rest = text.partition("\n")
        try:
            fields = json.loads(rest)
        except ValueError as error:
            raise NoteError("Not a copy of published terms.") from error
        if not origin.endswith(TERMS_SUFFIX) or not isinstance(fields, dict):
            raise NoteError("Not a copy of published terms.")
        return cls(origin.removesuffix(TERMS_SUFFIX), fields)
