"""The Kafka topic names of the contract, each written once (the prefix comes from the settings)."""

from __future__ import annotations

DEFAULT_PREFIX = "fairwatch."

MATCH_EVENTS = "match-events"
VERIFIED_OUTCOMES = "verified-outcomes"
ACQUISITIONS = "acquisitions"  # acquisition attempts (failure to acquire): no join, any partition count
USES = "uses"  # use records (sessions): no join
DEAD_LETTER = "dead-letter"
ALERTS = "alerts"

INPUT_TOPICS = (MATCH_EVENTS, VERIFIED_OUTCOMES)  # joined: co-partitioned
STORED_AS_THEY_COME = (ACQUISITIONS, USES)  # no join: written as they come (fairwatch.stream.intake)
PRODUCED_TOPICS = (*INPUT_TOPICS, *STORED_AS_THEY_COME)  # what a site's producer writes
OUTPUT_TOPICS = (DEAD_LETTER, ALERTS)
