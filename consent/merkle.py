"""Merkle trees of an append-only log, as RFC 6962 and RFC 9162 define them."""

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass
class Frontier:
    """The right edge of a tree: one subtree root per 1 bit of its size, the largest first."""

    # Enough to append leaves and to say the root, so that a tree of millions of leaves grows one
    # leaf at a time without being read again.
    size: int = 0
    roots: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes, *, on_full: Callable[[int, int, bytes], None] | None = None):
        """Add a leaf's hash; on_full(level, index, hash) hears of each perfect subtree made."""
        node, level, index = leaf, 0, self.size
        self.size += 1
        while index & 1:  # a left sibling of the same size waits on the edge: merge them
            node = node_hash(self.roots.pop(), node)
            level, index = level + 1, index >> 1
            if on_full is not None:
                on_full(level, index, node)
        self.roots.append(node)

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.roots:
            return EMPTY_ROOT
        node = self.roots[-1]
        for left in reversed(self.roots[:-1]):
            node = node_hash(left, node)
        return node

    def to_json(self) -> list[str]:
        return [root.hex() for root in self.roots]

    @classmethod
    def from_json(cls, size: int, roots: list[str]) -> "Frontier":
        frontier = cls(size, [bytes.fromhex(root) for root in roots])
        if len(frontier.roots) != size.bit_count():
            raise ValueError("A frontier holds one root per 1 bit of the tree's size.")
        return frontier


def split(size: int) -> int:
    """Return the size of a tree's left subtree: the largest power of two below its size."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_path(index: int, size: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """Return the audit path of leaf `index` in a tree of `size` leaves (RFC 9162, 2.1.3.1)."""
    # subtree(start, end) gives the hash of the leaves start to end.
    if size <= 1:
        return []
    k = split(size)
    if index < k:
        return [*inclusion_path(index, k, subtree), subtree(k, size)]
    return [
        *inclusion_path(index - k, size - k, lambda a, b: subtree(a + k, b + k)),
        subtree(0, k),
    ]


def root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """Return where a leaf's audit path leads (RFC 9162, 2.1.3.2), or None if it does not fit."""
    if index >= size:
        return None
    fn, sn, node = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return node if sn == 0 else None
