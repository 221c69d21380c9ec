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
