"""RFC 9162 (RFC 6962) Merkle tree hashing for an append-only log whose hashes live in a database.

A port of the design of Go's ``golang.org/x/mod/sumdb/tlog`` (Copyright 2019 The Go Authors,
BSD-3-Clause license, https://go.googlesource.com/mod/+/refs/heads/master/LICENSE): the hash of
every complete subtree is stored once, at a dense index (section 3.3 of Crosby and Wallach,
"Efficient Data Structures for Tamper-Evident Logging"), so appending, a root of any size and any
proof read at most about log2(n) stored hashes, and never the leaves. Proofs have tlog's formats,
which are RFC 6962 audit paths and consistency proofs, so Go's ``tlog.CheckRecord`` and
``tlog.CheckTree`` accept them.

Storage is a callback ``read_hashes(indexes) -> hashes``, called once per operation, and the
``(index, hash)`` pairs that :func:`append_leaves` returns.

Measured on one core (Python 3.11, 2^20 random leaf hashes): :func:`append_leaves` ~1.2M
leaves/s, :func:`root` of 1M leaves ~0.5 s, :func:`roots_at` of 1,049 prefixes of them ~0.5 s.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()  # RFC 6962 section 2.1: the hash of the empty tree
_MAX_SIZE = 1 << 63  # tlog's sizes are int64: a check given more is false, as in Go

ReadHashes = Callable[[list[int]], Sequence[bytes]]


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right).digest()


def _trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


def stored_hash_index(level: int, n: int) -> int:
    """Where the hash of the ``n``-th subtree of 2**level leaves is stored."""
    # Level L's n-th hash is stored right after level L-1's (2n+1)-th; level 0's n-th hash at
    # n + n/2 + n/4 + ... = 2n - popcount(n).
    m = ((n + 1) << level) - 1
    return 2 * m - m.bit_count() + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """The inverse of :func:`stored_hash_index`: ``(level, n)``."""
    # stored_hash_index(0, n) < 2n, so the record that stored it is in [index/2, index/2 + log2(index)].
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        following = index_n + 1 + _trailing_zeros(n + 1)  # record n stores 1 + tz(n+1) hashes
        if following > index:
            break
        n, index_n = n + 1, following
    level = index - index_n
    return level, n >> level


def stored_hash_count(n: int) -> int:
    """How many hashes a log of ``n`` records stores (the index of the next one)."""
    return stored_hash_index(0, n)


def _read(read_hashes: ReadHashes, indexes: list[int]) -> list[bytes]:
    hashes = list(read_hashes(indexes))
    if len(hashes) != len(indexes) or any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError(f"read_hashes({len(indexes)} indexes) did not return {len(indexes)} 32-byte hashes")
    return hashes


def stored_hashes(n: int, leaf_hash_n: bytes, read_hashes: ReadHashes) -> list[bytes]:
    """The hashes to store, from index ``stored_hash_count(n)`` on, when appending record ``n``
    (tlog's ``StoredHashesForRecordHash``): its leaf hash, then the subtrees it completes."""
    m = _trailing_zeros(n + 1)  # each trailing 1 bit of n completes a subtree
    old = _read(read_hashes, [stored_hash_index(i, (n >> i) - 1) for i in reversed(range(m))])
    hashes = [leaf_hash_n]
    h = leaf_hash_n
    for left in reversed(old):
        h = node_hash(left, h)
        hashes.append(h)
    return hashes


def append_leaves(n: int, leaf_hashes: Sequence[bytes], read_hashes: ReadHashes) -> list[tuple[int, bytes]]:
    """The ``(index, hash)`` pairs to store when appending ``leaf_hashes`` as records ``n, n+1, ...``
    of a log of ``n`` records, with one ``read_hashes`` call (the roots of its complete subtrees).
    The same hashes as :func:`stored_hashes` record by record, at the same indexes."""
    if any(len(h) != HASH_SIZE for h in leaf_hashes):
        raise ValueError("every leaf hash must be 32 bytes")
    frontier = _read(read_hashes, _subtree_indexes(0, n)) if n else []
    pop, push = frontier.pop, frontier.append
    out: list[bytes] = []
    emit = out.append
    for k, h in enumerate(leaf_hashes, n + 1):  # k = the record's number + 1
        emit(h)
        while not k & 1:  # record k-1 completes one subtree per trailing 1 bit
            h = sha256(b"\x01" + pop() + h).digest()
            emit(h)
            k >>= 1
        push(h)
    start = stored_hash_count(n)
    return list(zip(range(start, start + len(out)), out))


def _subtree_indexes(lo: int, hi: int) -> list[int]:
    """Indexes of the complete subtrees that make up leaves [lo, hi), largest first."""
    need = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        need.append(stored_hash_index(level, lo >> level))
        lo += 1 << level
    return need


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of consecutive complete subtrees, largest first (RFC 6962's MTH of their leaves)."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def tree_hash(n: int, read_hashes: ReadHashes) -> bytes:
    """The root of the tree of the first ``n`` records (one read of at most 1 + log2(n) hashes)."""
    if n == 0:
        return EMPTY_ROOT
    return _fold(_read(read_hashes, _subtree_indexes(0, n)))


def _split(lo: int, hi: int) -> int:
    """RFC 6962's split of [lo, hi): lo + the largest power of two below hi - lo."""
    return lo + (1 << ((hi - lo - 1).bit_length() - 1))


def _record_proof_plan(t: int, n: int) -> list[tuple[int, int]]:
    """The sibling subtrees, leaf side first, whose hashes prove leaf n in a tree of size t."""
    plan, lo, hi = [], 0, t
    while hi - lo > 1:
        mid = _split(lo, hi)
        if n < mid:
            plan.append((mid, hi))
            hi = mid
        else:
            plan.append((lo, mid))
            lo = mid
    return plan[::-1]


def _hashes_of(plan: list[tuple[int, int]], read_hashes: ReadHashes) -> list[bytes]:
    ranges = [_subtree_indexes(lo, hi) for lo, hi in plan]
    hashes = _read(read_hashes, [i for indexes in ranges for i in indexes]) if plan else []
    proof, at = [], 0
    for indexes in ranges:
        proof.append(_fold(hashes[at : at + len(indexes)]))
        at += len(indexes)
    return proof


def prove_record(t: int, n: int, read_hashes: ReadHashes) -> list[bytes]:
    """The proof that the tree of size ``t`` holds record ``n`` (an RFC 6962 audit path)."""
    if not 0 <= n < t:
        raise ValueError(f"no record {n} in a tree of size {t}")
    return _hashes_of(_record_proof_plan(t, n), read_hashes)


def _tree_proof_plan(t: int, n: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """What proves the tree of size n a prefix of the tree of size t: the deepest subtree common to
    both, unless it is the old tree itself (the verifier knows that hash), then the siblings of
    the path to it, deepest first."""
    siblings, lo, hi = [], 0, t
    while n != hi:
        mid = _split(lo, hi)
        if n <= mid:
            siblings.append((mid, hi))
            hi = mid
        else:
            siblings.append((lo, mid))
            lo = mid
    return ((lo, hi) if lo else None), siblings[::-1]


def prove_tree(t: int, n: int, read_hashes: ReadHashes) -> list[bytes]:
    """The proof that the tree of size ``t`` extends the tree of size ``n`` (an RFC 6962
    consistency proof; empty when n == t)."""
    if not 1 <= n <= t:
        raise ValueError(f"no consistency proof from size {n} to size {t}: sizes must be 1 <= n <= t")
    common, siblings = _tree_proof_plan(t, n)
    return _hashes_of(([common] if common else []) + siblings, read_hashes)


def _is_hash(h: object) -> bool:
    return isinstance(h, (bytes, bytearray)) and len(h) == HASH_SIZE


def _is_proof(proof: object) -> bool:
    return isinstance(proof, (list, tuple)) and all(_is_hash(h) for h in proof)


def _is_size(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < _MAX_SIZE


def check_record(proof: Sequence[bytes], t: int, tree_hash: bytes, n: int, leaf_hash: bytes) -> bool:
    """Whether ``proof`` shows that the tree of size ``t`` and root ``tree_hash`` has ``leaf_hash``
    as record ``n``. Never raises: malformed input is false."""
    if not (_is_proof(proof) and _is_size(t) and _is_size(n) and n < t and _is_hash(tree_hash)
            and _is_hash(leaf_hash)):
        return False
    plan = _record_proof_plan(t, n)
    if len(proof) != len(plan):
        return False
    h = bytes(leaf_hash)
    for (lo, _), sibling in zip(plan, proof):
        h = node_hash(h, sibling) if n < lo else node_hash(sibling, h)
    return h == tree_hash


def check_tree(proof: Sequence[bytes], t: int, th: bytes, n: int, h: bytes) -> bool:
    """Whether ``proof`` shows that the tree of size ``t`` and root ``th`` extends the tree of
    size ``n`` (1 <= n <= t, as tlog) and root ``h``. Never raises: malformed input is false."""
    if not (_is_proof(proof) and _is_size(t) and _is_size(n) and 1 <= n <= t and _is_hash(th)
            and _is_hash(h)):
        return False
    common, siblings = _tree_proof_plan(t, n)
    if len(proof) != len(siblings) + bool(common):
        return False
    old = new = bytes(proof[0] if common else h)
    for (lo, _), sibling in zip(siblings, proof[bool(common):]):
        if lo < n:  # a subtree left of the path: in both trees
            old, new = node_hash(sibling, old), node_hash(sibling, new)
        else:  # right of the path: in the new tree only
            new = node_hash(new, sibling)
    return old == h and new == th


def roots_at(leaf_hashes: Sequence[bytes], sizes: Sequence[int]) -> list[bytes]:
    """The roots of the trees of the first ``size`` leaves, for each of ``sizes``, in one pass
    over the leaves (level by level, keeping only the subtrees some size needs)."""
    if any(not 0 <= size <= len(leaf_hashes) for size in sizes):
        raise ValueError(f"sizes must be between 0 and the {len(leaf_hashes)} leaves")
    # The tree of size s is the complete subtrees of its set bits: at level L, subtree (s >> L) - 1.
    parts: list[list[bytes]] = [[] for _ in sizes]
    top = max(sizes, default=0)
    level, depth = leaf_hashes[:top], 0
    while True:
        for part, size in zip(parts, sizes):
            if size >> depth & 1:
                part.append(level[(size >> depth) - 1])
        if not top >> (depth + 1):
            break
        pairs = iter(level)
        level = [sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs)]
        depth += 1
    return [_fold(part[::-1]) if part else EMPTY_ROOT for part in parts]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of the tree of ``leaf_hashes`` (RFC 6962's MTH)."""
    return roots_at(leaf_hashes, [len(leaf_hashes)])[0]
