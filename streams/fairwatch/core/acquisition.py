"""Failure to acquire per group, with the intervals and differentials of the error rates.

Every attempt is observed (no verification sample): a group's failure-to-acquire rate (FTA) is
its failures over its attempts, a binomial share with every weight 1, so the error rates'
estimator applies as it is (:class:`~fairwatch.core.estimates.RateEstimator`: exact
Clopper-Pearson interval, anytime bounds, status against a target). Retries of one person at one
camera fail together: attempts keyed by ``cluster_id`` are sampling clusters, and the interval
widens by their design effect, floored by the overall row's intra-cluster correlation
(:mod:`fairwatch.core.clusters`), as for comparisons. The differentials between groups (max/min,
max/geomean, max-min difference, Gini) come from simultaneous intervals
(:func:`~fairwatch.core.differentials.rate_differentials`).

Examples
--------
Two groups, 2% and 6% of 2,000 attempts each failing; too few attempts (below
``min_comparisons``) for a third, so no differential can be judged yet:

>>> from fairwatch.core.config import CoreConfig
>>> counts = {("d", "a", "*", "*"): [4020, 161, 150, 11], ("d", "a", "race", "A"): [2000, 40, 30, 10],
...           ("d", "a", "race", "B"): [2000, 120, 119, 1], ("d", "a", "race", "C"): [20, 1, 1, 0]}
>>> groups, diffs = acquisition_estimates(counts, CoreConfig())
>>> [(g.key[3], g.fta.rate, str(g.fta.status)) for g in groups]
[('*', 0.040049751243781094, 'no_target'), ('A', 0.02, 'no_target'), ('B', 0.06, 'no_target'), ('C', 0.05, 'insufficient')]
>>> ratio = next(d for d in diffs if d.metric == "max_min_ratio")
>>> ratio.value, ratio.max_group, ratio.min_group, str(ratio.status)
(3.0, 'B', 'A', 'insufficient')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from fairwatch.core.clusters import N_MOMENTS, intra_cluster_correlation
from fairwatch.core.config import CoreConfig
from fairwatch.core.differentials import AttributeSet, Differential, rate_differentials
from fairwatch.core.estimates import RateEstimate, RateEstimator
from fairwatch.core.layout import OVERALL

__all__ = ["FTA", "AcquisitionEstimate", "acquisition_estimates", "fta_block"]

FTA = "fta"


@dataclass(frozen=True, slots=True)
class AcquisitionEstimate:
    """One group's failure to acquire: ``key`` is (deployment, algorithm, attribute, group)."""

    key: tuple[str, str, str, str]
    fta: RateEstimate
    no_face: int
    low_quality: int

    def to_dict(self) -> dict:
        deployment, algorithm, attribute, group = self.key
        return {"deployment": deployment, "algorithm": algorithm, "attribute": attribute, "group": group,
                "attempts": self.fta.n, "failures": self.fta.errors, "no_face": self.no_face,
                "low_quality": self.low_quality, **self.fta.to_dict(FTA)}


def fta_block(counts: np.ndarray) -> np.ndarray:
    """The estimator's six population sums of attempts and failures, every weight 1."""
    counts = np.asarray(counts, dtype=float).reshape(-1, 4)
    n, failures = counts[:, 0], counts[:, 1]
    return np.column_stack([n, failures, n, failures, n, failures])


def acquisition_estimates(
    counts: Mapping[Sequence[str], Sequence[float]], config: CoreConfig, moments: Mapping | None = None,
    target: float | None = None, family: int = 1,
) -> tuple[list[AcquisitionEstimate], list[Differential]]:
    """Per group the FTA estimate, and per (deployment, algorithm, attribute) its differentials.

    ``counts``: key (deployment, algorithm, attribute, group) -> (attempts, failures, no_face,
    low_quality), the overall row under attribute and group ``*``; ``moments``: key -> the
    :data:`~fairwatch.core.clusters.MOMENT_FIELDS` of its attempts keyed by ``cluster_id`` (absent:
    none keyed). ``target``: an FTA the status is judged against (None: no target); ``family``:
    the rates whose statuses must hold together. Groups are sorted by key.
    """
    keys = sorted(tuple(k) for k in counts)
    if not keys:
        return [], []
    rows = np.array([counts[k] for k in keys], dtype=float).reshape(len(keys), 4)
    if np.any(rows[:, 1] > rows[:, 0]) or np.any(rows[:, 1] != rows[:, 2] + rows[:, 3]):
        raise ValueError("failures must be at most the attempts, and no_face + low_quality")
    block = fta_block(rows)
    clustering = None
    pooled = None
    if moments:
        clustering = np.array([moments.get(k, np.zeros(N_MOMENTS)) for k in keys], dtype=float)
        roh = intra_cluster_correlation(block, clustering)
        overall = {k[:2]: i for i, k in enumerate(keys) if k[2] == OVERALL}
        pooled = np.array([roh[overall[k[:2]]] if k[:2] in overall else np.nan for k in keys], dtype=float)
    estimates = RateEstimator(config).estimate(block, target, family=family, clustering=clustering, pooled_roh=pooled)
    groups = [AcquisitionEstimate(k, est, int(row[2]), int(row[3])) for k, est, row in zip(keys, estimates, rows)]
    scopes: dict[tuple[str, str, str], dict[str, RateEstimate]] = {}
    for g in groups:
        if g.key[2] != OVERALL:
            scopes.setdefault(g.key[:3], {})[g.key[3]] = g.fta
    differentials = []
    for (deployment, algorithm, attribute), rates in sorted(scopes.items()):
        scope = AttributeSet(deployment, algorithm, "acquisition", attribute)
        differentials += rate_differentials(scope, FTA, rates, config)
    return groups, differentials
