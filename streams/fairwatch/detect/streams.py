"""Detection streams: per policy, the monitored counts of every watched group and metric with their baselines (pure: counts in, streams out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairwatch.core.config import CoreConfig
from fairwatch.core.layout import COLUMNS, GENUINE, IMPOSTOR
from fairwatch.detect.detectors import Baseline
from fairwatch.detect.dispersion import (
    cluster_dispersion,
    estimate_dispersion,
    split_dispersion,
    stream_dispersions,
)
from fairwatch.detect.policy import Policy

_METRIC_NAMES = {("verification", "fmr"): "fmr", ("verification", "fnmr"): "fnmr",
                 ("identification", "fmr"): "fpir", ("identification", "fnmr"): "fnir"}


_BLOCK = {"fmr": IMPOSTOR, "fnmr": GENUINE}


@dataclass
class Stream:
    type: str
    algorithm: str
    mode: str
    attribute: str
    group: str
    metric: str  # fmr | fnmr, or "score"
    detector: str
    baseline_rate: float | None
    edge: float | None  # null edge on the tested scale (rate streams)
    x: np.ndarray | None = None  # tested counts per monitored bucket
    n: np.ndarray | None = None
    x_ref: np.ndarray | None = None  # disparity: the reference group's
    n_ref: np.ndarray | None = None
    dispersion: float = 1.0  # of the baseline's counts (fairwatch.detect.dispersion); 1: binomial
    baseline_counts: tuple[float, float] | None = None  # banded streams: baseline errors and comparisons
    baseline_buckets: int = 0  # ... in this many buckets that hold comparisons
    weighted: np.ndarray | None = None  # float[T, 6] weighted sums for the values shown
    counts: np.ndarray | None = None  # float[T, 12] the group's rows: both verification strata
    ratio: float | None = None

    @property
    def group_text(self) -> str:
        return "*" if self.attribute == "*" else f"{self.attribute}={self.group}"

    @property
    def alert_metric(self) -> str:
        if self.metric in ("score", "label_backlog"):
            return self.metric
        return _METRIC_NAMES[self.mode, self.metric]


def backlog_streams(policy: Policy, backlog: dict[str, np.ndarray]) -> list[Stream]:
    """One ``label_backlog`` stream per algorithm; ``baseline`` holds the policy's ``max_share``."""
    return [Stream("label_backlog", algorithm, "", "*", "*", "label_backlog", "backlog_share",
                    policy.label_backlog.max_share, None, x=counts[0].astype(float), n=counts[1].astype(float))
            for algorithm, counts in sorted(backlog.items())]


def build_streams(policy: Policy, config: CoreConfig, counts: list[tuple], scores: list[tuple],
                  base_start: int, base_end: int, mon_start: int, mon_end: int,
                  clusters: dict[tuple, dict] | None = None) -> list[Stream]:
    """Every stream of one policy with its baseline and its monitored counts (float[T]);
    ``clusters``: the baseline's comparisons and errors per clustering key, as power sums per stream
    (``reads.read_cluster_moments``)."""
    clusters = clusters or {}

    def clustered(algorithm: str, mode: str, attribute: str, group: str, metric: str) -> float:
        sizes = clusters.get((algorithm, mode, attribute, group, metric))
        return cluster_dispersion(sizes, policy.baseline_confidence) if sizes else 1.0

    bucket = config.bucket_seconds
    T = max(0, (mon_end - mon_start) // bucket)
    T_base = max(0, (base_end - base_start) // bucket)
    baseline: dict[tuple, np.ndarray] = {}  # per bucket: the dispersion needs the variation
    series: dict[tuple, np.ndarray] = {}
    for algorithm, mode, attribute, group, b, *values in counts:
        key = (algorithm, mode, attribute, group)
        row = np.asarray(values, float)
        if base_start <= b < base_end:
            baseline.setdefault(key, np.zeros((T_base, len(COLUMNS))))[(b - base_start) // bucket] += row
        if mon_start <= b < mon_end:
            series.setdefault(key, np.zeros((T, len(COLUMNS))))[(b - mon_start) // bucket] += row
    streams: list[Stream] = []
    keys = sorted(set(baseline) | set(series))
    by_set: dict[tuple, list[tuple]] = {}
    for key in keys:
        by_set.setdefault(key[:3], []).append(key)
    for (algorithm, mode, attribute), members in sorted(by_set.items()):
        for metric in policy.metrics:
            block = _BLOCK[metric]
            n_col, x_col = block.start, block.start + 1
            rates, tested = {}, []
            for key in members:
                base_series = baseline.get(key, np.zeros((T_base, len(COLUMNS))))
                base = base_series.sum(axis=0)
                group = key[3]
                n_b, x_b = base[n_col], base[x_col]
                weighted_rate = base[block][3] / base[block][2] if base[block][2] > 0 else None
                mon = series.get(key, np.zeros((T, len(COLUMNS))))
                if n_b < policy.min_evidence:
                    streams.append(Stream("insufficient_evidence", algorithm, mode, attribute, group, metric,
                                           "baseline_count", weighted_rate, None, weighted=mon[:, block],
                                           counts=mon,
                                           x=np.full(T, n_b), n=np.full(T, float(policy.min_evidence))))
                    continue
                rates[group] = (x_b / n_b, weighted_rate)
                streams.append(Stream("error_rate_drift", algorithm, mode, attribute, group, metric, "sr_band",
                                       weighted_rate, None, x=mon[:, x_col], n=mon[:, n_col], weighted=mon[:, block],
                                       counts=mon, baseline_counts=(x_b, n_b),
                                       baseline_buckets=int((base_series[:, n_col] > 0).sum())))
                tested.append((streams[-1], base_series[:, x_col], base_series[:, n_col]))
            # variation shared by the set's disjoint groups shows pooled where one group's is too short
            phis = stream_dispersions([(x, n) for _, x, n in tested], bucket, policy.baseline_confidence)
            for (stream, _, _), phi in zip(tested, phis):
                stream.dispersion = max(phi, clustered(algorithm, mode, attribute, stream.group, metric))
            if policy.policy_ratio is None or len(rates) < 2:
                continue
            reference = policy.reference.get(attribute) or min(rates, key=lambda g: (rates[g][0], g))
            if reference not in rates:
                continue
            ref = series.get((algorithm, mode, attribute, reference), np.zeros((T, len(COLUMNS))))
            ref_base = baseline.get((algorithm, mode, attribute, reference), np.zeros((T_base, len(COLUMNS))))
            for group in sorted(rates):
                if group == reference:
                    continue
                mon = series.get((algorithm, mode, attribute, group), np.zeros((T, len(COLUMNS))))
                base = baseline.get((algorithm, mode, attribute, group), np.zeros((T_base, len(COLUMNS))))
                # the test is of the split of the two groups' errors: a variation they share cancels
                split = split_dispersion(base[:, x_col], base[:, n_col], ref_base[:, x_col], ref_base[:, n_col],
                                         bucket, policy.baseline_confidence).phi
                # clusters of either group's errors vary the split too
                split = max(split, clustered(algorithm, mode, attribute, group, metric),
                            clustered(algorithm, mode, attribute, reference, metric))
                streams.append(Stream("disparity_breach", algorithm, mode, attribute, group, metric,
                                       f"sr_disparity:{reference}", rates[reference][1], None, x=mon[:, x_col],
                                       n=mon[:, n_col], x_ref=ref[:, x_col], n_ref=ref[:, n_col],
                                       weighted=mon[:, block], counts=mon, ratio=policy.policy_ratio,
                                       dispersion=split))
    # label-free: non-match score tail
    tail_base: dict[tuple, np.ndarray] = {}
    tail: dict[tuple, np.ndarray] = {}
    for algorithm, mode, attribute, group, b, n, x in scores:
        key = (algorithm, mode, attribute, group)
        if base_start <= b < base_end:
            tail_base.setdefault(key, np.zeros((T_base, 2)))[(b - base_start) // bucket] += (x, n)
        if mon_start <= b < mon_end:
            tail.setdefault(key, np.zeros((T, 2)))[(b - mon_start) // bucket] += (x, n)
    for key in sorted(tail_base):
        x_b, n_b = tail_base[key].sum(axis=0)
        if n_b < policy.min_evidence:
            continue
        mon = tail.get(key, np.zeros((T, 2)))
        phi = estimate_dispersion(tail_base[key][:, 0], tail_base[key][:, 1], bucket, policy.baseline_confidence).phi
        streams.append(Stream("score_drift", *key, "score", "sr_score_tail", x_b / n_b, None, x=mon[:, 0],
                               n=mon[:, 1], dispersion=phi, baseline_counts=(x_b, n_b),
                               baseline_buckets=int((tail_base[key][:, 1] > 0).sum())))
    # every edge at once: with probability baseline_confidence no stream's bound is below its rate
    banded = [s for s in streams if s.baseline_counts is not None]
    confidence = joint_confidence(policy.baseline_confidence, len(banded))
    for stream in banded:
        stream.edge = Baseline.from_counts(*stream.baseline_counts, policy.band, confidence, stream.dispersion).edge
    return streams


def joint_confidence(confidence: float, streams: int) -> float:
    """Per-stream level of the baseline bounds so that all ``streams`` hold at once with
    probability ``confidence`` (Bonferroni).

    >>> round(joint_confidence(0.99, 200), 8)
    0.99995
    """
    return 1 - (1 - confidence) / max(1, streams)
