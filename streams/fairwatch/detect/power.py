"""What a policy's drift detectors can see: delay and power per stream, simulated with the detectors.

For every error-rate stream of a policy (group x metric), with its baseline as stored: the baseline
rate ``p`` (verified errors over verified comparisons), its comparisons per bucket, its null edge
and dispersion, and the policy's threshold. ``replicates`` streams are then drawn per shift ``k``:
``Poisson(volume)`` comparisons a bucket and ``Binomial(n, k p)`` errors from the first bucket on,
and fed to the same :class:`~fairwatch.detect.detectors.RateDriftDetector` the cycle runs. Reported:
the share alarmed within 24 hours (power) and the median and 95th-percentile delay (None when more
than half, or 5%, were not alarmed within the horizon). A shift whose rate stays at or below the
edge (``k <= edge / p``) is not a departure under the policy: it is never meant to alarm.

What it leaves out, so that real delays are longer or more variable: the change comes with the
first bucket (the statistic starts at 0), counts are binomial (the detector divides by each
stream's measured dispersion, but real overdispersed counts vary more), volumes have no daily
cycle, and labels arrive at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from fairwatch.core.config import CoreConfig
from fairwatch.detect.cycle import bucket_of
from fairwatch.detect.detectors import RateDriftDetector
from fairwatch.detect.evaluation import policy_threshold
from fairwatch.detect.incidents import utc
from fairwatch.detect.policy import Policy
from fairwatch.detect.reads import baseline_period, read_cluster_moments, read_counts, read_score_tails
from fairwatch.detect.streams import Stream, build_streams
from fairwatch.store.clickhouse import Store

__all__ = ["SHIFTS", "PowerRow", "PolicyCheck", "simulate_power", "check_policy"]

SHIFTS = (1.5, 2.0, 3.0)
HORIZON_HOURS = 24


@dataclass(frozen=True)
class PowerRow:
    """One stream under one shift."""

    algorithm: str
    mode: str
    attribute: str
    group: str
    metric: str
    baseline_rate: float
    comparisons_per_bucket: float
    edge_over_rate: float | None  # None: no error in the baseline
    dispersion: float
    shift: float
    power_24h: float
    median_delay_hours: float | None
    p95_delay_hours: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def simulate_power(streams: list[Stream], threshold: float, bucket_seconds: int, shifts=SHIFTS,
                   replicates: int = 200, seed: int = 0) -> list[PowerRow]:
    """Power and delay of every ``error_rate_drift`` stream of ``streams`` (built by
    :func:`~fairwatch.detect.streams.build_streams`) under each shift; ``threshold`` is the
    policy's (:func:`~fairwatch.detect.detectors.threshold_for_budget` over its tested streams)."""
    tested = [s for s in streams if s.type == "error_rate_drift" and s.baseline_counts is not None]
    if not tested or replicates < 1:
        return []
    rng = np.random.default_rng(seed)
    steps = HORIZON_HOURS * 3600 // bucket_seconds
    rates = np.array([s.baseline_counts[0] / s.baseline_counts[1] for s in tested])
    volumes = np.array([s.baseline_counts[1] / max(1, s.baseline_buckets) for s in tested])
    # columns: stream-major, then shift, then replicate
    per_stream = len(shifts) * replicates
    shifted = np.minimum(np.repeat(rates, per_stream) * np.tile(np.repeat(shifts, replicates), len(tested)), 1.0)
    volume = np.repeat(volumes, per_stream)
    detector = RateDriftDetector(np.repeat([s.edge for s in tested], per_stream), threshold,
                                 dispersion=np.repeat([s.dispersion for s in tested], per_stream))
    first = np.full(shifted.size, -1)
    for t in range(steps):
        n = rng.poisson(volume).astype(float)
        alarm = detector.update(rng.binomial(n.astype(np.int64), shifted).astype(float), n).drift_detected
        first[alarm & (first < 0)] = t + 1
        if (first >= 0).all():
            break
    hours = np.where(first >= 0, first * bucket_seconds / 3600, np.inf).reshape(len(tested), len(shifts), replicates)
    rows = []
    for i, stream in enumerate(tested):
        for j, shift in enumerate(shifts):
            delays = hours[i, j]
            median, p95 = (float(np.quantile(delays, q, method="inverted_cdf")) for q in (0.5, 0.95))
            rows.append(PowerRow(
                stream.algorithm, stream.mode, stream.attribute, stream.group, stream.alert_metric,
                float(rates[i]), float(volumes[i]), float(stream.edge / rates[i]) if rates[i] > 0 else None,
                float(stream.dispersion), float(shift), float(np.isfinite(delays).mean()),
                median if np.isfinite(median) else None, p95 if np.isfinite(p95) else None))
    return rows


@dataclass(frozen=True)
class PolicyCheck:
    """A policy's detectors on its stored baseline: the threshold, the streams without enough
    baseline evidence (never tested) and the power of the others."""

    deployment: str
    baseline_from: str
    baseline_to: str
    tested_streams: int
    log10_threshold: float
    insufficient: list[dict]
    rows: list[PowerRow]
    data_until: str | None = None  # the last stored bucket's end when the baseline runs past it

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"}, "rows": [r.to_dict() for r in self.rows]}


class NoBaseline(ValueError):
    """The store holds no data of the policy's deployment in its baseline period."""


def check_policy(store: Store, config: CoreConfig, policy: Policy, shifts=SHIFTS, replicates: int = 200,
                 seed: int = 0) -> PolicyCheck:
    """Build the policy's streams on its stored baseline as the detection cycle would, then
    :func:`simulate_power` on them."""
    period = baseline_period(store, policy)
    if period is None:
        raise NoBaseline(f"no verified outcome of deployment {policy.deployment!r} in the store: nothing to"
                         " measure a baseline on")
    bucket = config.bucket_seconds
    base_start, base_end = (bucket_of(t.timestamp(), bucket) for t in period)
    counts = read_counts(store, policy, utc(base_start), utc(base_end))
    if not counts:
        raise NoBaseline(f"no verified outcome of deployment {policy.deployment!r} in its baseline"
                         f" [{utc(base_start).isoformat()}, {utc(base_end).isoformat()})")
    last = max(row[4] for row in counts) + bucket
    data_until = utc(last).isoformat() if last < base_end else None
    scores = (read_score_tails(store, policy, config, utc(base_start), utc(base_end), utc(base_end))
              if policy.score_quantile else [])
    # one empty monitored bucket: the streams without enough evidence keep their baseline count there
    clusters = read_cluster_moments(store, policy, utc(base_start), utc(base_end))
    streams = build_streams(policy, config, counts, scores, base_start, base_end, base_end, base_end + bucket,
                            clusters)
    tested, threshold = policy_threshold(policy, streams, bucket)
    insufficient = [{"algorithm": s.algorithm, "mode": s.mode, "group": s.group_text, "metric": s.alert_metric,
                     "baseline_comparisons": float(s.x[0]) if len(s.x) else None,
                     "min_evidence": policy.min_evidence}
                    for s in streams if s.type == "insufficient_evidence"]
    return PolicyCheck(policy.deployment, utc(base_start).isoformat(), utc(base_end).isoformat(), len(tested),
                       math.log10(threshold), insufficient,
                       simulate_power(streams, threshold, bucket, shifts, replicates, seed), data_until)
