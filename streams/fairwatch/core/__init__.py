"""Core: the statistics, pure Python + numpy/scipy (no Kafka, no ClickHouse, no asyncio).

The label-delay join, per-group counts in event-time buckets, intervals, rate estimates with
their status, demographic differentials, and :class:`~fairwatch.core.monitor.Monitor` chaining
them. Batches in, batches out: the worker, file replay and tests drive the same code.
"""

from fairwatch.core.config import CoreConfig
from fairwatch.core.counts import BucketCounts
from fairwatch.core.differentials import Differential
from fairwatch.core.estimates import GroupEstimate, RateEstimate, RateEstimator, Status
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.intervals import (
    BetaBinomialMixture,
    clopper_pearson,
    effective_counts,
    jeffreys,
)
from fairwatch.core.join import LabeledDeltas, LabelJoin
from fairwatch.core.layout import COLUMNS, GENUINE, IMPOSTOR, OVERALL, GroupKey
from fairwatch.core.monitor import Monitor

__all__ = [
    "CoreConfig", "GroupKey", "COLUMNS", "IMPOSTOR", "GENUINE", "OVERALL", "LabelJoin", "LabeledDeltas",
    "BucketCounts", "clopper_pearson", "jeffreys", "effective_counts", "BetaBinomialMixture", "RateEstimator",
    "RateEstimate", "GroupEstimate", "Status", "Differential", "GroupFrame", "Monitor",
]
