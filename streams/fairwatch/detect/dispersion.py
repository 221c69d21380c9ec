"""Extra-binomial variation of a stream's error counts, measured on its baseline buckets.

Real error streams are not binomial: the same people come back, some subjects are harder than
others, light and cameras change by the hour. Then the count of errors in a block of comparisons
varies more than ``n p (1 - p)``, by a factor ``phi`` (the dispersion), and a detector that
assumes binomial counts raises false alarms at will. ``phi`` depends on the time scale: variation
between single buckets shows at every scale, variation shared by the buckets of an hour grows with
the block length up to the hour. So the baseline is cut into blocks of several lengths and, per
length, Pearson's statistic ``X^2 = sum_b (x_b - N_b p)^2 / (N_b p (1 - p))`` over its ``k``
blocks (``X^2 ~ chi2(k - 1)`` for binomial counts) gives the upper confidence bound
``X^2 / chi2.ppf(1 - confidence, k - 1)``; the stream's dispersion is the largest over the lengths,
at least 1. A short baseline has few long blocks, so this bound is wide: a day gives 24 hours, and
binomial counts then get about 2.2 (a week: about 1.3). A length with fewer than
:data:`MIN_BOUND_BLOCKS` blocks gives a bound too wide to pay for (12 five-minute blocks of an hour:
3.6 for binomial counts); it is bounded only where a pretest rejects ``phi = 1`` (below), so a
baseline shorter than a day does not hold an hourly variation it cannot see.

A stream whose attribute set is pooled (below) skips its own bound unless a pretest rejects
``phi = 1`` (level :data:`PRETEST_LEVEL`, Bonferroni over the lengths): binomial data then keep
``phi = 1`` in about 95% of baselines, and a variation the pretest misses is a variation of the
set, which the pooled bound holds. Without that cover the pretest is not safe: a variation of the
size it misses often (each group's rate varying by the hour with CV 0.3 over a one-day baseline)
raised disparity alarms at 17 times the budget (``bench_disparity``), all of them on the pairs it
had missed, and rate streams in sets of two groups at 2.6 times the budget (``bench_detection``).

The detectors use it as a quasi-likelihood (Wedderburn; McCullagh and Nelder, ch. 9): every log
likelihood ratio is divided by ``phi``, which keeps ``E[exp(llr / phi)] ~= 1`` at the null edge
when the block sums are near normal with variance ``phi`` times the binomial's, and the baseline's
upper bound is taken on the effective counts ``x / phi`` of ``n / phi``.

One stream's baseline has few long blocks (a day holds 24 hours), so a moderate hourly variation
often passes its test unseen. Variation from light, cameras and traffic hits every group of a
deployment, so :func:`pooled_dispersion` also measures it over the disjoint groups of one attribute
set: per block length, the squared coefficient of variation of the block rates,
``c^2 = sum_j sum_b [(x_jb - N_jb p_j)^2 - N_jb p_j (1 - p_j)] / sum_j sum_b (N_jb p_j)^2``, its
upper bound from the spread of the groups' terms (Student's t with ``J - 1`` degrees of freedom, at
``confidence``; sets of at least :data:`MIN_POOLED_GROUPS` tested groups, no pretest), and each
group's dispersion at that length ``1 + c^2 sum_b (N_jb p_j)^2 / sum_b N_jb p_j``. A stream takes
the larger of its own and the pooled. On binomial data the pooled bound is small where many groups
are pooled (medians 1.04 FMR / 1.06 FNMR for 100 groups over a day in ``bench_detection``) and
larger for few (the t quantile with ``J - 1`` degrees of freedom grows: 3.4 at 99% for 6 groups).

Errors that come back with the same person (or session) over hours are clustered in a way no block
of a one-day baseline shows. Where the match events carry a pseudonymous key and the policy names
its unit, :func:`cluster_dispersion` bounds the design effect of the keys, and the stream takes the
larger of that too.

References
----------
Wedderburn, R. W. M. (1974). Quasi-likelihood functions, generalized linear models, and the
Gauss-Newton method. Biometrika, 61(3), 439-447. McCullagh, P. and Nelder, J. A. (1989).
Generalized Linear Models, 2nd ed., chapter 9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["DISPERSION_BLOCKS_SECONDS", "MIN_BLOCKS", "MIN_BOUND_BLOCKS", "PRETEST_LEVEL", "MIN_POOLED_GROUPS", "BINOMIAL", "Dispersion",
           "block_lengths", "estimate_dispersion", "split_dispersion", "pooled_dispersion", "stream_dispersions",
           "CLUSTER_MOMENTS", "cluster_dispersion"]

# block lengths tried: one bucket, then 5 min, 15 min and 1 h where they are whole buckets
DISPERSION_BLOCKS_SECONDS = (300, 900, 3600)
MIN_BLOCKS = 10  # fewer blocks of a length in the baseline: that length is not tried
MIN_BOUND_BLOCKS = 24  # fewer: a length is bounded only where its pretest rejects (its bound is too wide)
PRETEST_LEVEL = 0.05  # of the test of phi = 1, over all lengths
MIN_POOLED_GROUPS = 5  # fewer groups in an attribute set: no pooled estimate (its spread is too uncertain)


@dataclass(frozen=True, slots=True)
class Dispersion:
    """A stream's dispersion: ``phi`` (>= 1) and, per block length tried, Pearson's ``X^2`` test.

    ``lengths`` are in buckets; ``statistics`` the ``X^2 / (k - 1)`` point estimates; ``rejected``
    whether each test rejected ``phi = 1``.
    """

    phi: float
    lengths: tuple[int, ...] = ()
    statistics: tuple[float, ...] = ()
    rejected: tuple[bool, ...] = ()


BINOMIAL = Dispersion(1.0)


def block_lengths(bucket_seconds: int, buckets: int) -> tuple[int, ...]:
    """Block lengths in buckets: 1 and the :data:`DISPERSION_BLOCKS_SECONDS` that are whole buckets,
    each kept when the baseline holds at least :data:`MIN_BLOCKS` blocks of it."""
    lengths = [1] + [s // bucket_seconds for s in DISPERSION_BLOCKS_SECONDS
                     if s % bucket_seconds == 0 and s > bucket_seconds]
    return tuple(length for length in dict.fromkeys(lengths) if buckets // length >= MIN_BLOCKS)


def _block_sums(values: np.ndarray, length: int, blocks: int) -> np.ndarray:
    """Sums over the first ``blocks`` blocks of ``length`` buckets (a partial last block is left out)."""
    return np.asarray(values[: blocks * length], float).reshape(blocks, length).sum(axis=1)


def stream_dispersions(series: list[tuple[np.ndarray, np.ndarray]], bucket_seconds: int,
                       confidence: float) -> list[float]:
    """The dispersion each detector stream of one attribute set and metric uses: its own
    (:func:`estimate_dispersion`) or the pooled one (:func:`pooled_dispersion`), whichever is
    larger; its own is pretested only where the set is pooled (see the module docstring)."""
    pooled = pooled_dispersion(series, bucket_seconds, confidence)
    pretest = len(series) >= MIN_POOLED_GROUPS
    return [max(estimate_dispersion(x, n, bucket_seconds, confidence, pretest).phi, phi)
            for (x, n), phi in zip(series, pooled)]


def estimate_dispersion(errors: np.ndarray, n: np.ndarray, bucket_seconds: int, confidence: float,
                        pretest: bool = False) -> Dispersion:
    """The dispersion of one stream from its baseline buckets ``errors``, ``n`` (``float[T]``):
    the bound, or with ``pretest`` 1 unless the pretest rejects ``phi = 1`` (a length with fewer
    than :data:`MIN_BOUND_BLOCKS` blocks is always pretested).

    Examples
    --------
    Binomial counts over a day: the hour's bound; 1 with the pretest. Counts whose rate varies by
    hour get the hour's variance:

    >>> rng = np.random.default_rng(0)
    >>> n = np.full(1440, 300.0)
    >>> binomial = rng.binomial(300, 0.01, 1440)
    >>> 1 < estimate_dispersion(binomial, n, 60, 0.99).phi < 4, estimate_dispersion(binomial, n, 60, 0.99, True).phi
    (True, 1.0)
    >>> hourly = np.repeat(rng.gamma(4.0, 0.25, 24), 60)  # CV 0.5 per hour
    >>> estimate_dispersion(rng.binomial(300, 0.01 * hourly), n, 60, 0.99, True).phi > 20
    True
    """
    errors, n = np.asarray(errors, float), np.asarray(n, float)
    total = n.sum()
    if total <= 0 or errors.sum() <= 0 or errors.sum() >= total:
        return BINOMIAL  # no error (or nothing else) seen: no variation to measure
    p = errors.sum() / total
    return _blockwise(errors, n * p, n * p * (1 - p), bucket_seconds, confidence, pretest)


def split_dispersion(errors: np.ndarray, n: np.ndarray, reference_errors: np.ndarray, reference_n: np.ndarray,
                     bucket_seconds: int, confidence: float) -> Dispersion:
    """The dispersion of a disparity stream: of the group's share of the two groups' errors.

    Given the ``m`` errors of a bucket, the group's count is ``Binomial(m, pi)``, ``pi = n p / (n p +
    n_r p_r)`` with the baseline's rates (what :func:`~fairwatch.detect.detectors.disparity_log_lr`
    tests), so a variation shared by both groups cancels; only one that moves them apart shows.
    Never pretested: a pair is not pooled (see the module docstring).

    Examples
    --------
    Both groups' rates vary by the hour together (CV 0.5): their split keeps the binomial's bound:

    >>> rng = np.random.default_rng(2)
    >>> hourly = np.repeat(rng.gamma(4.0, 0.25, 24), 60)
    >>> n = np.full(1440, 300.0)
    >>> g, r = (rng.binomial(300, rate * hourly).astype(float) for rate in (0.02, 0.01))
    >>> estimate_dispersion(g, n, 60, 0.99).phi > 10, split_dispersion(g, n, r, n, 60, 0.99).phi < 3
    (True, True)
    """
    errors, n, reference_errors, reference_n = (np.asarray(v, float) for v in (errors, n, reference_errors,
                                                                                 reference_n))
    if n.sum() <= 0 or reference_n.sum() <= 0 or errors.sum() <= 0 or reference_errors.sum() <= 0:
        return BINOMIAL
    weight, reference_weight = n * errors.sum() / n.sum(), reference_n * reference_errors.sum() / reference_n.sum()
    total = weight + reference_weight
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, weight / np.where(total > 0, total, 1.0), 0.0)
    m = errors + reference_errors
    return _blockwise(errors, m * share, m * share * (1 - share), bucket_seconds, confidence, pretest=False)


def _blockwise(observed: np.ndarray, expected: np.ndarray, variance: np.ndarray, bucket_seconds: int,
               confidence: float, pretest: bool) -> Dispersion:
    """Pearson's bound per block length, with ``pretest`` only where its test rejects ``phi = 1``
    (see the module docstring): ``observed`` counts per bucket with their binomial ``expected``
    values and ``variance``."""
    lengths = block_lengths(bucket_seconds, len(observed))
    if not lengths:
        return BINOMIAL
    pretest_level, level = PRETEST_LEVEL / len(lengths), 1 - confidence
    phi, tried, statistics, rejected = 1.0, [], [], []
    for length in lengths:
        blocks = len(observed) // length
        x, e, v = (_block_sums(a, length, blocks) for a in (observed, expected, variance))
        used = v > 0
        df = int(used.sum()) - 1
        if df < MIN_BLOCKS - 1:
            continue
        pearson = float((((x - e) ** 2)[used] / v[used]).sum())
        tried.append(length)
        statistics.append(pearson / df)
        rejected.append(pearson > stats.chi2.ppf(1 - pretest_level, df))
        # the period's blocks, not those with data: an empty hour (a gate closed) must not cost the bound
        if rejected[-1] or not (pretest or blocks < MIN_BOUND_BLOCKS):
            phi = max(phi, pearson / float(stats.chi2.ppf(level, df)))
    return Dispersion(phi, tuple(tried), tuple(statistics), tuple(rejected))


def pooled_dispersion(series: list[tuple[np.ndarray, np.ndarray]], bucket_seconds: int,
                      confidence: float) -> list[float]:
    """Each stream's dispersion from the variation of block rates pooled over ``series`` (the
    baseline ``(errors, n)`` buckets of the disjoint groups of one attribute set and metric; see
    the module docstring): the bound, whether or not the variation is shown above 0; 1.0 for
    fewer than :data:`MIN_POOLED_GROUPS` groups.

    Examples
    --------
    Eight groups whose rates vary by the hour (CV 0.3) together, each too short to show it alone:

    >>> rng = np.random.default_rng(4)
    >>> hourly = np.repeat(rng.gamma(1 / 0.09, 0.09, 24), 60)
    >>> groups = [(rng.binomial(300, 1e-3 * hourly).astype(float), np.full(1440, 300.0)) for _ in range(8)]
    >>> phis = pooled_dispersion(groups, 60, 0.99)  # about 1 + 0.09 * 18 = 2.6 at the hour
    >>> len(phis), min(phis) > 2
    (8, True)
    """
    phis = np.ones(len(series))
    if len(series) < MIN_POOLED_GROUPS:
        return phis.tolist()
    T = min(len(x) for x, _ in series)
    lengths = block_lengths(bucket_seconds, T)
    if not lengths:
        return phis.tolist()
    # the spread of the groups' terms is estimated from the groups: t with J - 1 degrees of freedom
    bound = stats.t.ppf(confidence, len(series) - 1)
    for length in lengths:
        blocks = T // length
        excess, weight, scale = [], [], []
        for errors, n in series:
            x, m = _block_sums(errors, length, blocks), _block_sums(n, length, blocks)
            p = x.sum() / m.sum() if m.sum() > 0 else 0.0
            expected = m * p
            excess.append(float(((x - expected) ** 2 - expected * (1 - p)).sum()))
            weight.append(float((expected ** 2).sum()))
            scale.append(float((expected ** 2).sum() / expected.sum()) if expected.sum() > 0 else 0.0)
        excess_arr, weight_arr = np.array(excess), np.array(weight)
        if weight_arr.sum() <= 0:
            continue
        c2 = excess_arr.sum() / weight_arr.sum()
        se = float(np.sqrt(((excess_arr - c2 * weight_arr) ** 2).sum())) / weight_arr.sum()
        if se <= 0 or c2 + bound * se <= 0:
            continue
        phis = np.maximum(phis, 1 + (c2 + bound * se) * np.array(scale))
    return phis.tolist()


# the sums sum_k c_k^i n_k^j that cluster_dispersion takes: "all" over every key, "multi" over the
# keys with at least two comparisons (a key of one adds nothing to the design effect but noise)
# keys with at least two comparisons ("erring", 0, 0 counts those of them with an error)
CLUSTER_MOMENTS = (("all", 1, 0), ("all", 0, 1), ("multi", 0, 1), ("multi", 2, 0), ("multi", 1, 1), ("multi", 0, 2),
                   ("multi", 2, 1), ("multi", 1, 2), ("multi", 0, 3), ("multi", 4, 0), ("multi", 3, 1),
                   ("multi", 2, 2), ("multi", 1, 3), ("multi", 0, 4), ("erring", 0, 0))


def cluster_dispersion(moments: dict[tuple[str, int, int], float], confidence: float) -> float:
    """The design effect of errors clustered by a key (a subject or a session), bounded at
    ``confidence``: from the baseline's ``c_k`` errors in ``n_k`` comparisons of each key ``k``
    (a comparison without a key is a key of its own), given as the sums of :data:`CLUSTER_MOMENTS`.

    With the keys as sampling clusters (Kish), the design effect is
    ``D = sum_k (c_k - n_k p)^2 / sum_k n_k p (1 - p)`` (``p`` the stream's error share): 1 when a
    key's comparisons err independently at the common rate, ``1 + (m - 1) rho`` for keys of ``m``
    comparisons whose errors correlate by ``rho`` (a hard face errs again). Estimated as ``1 + sum_k
    e_k / sum_k b_k`` with the excess ``e_k = (c_k - n_k p)^2 - b_k``, ``b_k = n_k p (1 - p)``, over
    the keys of two or more comparisons (a key of one has ``E[e_k] = 0``: left out, it only adds
    noise, so streams without keys keep exactly 1), and bounded with the ratio's sandwich variance
    ``sum_k (e_k - (D - 1) b_k)^2 / (sum_k b_k)^2``, expanded in the sums so that the store returns
    15 numbers per stream instead of a row per key. The excess is carried by the ``K`` returning keys
    that erred, often few: the variance is taken ``K / (K - 1)`` times and the quantile is Student's
    t with ``K - 1`` degrees of freedom (at least 1), which keeps the bound near its level when a
    few dozen keys err and makes it wide when a handful do. Keys that come back
    steadily over the baseline with different error rates count as clusters too, which overstates
    the variation of short periods (conservative: less power, shown by ``fairwatch policy check``).

    >>> def sums(pairs):  # (errors, comparisons) per key
    ...     return {(part, i, j): float(sum(c**i * n**j for c, n in pairs
    ...                                     if part == "all" or n >= 2 and (part == "multi" or c > 0)))
    ...             for part, i, j in CLUSTER_MOMENTS}
    >>> cluster_dispersion(sums([(1, 1)] * 10 + [(0, 1)] * 990), 0.99)  # keys of one: binomial
    1.0
    >>> cluster_dispersion(sums([(5, 5)] * 10 + [(0, 5)] * 990), 0.99) > 4  # a key errs whole or not at all
    True
    """
    m = {key: float(moments.get(key, 0.0)) for key in CLUSTER_MOMENTS}
    errors, comparisons = m["all", 1, 0], m["all", 0, 1]
    if comparisons <= 0 or errors <= 0 or errors >= comparisons or m["multi", 0, 1] <= 0:
        return 1.0
    p = errors / comparisons
    q = p * (1 - p)
    b = q * comparisons
    excess = m["multi", 2, 0] - 2 * p * m["multi", 1, 1] + p**2 * m["multi", 0, 2] - q * m["multi", 0, 1]
    ratio = excess / b
    r = q * (1 + ratio)  # e_k - ratio b_k = c^2 - 2p c n + p^2 n^2 - r n
    spread = (m["multi", 4, 0] - 4 * p * m["multi", 3, 1] + 6 * p**2 * m["multi", 2, 2] - 4 * p**3 * m["multi", 1, 3]
              + p**4 * m["multi", 0, 4] - 2 * r * m["multi", 2, 1] + 4 * p * r * m["multi", 1, 2]
              - 2 * p**2 * r * m["multi", 0, 3] + r**2 * m["multi", 0, 2]
              + (ratio * q) ** 2 * (comparisons - m["multi", 0, 1]))  # the keys of one: e_k = 0 taken
    erring = max(m["erring", 0, 0], 2.0)
    quantile = float(stats.t.ppf(confidence, erring - 1))
    return max(1.0, 1 + ratio + quantile * math.sqrt(max(0.0, spread) * erring / (erring - 1)) / b)
