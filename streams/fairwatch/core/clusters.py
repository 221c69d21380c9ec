"""Design effects of clustered comparisons: the same subject (or session) compared again errs again.

A site may key each match event with a ``cluster_id`` (a pseudonymous subject or session key,
:mod:`fairwatch.contracts.records`). When subjects return and a hard face errs each time it is
searched, a group's errors come in clusters and its rate varies between samples of subjects far
more than a binomial count of its comparisons says: an interval built as if the comparisons were
independent holds the rate a new set of subjects meets far less often than it claims. The
intervals then treat the clusters as the sampling units (Kish [^1]; Korn and Graubard [^2]).

For one population (the impostor or the genuine comparisons of one group) with the weighted rate
``p = W_err / W``, cluster ``k`` contributes its weighted errors ``A_k`` and weight ``B_k``. The
linearized (with-replacement) variance of ``p`` with the clusters as units is

``var_c = K / (K - 1) * sum_k (A_k - p B_k)^2 / W^2``

over its ``K`` clusters, and with every comparison its own unit (the variance
:func:`~fairwatch.core.intervals.effective_counts` uses) ``var_i``, the same with ``n`` units. The
design effect of the clustering is ``deff = var_c / var_i``, at least 1 (a clustering never
claims more evidence than independent comparisons would give), and the interval is the
population's usual one on ``n_eff / deff`` effective comparisons, made smaller again by Korn and
Graubard's degrees-of-freedom factor ``(t(n_eff - 1) / t(K - 1))^2`` at the interval's level:
with few clusters the variance itself is uncertain.

Only the sums that clustering adds are kept (:data:`MOMENT_FIELDS`), per population: for each
cluster, ``A_k^2 - sum_i w_i^2 y_i`` and so on, which are 0 for a comparison alone in its
cluster. So an event without ``cluster_id`` costs nothing, the sums of a window are the sums of
its parts (a cluster cut by the window's edge counts with the part inside), and a population
without clustered comparisons keeps exactly the interval it had.

With no error (or no correct decision) in the window both variances are 0 and nothing can be
learnt of the clustering: ``deff`` is 1, so the interval of a population without errors is the
independent one, which is too short when errors do cluster.

References
----------
[^1]: Kish, L. (1965). Survey Sampling. Wiley (the design effect of cluster sampling).
[^2]: Korn, E. L. and Graubard, B. I. (1998). Confidence intervals for proportions with small
    expected number of positive counts estimated from survey data. Survey Methodology, 24,
    193-201 (effective sample size, degrees-of-freedom adjustment).
"""

from __future__ import annotations

from collections import defaultdict
import numpy as np
from scipy import stats

from fairwatch.core.layout import GroupKey

__all__ = ["MOMENT_FIELDS", "ClusterTally", "cluster_moments", "design_effects", "intra_cluster_correlation"]

# per population: what clusters add to sum A^2, sum A B, sum B^2 over comparisons alone, and the
# comparisons that share a cluster with an earlier one (n - K)
MOMENT_FIELDS = ("extra_aa", "extra_ab", "extra_bb", "merged")
N_MOMENTS = len(MOMENT_FIELDS)


def cluster_moments(cluster: np.ndarray, error: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """:data:`MOMENT_FIELDS` of one population from its comparisons: ``cluster`` (any hashable
    labels; None or ``""`` for a comparison in no cluster), ``error`` (bool) and ``weight``.

    >>> cluster_moments(np.array(["a", "a", "b", ""]), np.array([1, 1, 0, 1], bool), np.ones(4))
    array([2., 2., 2., 1.])
    """
    cluster = np.asarray(cluster, dtype=object)
    error = np.asarray(error, dtype=bool)
    weight = np.asarray(weight, dtype=float)
    keep = np.array([c is not None and c != "" for c in cluster], dtype=bool)
    if not keep.any():
        return np.zeros(N_MOMENTS)
    labels, index = np.unique(cluster[keep].astype(str), return_inverse=True)
    w, y = weight[keep], error[keep]
    a = np.bincount(index, w * y, len(labels))
    b = np.bincount(index, w, len(labels))
    self_aa = float(np.sum(w * w * y))
    return np.array([a @ a - self_aa, a @ b - self_aa, b @ b - float(np.sum(w * w)), float(keep.sum() - len(labels))])


def _own_design_effects(block: np.ndarray, moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per population: ``var_c / var_i`` (NaN where it cannot be estimated) and its clusters ``K``."""
    n, _, w, w_err, w2, w2_err = block.T
    extra_aa, extra_ab, extra_bb, merged = moments.T
    clusters = n - merged
    with np.errstate(divide="ignore", invalid="ignore"):
        p = w_err / w
        independent = n / (n - 1) * (w2_err - 2 * p * w2_err + p * p * w2)
        clustered = clusters / (clusters - 1) * ((w2_err + extra_aa) - 2 * p * (w2_err + extra_ab)
                                                 + p * p * (w2 + extra_bb))
        deff = np.where((independent > 0) & (clusters > 1) & (merged > 0), clustered / independent, np.nan)
    return deff, clusters


def intra_cluster_correlation(block: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """Kish's ``roh = (deff - 1) / (m - 1)`` per population, ``m = n / K`` the mean cluster size
    (NaN where it cannot be estimated; at least 0)."""
    block = np.asarray(block, dtype=float).reshape(-1, 6)
    moments = np.asarray(moments, dtype=float).reshape(-1, N_MOMENTS)
    deff, clusters = _own_design_effects(block, moments)
    with np.errstate(divide="ignore", invalid="ignore"):
        roh = (deff - 1) / (block[:, 0] / clusters - 1)
    return np.where(np.isfinite(roh), np.maximum(roh, 0.0), np.nan)


def design_effects(block: np.ndarray, moments: np.ndarray | None, confidence: float,
                   pooled_roh: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per population, the factor its effective comparisons are divided by, and the design effect.

    ``block``: float64[k, 6] of :data:`~fairwatch.core.layout.POPULATION_FIELDS`; ``moments``:
    float64[k, 4] of :data:`MOMENT_FIELDS` (None: no clustering). The factor is
    ``deff / (t(n - 1) / t(K - 1))^2`` where ``deff > 1``, else 1 (module docstring).
    ``pooled_roh`` (per population, NaN for none): an intra-cluster correlation measured on a
    larger population of the same comparisons (the overall row, :func:`intra_cluster_correlation`);
    a group's design effect is then at least ``1 + (m - 1) roh`` (Kish's synthetic design effect):
    a group of few subjects whose sample happens to lack the faces that err most shows little
    clustering of its own, and the larger population shows what its subjects are drawn from.

    Ten clusters of 20 comparisons each, all errors in two of them: the rate 0.2 varies between
    samples of clusters like a rate of 200 / 22.1 = 9 independent comparisons, and with ten
    clusters the variance itself is uncertain (the t factor), leaving 6.9:

    >>> y = np.repeat([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], 20).astype(bool)
    >>> block = np.array([[200, 40, 200, 40, 200, 40]], float)
    >>> moments = cluster_moments(np.repeat(np.arange(10), 20).astype(str), y, np.ones(200))[None]
    >>> factor, deff = design_effects(block, moments, 0.95)
    >>> print(f"deff {deff[0]:.1f}, n_eff {200 / factor[0]:.1f}")
    deff 22.1, n_eff 6.9
    """
    block = np.asarray(block, dtype=float).reshape(-1, 6)
    ones = np.ones(len(block))
    if moments is None:
        return ones, ones
    moments = np.asarray(moments, dtype=float).reshape(-1, N_MOMENTS)
    own, clusters = _own_design_effects(block, moments)
    deff = np.where(np.isfinite(own), own, 1.0)
    n, merged = block[:, 0], moments[:, 3]
    if pooled_roh is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            synthetic = 1 + (n / clusters - 1) * np.asarray(pooled_roh, dtype=float)
        deff = np.where(np.isfinite(synthetic) & (merged > 0), np.fmax(deff, synthetic), deff)
    deff = np.maximum(deff, 1.0)
    clustered_at_all = (deff > 1) & (merged > 0)
    q = 1 - (1 - confidence) / 2
    degrees = (stats.t.ppf(q, np.maximum(n - 1, 1)) / stats.t.ppf(q, np.maximum(clusters - 1, 1))) ** 2
    factor = np.where(clustered_at_all, deff / degrees, 1.0)
    return factor, np.where(clustered_at_all, deff, 1.0)


class ClusterTally:
    """:data:`MOMENT_FIELDS` per group, bucket and population, kept from a join's labeled deltas
    for the comparisons whose event carried a ``cluster_id`` (for :class:`~fairwatch.core.monitor.Monitor`;
    the store reads the same sums from ClickHouse, :mod:`fairwatch.store.cluster_moments`).

    Per (group, bucket, population, cluster) it keeps ``A``, ``B``, ``sum w^2 y``, ``sum w^2`` and the
    comparisons, so a window's sums are recomputed from the clusters' totals over its buckets.
    """

    def __init__(self) -> None:
        self._cells: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(5))

    def update(self, deltas, groups_of, cluster_of) -> None:
        """Add ``deltas`` (:class:`~fairwatch.core.join.LabeledDeltas`); ``groups_of(profile index)``
        gives its groups' keys, ``cluster_of(event_id)`` the event's cluster (None when it has none)."""
        error = deltas.error
        for i, event_id in enumerate(deltas.event_id):
            cluster = cluster_of(event_id)
            if cluster is None:
                continue
            w, s = float(deltas.weight[i]), float(deltas.sign[i])
            y = float(error[i])
            change = s * np.array([w * y, w, w * w * y, w * w, 1.0])
            population = 1 if deltas.genuine[i] else 0
            for key in groups_of(int(deltas.profile[i])):
                self._cells[key, int(deltas.bucket[i]), population, cluster] += change

    def window(self, lo: float, hi: float) -> dict[GroupKey, np.ndarray]:
        """``GroupKey -> float64[2, 4]`` (impostor, genuine) of :data:`MOMENT_FIELDS` over the
        buckets starting in ``[lo, hi)``."""
        totals: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(5))
        for (key, bucket, population, cluster), cell in self._cells.items():
            if lo <= bucket < hi:
                totals[key, population, cluster] += cell
        out: dict[GroupKey, np.ndarray] = defaultdict(lambda: np.zeros((2, N_MOMENTS)))
        for (key, population, cluster), (a, b, aa_self, bb_self, members) in totals.items():
            if members <= 0:
                continue
            out[key][population] += (a * a - aa_self, a * b - aa_self, b * b - bb_self, members - 1)
        return dict(out)
