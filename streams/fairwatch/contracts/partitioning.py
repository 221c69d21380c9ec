"""The one partitioning function from event_id to input partition, shared by worker and producers.

An event and its outcomes must reach the same partition (the join lives there). Producers that
send single records keyed by event_id get Kafka's default partitioner: murmur2 over the key's
bytes, sign bit cleared, modulo the partition count (Java client ``Utils.toPositive(murmur2(key))
% numPartitions``; kafka-python's ``DefaultPartitioner`` is the same function). Producers that
send batch envelopes choose the partition themselves and must choose it the same way, so this
module is that function, written out once and pinned by fixed vectors from Kafka's own tests.

It is part of the wire contract: changing it would split events from their outcomes. The input
topics' partition count is fixed once created for the same reason.

Examples
--------
>>> murmur2(b"21")  # Kafka UtilsTest: -973932308 as a signed 32-bit int
3321034988
>>> partition_for("e-1", 8)
7
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c) as an unsigned 32-bit int."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(event_id: str, partitions: int) -> int:
    """The input partition of ``event_id`` on topics with ``partitions`` partitions."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(event_id.encode("utf-8")) & 0x7FFFFFFF) % partitions


_SEED, _M = 0x9747B28C, np.uint32(0x5BD1E995)


def partitions_for(event_ids: Iterable[str], partitions: int) -> np.ndarray:
    """:func:`partition_for` of many ids at once (numpy; uint32 arithmetic wraps like the C original)."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    ids = event_ids if isinstance(event_ids, list) else list(event_ids)
    n = len(ids)
    if n == 0:
        return np.zeros(0, np.int64)
    text = "".join(ids)
    if text.isascii():  # one encode for all (the contract's ids are ASCII): bytes = characters
        lengths = np.fromiter(map(len, ids), np.int64, n)
        flat = np.frombuffer(text.encode("ascii"), np.uint8)
    else:
        encoded = [event_id.encode("utf-8") for event_id in ids]
        lengths = np.fromiter(map(len, encoded), np.int64, n)
        flat = np.frombuffer(b"".join(encoded), np.uint8)
    width = max(4, (int(lengths.max()) + 3) & ~3)  # one block at least: an empty id has one too
    # each id's bytes as one row, zero padded: gather from the joined bytes, blank what is past its end
    starts = np.cumsum(lengths) - lengths
    within = np.arange(width)
    gathered = np.concatenate([flat, np.zeros(width, np.uint8)])[starts[:, None] + within]
    padded = np.where(within < lengths[:, None], gathered, np.uint8(0))
    words = padded.view("<u4").astype(np.uint32)  # (n, width / 4) little-endian blocks
    m = _M
    with np.errstate(over="ignore"):
        h = np.uint32(_SEED) ^ lengths.astype(np.uint32)
        whole = lengths // 4
        for j in range(words.shape[1]):
            k = words[:, j] * m
            k ^= k >> np.uint32(24)
            k *= m
            mixed = (h * m) ^ k
            h = np.where(j < whole, mixed, h)
        rest = lengths & 3
        tail = words[np.arange(n), np.minimum(whole, words.shape[1] - 1)]  # the partial block, zero padded
        tail = np.where(rest > 0, tail, np.uint32(0)).astype(np.uint32)
        h = np.where(rest > 0, (h ^ tail) * m, h)
        h ^= h >> np.uint32(13)
        h *= m
        h ^= h >> np.uint32(15)
    return ((h & np.uint32(0x7FFFFFFF)).astype(np.int64)) % partitions
