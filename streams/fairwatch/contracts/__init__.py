"""Contracts: what crosses the wire, decoded without I/O.

Typed input records (match events, verified outcomes), their decoder with precise rejections,
batch envelopes, the one partitioning function from event_id to input partition, and the topic
names. Every later stage speaks these types.
"""

from fairwatch.contracts.envelopes import InputItem, decode_message
from fairwatch.contracts.partitioning import murmur2, partition_for, partitions_for
from fairwatch.contracts.records import (
    ContractError,
    MatchEvent,
    RejectCode,
    Rejection,
    VerifiedOutcome,
    decode_match_event,
    decode_verified_outcome,
    format_timestamp,
    parse_match_event,
    parse_timestamp,
    parse_verified_outcome,
)
from fairwatch.contracts.topics import (
    ALERTS,
    DEAD_LETTER,
    DEFAULT_PREFIX,
    INPUT_TOPICS,
    MATCH_EVENTS,
    OUTPUT_TOPICS,
    PRODUCED_TOPICS,
    VERIFIED_OUTCOMES,
)

__all__ = [
    "MatchEvent", "VerifiedOutcome", "Rejection", "RejectCode", "ContractError", "InputItem",
    "decode_match_event", "decode_verified_outcome", "decode_message", "parse_match_event",
    "parse_verified_outcome", "format_timestamp", "parse_timestamp", "partition_for", "partitions_for",
    "murmur2", "MATCH_EVENTS", "VERIFIED_OUTCOMES", "DEAD_LETTER", "ALERTS", "INPUT_TOPICS", "PRODUCED_TOPICS", "OUTPUT_TOPICS",
    "DEFAULT_PREFIX",
]
