"""The Kafka topic names of the contract, each written once (the prefix comes from the settings)."""

from __future__ import annotations

DEFAULT_PREFIX = "fairwatch."

MATCH_EVENTS = "match-events"
VERIFIED_OUTCOMES = "verified-outcomes"
ACQUISITIONS = "acquisitions"  # acquisition attempts (failure to acquire); file replay reads them, the worker not yet
DEAD_LETTER = "dead-letter"
ALERTS = "alerts"

INPUT_TOPICS = (MATCH_EVENTS, VERIFIED_OUTCOMES)
OUTPUT_TOPICS = (DEAD_LETTER, ALERTS)
