"""The core end to end (decode -> join -> counts -> estimates) against the brute-force oracle."""

from __future__ import annotations

import random

import pytest
from fairwatch.contracts.records import (
    Rejection,
    decode_match_event,
    decode_verified_outcome,
)
from fairwatch.core.config import CoreConfig
from fairwatch.core.monitor import Monitor
from fairwatch.testing.workload import make_workload, oracle_counts

DECODE = {"match-events": decode_match_event, "verified-outcomes": decode_verified_outcome}


def feed(monitor: Monitor, messages, seed: int) -> int:
    rng = random.Random(seed)
    rejected = 0
    i = 0
    while i < len(messages):
        size = rng.choice((1, 7, 100, 1000))
        batch = []
        for kind, _, value in messages[i : i + size]:
            record = DECODE[kind](value)
            if isinstance(record, Rejection):
                rejected += 1
            else:
                batch.append(record)
        monitor.update(batch)
        i += size
    return rejected


def test_counts_and_rates_equal_the_oracle():
    workload = make_workload(20_000, seed=11)
    monitor = Monitor(CoreConfig(intersections=(("sex", "race"),)))
    assert feed(monitor, workload.messages, seed=11) == len(workload.malformed)
    expected = oracle_counts(workload)
    found = {(*row.key, row.bucket_start): row.row.tolist() for row in monitor.counts.rows()}
    assert found.keys() == expected.keys()
    for key, row in expected.items():
        assert found[key] == pytest.approx(row, rel=1e-12, abs=1e-12), key

    frame = monitor.snapshot()
    totals: dict[tuple, list[float]] = {}
    for (*group, _bucket), row in expected.items():
        acc = totals.setdefault(tuple(group), [0.0] * 12)
        for i, v in enumerate(row):
            acc[i] += v
    for key, estimate in frame.by_group.items():
        row = totals[tuple(key)]
        # weighted (Horvitz-Thompson) rates: sum of error weights / sum of weights
        assert estimate.fmr.rate == pytest.approx(row[3] / row[2] if row[2] else None)
        assert estimate.fnmr.rate == pytest.approx(row[9] / row[8] if row[8] else None)
    assert monitor.counters.duplicates > 0 and monitor.counters.retractions > 0
    assert monitor.counters.orphans == len([e for e in workload.outcomes if e not in workload.events])
