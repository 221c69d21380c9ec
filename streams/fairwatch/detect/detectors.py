"""Drift detectors with a controlled false-alarm rate, and river's detectors beside them.

Every calibrated detector here is a *mixture Shiryaev-Roberts e-detector* [^1] over a stream of
per-bucket counts. For a grid of alternatives ``k`` with weights ``w_k`` and the per-bucket
likelihood ratio ``L_t^k`` of alternative ``k`` against the edge of the null, the statistic is

``R_t^k = (R_{t-1}^k + 1) L_t^k``,  ``R_t = sum_k w_k R_t^k``,  alarm when ``R_t >= A``,

and ``R`` restarts at 0 after an alarm. When the null holds, ``E[L_t^k | past] <= 1``, so
``R_t - t`` is a supermartingale and optional stopping gives ``E[time to a false alarm] >= A``
steps, whatever the alternatives (Pollak's argument [^2]; Shin, Ramdas and Rinaldo's e-SR [^1]).
With restarts the long-run rate of false alarms of one stream is at most ``1 / A`` per step
(renewal-reward theorem). Giving each of ``S`` streams ``A = S * steps_per_day / budget``
(:func:`threshold_for_budget`) bounds the expected false alarms per day across all of them by
``budget``: the false-alarm *rate* is spent across streams like alpha in a Bonferroni split,
which needs no assumption on how the streams depend on each other.

Streams and their per-bucket likelihood ratios:

* error rate leaving its baseline band (:func:`rate_log_lr`): ``errors ~ Binomial(n, p)``,
  null ``p <= p_band`` (``band`` times an upper confidence bound of the baseline rate),
  alternatives ``p_band * r``. Exact for comparisons independent given the rate.
* disparity (:func:`disparity_log_lr`): a group's rate against ``ratio`` times a reference
  group's. Given ``m`` errors in the two groups in a bucket, the group's share is
  ``Binomial(m, pi)`` with ``pi = n_g p_g / (n_g p_g + n_r p_r)`` when errors are Poisson (rare
  errors: the binomial is within ``O(p)`` of it); the null ``p_g <= ratio * p_r`` is
  ``pi <= ratio n_g / (ratio n_g + n_r)``, whatever the reference's own rate.
* label-free score drift: the share of non-match decisions whose score is above a baseline
  quantile, treated as the error-rate stream above (no verified outcome needed).

Overdispersed counts (rates that vary between buckets or hours, errors in clusters) break
``E[L_t | past] <= 1``. Each stream therefore carries the dispersion ``phi >= 1`` of its baseline
buckets (:mod:`fairwatch.detect.dispersion`), every log likelihood ratio is divided by it
(quasi-likelihood) and the baseline's upper bound is taken on the effective counts ``x / phi`` of
``n / phi``; ``phi = 1`` is the binomial detector. The mean <= 1 then holds approximately (for
near-normal block sums with ``phi`` times the binomial variance), so the false-alarm rate under
overdispersion is measured, in ``benchmarks/bench_detection.py``, rather than proven. Counts with a
heavy tail (one key's errors arriving together: ``benchmarks/bench_clusters.py``) break the normal
approximation however large ``phi`` is; for each alternative ``r_k`` a bucket's count is
therefore taken at most the larger of :data:`BURST_SD` quasi-standard deviations (and one error)
above the null's mean (:func:`burst_cap`) and the alternative's own mean: a burst is evidence of one
bad bucket, a drift up to ``r_k`` keeps its evidence for ``r_k`` at any volume, and each column's
ratio only falls (the guarantee holds as before). Rate and score streams only: see
:class:`DisparityDetector` for pairs.

Baselines are estimated: the guarantee holds on the event that the baseline's upper bound is
above the true pre-change rate, which has probability at least the baseline confidence.

References
----------
[^1]: Shin, J., Ramdas, A. and Rinaldo, A. (2024). E-detectors: a nonparametric framework for
    sequential change detection. New England Journal of Statistics in Data Science, 2(2).
[^2]: Pollak, M. (1987). Average run lengths of an optimal method of detecting a change in
    distribution. Annals of Statistics, 15(2), 749-779.
[^3]: Lorden, G. (1971). Procedures for reacting to a change in distribution. Annals of
    Mathematical Statistics, 42(6), 1897-1908 (delay >= log(ARL0) / KL, asymptotically).
[^4]: Bifet, A. and Gavalda, R. (2007). Learning from time-changing data with adaptive
    windowing (ADWIN). SIAM SDM.
[^5]: Page, E. S. (1954). Continuous inspection schemes. Biometrika, 41(1/2), 100-115.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = [
    "DEFAULT_GRID", "Baseline", "MixtureShiryaevRoberts", "RateDriftDetector", "DisparityDetector",
    "rate_log_lr", "disparity_log_lr", "threshold_for_budget", "bernoulli_kl", "cusum_information_bound",
    "AdwinErrorDetector", "ScoreMeanPageHinkley",
]

# alternatives as multiples of the null edge; uniform weights
DEFAULT_GRID = (1.5, 2.0, 3.0, 5.0, 10.0)
_P_MAX = 1 - 1e-9


def bernoulli_kl(p1: float, p0: float) -> float:
    """KL(Bernoulli(p1) || Bernoulli(p0)) in nats.

    >>> round(bernoulli_kl(0.03, 0.01), 5)
    0.01316
    """
    return float(special.xlogy(p1, p1 / p0) + special.xlogy(1 - p1, (1 - p1) / (1 - p0)))


def cusum_information_bound(arl0: float, p0: float, p1: float) -> float:
    """Lorden's asymptotic lower bound on the detection delay, ``log(ARL0) / KL(p1 || p0)`` [^3].

    No procedure whose average run length to a false alarm is ``arl0`` observations detects a
    change from ``p0`` to ``p1`` faster (in the worst case over change times), asymptotically.

    >>> round(cusum_information_bound(1e6, 0.01, 0.03))
    1050
    """
    return math.log(arl0) / bernoulli_kl(p1, p0)


def threshold_for_budget(n_streams: int, steps_per_day: float, false_alarms_per_day: float) -> float:
    """Per-stream alarm threshold ``A`` so that ``n_streams`` streams raise at most
    ``false_alarms_per_day`` false alarms per day on average (each stream gets an equal share).

    >>> threshold_for_budget(100, 1440, 0.1)
    1440000.0
    """
    if n_streams < 1 or steps_per_day <= 0 or false_alarms_per_day <= 0:
        raise ValueError("need n_streams >= 1, steps_per_day > 0 and false_alarms_per_day > 0")
    return max(1.0, n_streams * steps_per_day / false_alarms_per_day)


@dataclass(frozen=True, slots=True)
class Baseline:
    """An error rate measured over a baseline period and the band it should stay in.

    ``upper`` is the one-sided Clopper-Pearson bound at ``confidence``; ``edge = band * upper``
    is the null edge the drift test uses (a rate above it is a departure).

    >>> b = Baseline.from_counts(30, 10_000, band=1.5, confidence=0.95)
    >>> print(f"{b.rate:.4f} {b.upper:.5f} {b.edge:.5f}")
    0.0030 0.00407 0.00610
    """

    errors: float
    n: float
    rate: float | None
    upper: float
    edge: float

    @classmethod
    def from_counts(cls, errors: float, n: float, band: float, confidence: float, dispersion: float = 1.0) -> Baseline:
        """``dispersion`` (>= 1, :mod:`fairwatch.detect.dispersion`) widens the bound: it is taken
        on the effective counts ``errors / dispersion`` of ``n / dispersion``."""
        if n < 0 or not 0 <= errors <= n:
            raise ValueError("need 0 <= errors <= n")
        if band < 1:
            raise ValueError(f"band must be >= 1, got {band}")
        if not dispersion >= 1:
            raise ValueError(f"dispersion must be >= 1, got {dispersion}")
        x, m = errors / dispersion, n / dispersion
        upper = 1.0 if errors >= n else float(stats.beta.ppf(confidence, x + 1, m - x))
        return cls(errors, n, errors / n if n else None, upper, min(band * upper, _P_MAX))


BURST_SD = 4.0  # a bucket's count beyond this many quasi-standard deviations above the null counts as that


def burst_cap(errors, n, p0, dispersion=1.0) -> np.ndarray:
    """``errors`` at most ``n p0 + BURST_SD sqrt(phi n p0 (1 - p0)) + 1`` (the null's mean, a few
    quasi-standard deviations and one error above it).

    >>> burst_cap(np.array([0.0, 3.0, 30.0]), 300.0, 1e-3, 10.0).round(2)
    array([0.  , 3.  , 8.22])
    """
    errors, n = np.asarray(errors, float), np.asarray(n, float)
    p0, dispersion = np.asarray(p0, float), np.asarray(dispersion, float)
    mean = n * p0
    return np.minimum(errors, mean + BURST_SD * np.sqrt(dispersion * mean * (1 - p0)) + 1)


def _capped_columns(errors: np.ndarray, null_cap: np.ndarray, alternative_means: np.ndarray) -> np.ndarray:
    """``float[..., K]``: for alternative ``k`` the count at most the larger of the null's cap and
    the alternative's own mean: a burst counts as a few sd, a drift up to ``r_k`` keeps its evidence
    for ``r_k`` however many comparisons a bucket holds (each column's ratio only falls)."""
    return np.minimum(errors[..., None], np.maximum(null_cap[..., None], alternative_means))


def rate_log_lr(errors: np.ndarray, n: np.ndarray, edge: np.ndarray, grid=DEFAULT_GRID,
                dispersion=1.0, capped: bool = False) -> np.ndarray:
    """Per-bucket log likelihood ratios ``float[..., K]`` of ``p = edge * r_k`` against ``p = edge``,
    divided by ``dispersion`` (quasi-likelihood; 1 for binomial counts); with ``capped``, of the
    count at most the larger of :func:`burst_cap` and ``n edge r_k`` (what the detectors run).

    ``errors`` and ``n`` are ``float[T, S]`` (or any shape), ``edge`` and ``dispersion`` broadcast
    against them. An empty bucket has ratio 1 (log 0).

    >>> rate_log_lr(np.array([1.0]), np.array([100.0]), 0.01, grid=(2.0,)).round(4)
    array([[-0.3119]])
    """
    errors, n = np.asarray(errors, float), np.asarray(n, float)
    edge = np.broadcast_to(np.asarray(edge, float), errors.shape)
    p1 = np.minimum(edge[..., None] * np.asarray(grid, float), _P_MAX)
    p0 = edge[..., None]
    dispersion = np.broadcast_to(np.asarray(dispersion, float), errors.shape)
    if capped:
        x = _capped_columns(errors, burst_cap(errors, n, edge, dispersion), n[..., None] * p1)
    else:
        x = errors[..., None]
    llr = x * np.log(p1 / p0) + (n[..., None] - x) * (np.log1p(-p1) - np.log1p(-p0))
    return llr / dispersion[..., None]


def disparity_log_lr(errors_g, n_g, errors_r, n_r, ratio: float, grid=DEFAULT_GRID, dispersion=1.0) -> np.ndarray:
    """Per-bucket log likelihood ratios ``float[..., K]`` for "group rate > ratio x reference rate",
    divided by ``dispersion`` (of the split of the two groups' errors: quasi-likelihood).

    Conditional on the errors of both groups in the bucket (see the module docstring); a bucket
    where either group has no comparison or no error happened carries no evidence (log 0).

    >>> # 4 errors in the group, 1 in the reference, equal traffic, policy ratio 1.25
    >>> disparity_log_lr(4.0, 1000.0, 1.0, 1000.0, 1.25, grid=(2.0,)).round(4)
    array([0.5634])
    """
    errors_g, n_g, errors_r, n_r = (np.asarray(v, float) for v in (errors_g, n_g, errors_r, n_r))
    informative = (n_g > 0) & (n_r > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(informative, n_g / np.where(informative, n_r, 1.0), 1.0)[..., None]
    grid = np.asarray(grid, float)
    pi0 = ratio * share / (ratio * share + 1)
    pi1 = ratio * grid * share / (ratio * grid * share + 1)
    llr = errors_g[..., None] * np.log(pi1 / pi0) + errors_r[..., None] * (np.log1p(-pi1) - np.log1p(-pi0))
    llr = llr / np.broadcast_to(np.asarray(dispersion, float), informative.shape)[..., None]
    return np.where(informative[..., None], llr, 0.0)


def _dispersions(dispersion, n_streams: int) -> np.ndarray:
    """``float[n_streams]`` from a scalar or one per stream; each at least 1 (NaN refused)."""
    values = np.broadcast_to(np.asarray(dispersion, float).reshape(-1), (n_streams,)).copy()
    if np.any(~(values >= 1)):
        raise ValueError(f"dispersion must be >= 1, got {dispersion}")
    return values


class MixtureShiryaevRoberts:
    """A bank of ``n_streams`` mixture Shiryaev-Roberts e-detectors, one step at a time.

    Parameters
    ----------
    n_streams
        Independent statistics kept side by side (vectorized).
    log_threshold
        ``log A`` per stream (scalar or ``float[n_streams]``).
    weights
        Mixing weights of the alternatives (normalized); uniform when None.
    n_alternatives
        Number of alternatives when ``weights`` is None.

    Examples
    --------
    One stream, FMR edge 1e-3, 1,000 comparisons a bucket, 1e6 steps to a false alarm:

    >>> sr = MixtureShiryaevRoberts(1, np.log(1e6), n_alternatives=len(DEFAULT_GRID))
    >>> quiet = rate_log_lr(np.array([[1.0]]), np.array([[1000.0]]), 1e-3)[0]
    >>> any(sr.update(quiet)[0] for _ in range(200))
    False
    >>> drifted = rate_log_lr(np.array([[4.0]]), np.array([[1000.0]]), 1e-3)[0]
    >>> next(step for step in range(1, 100) if sr.update(drifted)[0])
    6

    References
    ----------
    Shin, Ramdas and Rinaldo (2024) [^1]; Pollak (1987) [^2].
    """

    def __init__(self, n_streams: int, log_threshold, weights=None, n_alternatives: int | None = None):
        if weights is None:
            if not n_alternatives:
                raise ValueError("give weights or n_alternatives")
            weights = np.ones(n_alternatives)
        weights = np.asarray(weights, float)
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("weights must be non-negative and not all 0")
        self.log_weights = np.log(weights / weights.sum())
        self.log_threshold = np.broadcast_to(np.asarray(log_threshold, float), (n_streams,)).copy()
        self.log_r = np.full((n_streams, len(weights)), -np.inf)
        self.log_stat = np.full(n_streams, -np.inf)

    def update(self, log_lr: np.ndarray) -> np.ndarray:
        """One step with ``log_lr`` ``float[n_streams, K]``; returns which streams alarmed (then reset)."""
        self.log_r = np.logaddexp(self.log_r, 0.0) + log_lr
        self.log_stat = special.logsumexp(self.log_r + self.log_weights, axis=1)
        alarm = self.log_stat >= self.log_threshold
        self.log_r[alarm] = -np.inf
        return alarm

    def run(self, log_lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps over ``float[T, n_streams, K]``; returns ``alarm bool[T, S]`` and ``log R float[T, S]``
        (the statistic at each step, before the reset of an alarming stream)."""
        alarms = np.zeros(log_lr.shape[:2], bool)
        log_stats = np.empty(log_lr.shape[:2])
        for t in range(log_lr.shape[0]):
            alarms[t] = self.update(log_lr[t])
            log_stats[t] = self.log_stat
        return alarms, log_stats


class RateDriftDetector:
    """Alarms when an error rate leaves its baseline band, with an average run length to a
    false alarm of at least ``threshold`` buckets (river-style: ``update`` returns the detector,
    then read ``drift_detected`` and ``statistic``).

    One detector, or a bank of independent ones side by side when ``edge`` is an array: then
    ``update`` takes arrays of the same shape and ``drift_detected`` / ``statistic`` are arrays.
    A stream that alarms restarts from nothing.

    Parameters
    ----------
    edge
        Null edge: the highest rate that is not a departure (:attr:`Baseline.edge`); a scalar,
        or one per stream.
    threshold
        ``A``; see :func:`threshold_for_budget`.
    grid
        Alternatives as multiples of ``edge``.
    dispersion
        Extra-binomial variation of the counts (:mod:`fairwatch.detect.dispersion`), scalar or one
        per stream; the likelihood ratios are divided by it.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> detector = RateDriftDetector(edge=0.002, threshold=1e5)
    >>> sum(detector.update(rng.binomial(500, 0.001), 500).drift_detected for _ in range(500))
    0
    >>> for step in range(1, 500):
    ...     if detector.update(rng.binomial(500, 0.006), 500).drift_detected:
    ...         break
    >>> step < 30
    True

    A bank of two streams, the second drifted:

    >>> bank = RateDriftDetector(edge=np.array([0.002, 0.002]), threshold=1e5)
    >>> first = next(t for t in range(1, 100) if bank.update(np.array([1, 6]), np.array([500, 500])).drift_detected.any())
    >>> bank.drift_detected.tolist(), first < 30
    ([False, True], True)
    """

    def __init__(self, edge, threshold: float, grid=DEFAULT_GRID, dispersion=1.0):
        edges = np.asarray(edge, float)
        if np.any((edges <= 0) | (edges >= 1)):
            raise ValueError(f"edge must be in (0, 1), got {edge}")
        self.dispersion = _dispersions(dispersion, edges.size)
        self.edge, self.grid = edges, tuple(grid)
        self._sr = MixtureShiryaevRoberts(edges.size, math.log(threshold), n_alternatives=len(self.grid))
        self._alarm = np.zeros(edges.size, bool)

    @property
    def drift_detected(self):
        """Whether the last update alarmed (bool, or ``bool[...]`` for a bank)."""
        return bool(self._alarm[0]) if self.edge.ndim == 0 else self._alarm.reshape(self.edge.shape).copy()

    @property
    def statistic(self):
        """``log R`` after the last update, before the reset of an alarming stream."""
        return float(self._sr.log_stat[0]) if self.edge.ndim == 0 else self._sr.log_stat.reshape(self.edge.shape).copy()

    def update(self, errors, n) -> RateDriftDetector:
        """One bucket: ``errors`` out of ``n`` comparisons (per stream for a bank)."""
        shape = self.edge.shape
        errors = np.broadcast_to(np.asarray(errors, float), shape).reshape(-1)
        n = np.broadcast_to(np.asarray(n, float), shape).reshape(-1)
        edge = self.edge.reshape(-1)
        self._alarm = self._sr.update(rate_log_lr(errors, n, edge, self.grid, self.dispersion, capped=True))
        return self


class DisparityDetector:
    """Alarms when a group's error rate exceeds ``ratio`` times a reference group's (river-style,
    like :class:`RateDriftDetector`; a bank of ``n_streams`` detectors sharing the ratio when
    ``n_streams`` is given).

    Parameters
    ----------
    ratio
        Policy ratio (e.g. 1.25 allows a 25% higher rate than the reference).
    threshold
        ``A``; see :func:`threshold_for_budget`.
    grid
        Alternatives as multiples of ``ratio``.
    n_streams
        For a bank: the number of (group, reference) pairs updated together; None for one.
    dispersion
        As for :class:`RateDriftDetector`: scalar or one per pair.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> detector = DisparityDetector(ratio=2.0, threshold=1e5)
    >>> sum(detector.update(rng.binomial(2000, 0.004), 2000, rng.binomial(2000, 0.002), 2000).drift_detected
    ...     for _ in range(300))
    0
    >>> steps = next(s for s in range(1, 300)
    ...              if detector.update(rng.binomial(2000, 0.016), 2000, rng.binomial(2000, 0.002), 2000).drift_detected)
    >>> steps < 20
    True
    """

    def __init__(self, ratio: float, threshold: float, grid=DEFAULT_GRID, n_streams: int | None = None,
                 dispersion=1.0):
        if ratio <= 0:
            raise ValueError(f"ratio must be positive, got {ratio}")
        self.ratio, self.grid, self.n_streams = ratio, tuple(grid), n_streams
        self.dispersion = _dispersions(dispersion, n_streams or 1)
        self._sr = MixtureShiryaevRoberts(n_streams or 1, math.log(threshold), n_alternatives=len(self.grid))
        self._alarm = np.zeros(n_streams or 1, bool)

    @property
    def drift_detected(self):
        """Whether the last update alarmed (bool, or ``bool[n_streams]`` for a bank)."""
        return bool(self._alarm[0]) if self.n_streams is None else self._alarm.copy()

    @property
    def statistic(self):
        """``log R`` after the last update, before the reset of an alarming stream."""
        return float(self._sr.log_stat[0]) if self.n_streams is None else self._sr.log_stat.copy()

    def update(self, errors, n, reference_errors, reference_n) -> DisparityDetector:
        """One bucket of the group and of its reference (per pair for a bank)."""
        values = (np.atleast_1d(np.asarray(v, float)) for v in (errors, n, reference_errors, reference_n))
        # no burst cap: a cap on the split grows with the burst it should cut, and one from the
        # reference's few errors cut the evidence of a breach (its power within a day fell from
        # 1.00 to 0.14 in bench_disparity); the split's dispersion is what holds pairs
        self._alarm = self._sr.update(disparity_log_lr(*values, self.ratio, self.grid, self.dispersion))
        return self


class AdwinErrorDetector:
    """river's ADWIN [^4] on the 0/1 error indicators of a population, fed from bucket counts.

    The comparisons of a bucket are fed in a random order (seeded): counts do not keep it.
    ADWIN controls its false alarms per test of a window split (``delta``), not per stream or
    per day, so its alarm rate grows with the data; it is measured beside the calibrated
    detectors in ``benchmarks/bench_drift.py``.

    Examples
    --------
    >>> detector = AdwinErrorDetector(seed=0)
    >>> detector.update(0, 2000).drift_detected, detector.update(200, 2000).drift_detected
    (False, True)

    References
    ----------
    Bifet and Gavalda (2007) [^4].
    """

    def __init__(self, seed: int = 0, **adwin_options):
        from river.drift import ADWIN

        self._adwin = ADWIN(**adwin_options)
        self._rng = np.random.default_rng(seed)
        self.detections = 0
        self.drift_detected = False

    def update(self, errors: int, n: int) -> AdwinErrorDetector:
        """One bucket; ``drift_detected`` says whether ADWIN detected a change within it."""
        values = np.zeros(int(n))
        values[self._rng.choice(int(n), int(errors), replace=False)] = 1.0
        detected = False
        for v in values:
            self._adwin.update(v)
            if self._adwin.drift_detected:
                detected = True
                self.detections += 1
        self.drift_detected = detected
        return self


class ScoreMeanPageHinkley:
    """river's Page-Hinkley [^5] on the standardized mean score of each bucket.

    ``z = (mean - mean0) / (sd0 / sqrt(n))`` is N(0, 1) under the baseline, whatever the bucket
    size, so one ``threshold`` fits every group. Label-free: scores arrive with the match events.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ph = ScoreMeanPageHinkley(mean0=0.0, sd0=1.0)
    >>> sum(ph.update(rng.normal(0.0, 1.0, 400)).drift_detected for _ in range(300))
    0
    >>> next(step for step in range(1, 100) if ph.update(rng.normal(0.3, 1.0, 400)).drift_detected)
    7

    References
    ----------
    Page (1954) [^5].
    """

    def __init__(self, mean0: float, sd0: float, **page_hinkley_options):
        from river.drift import PageHinkley

        if sd0 <= 0:
            raise ValueError(f"sd0 must be positive, got {sd0}")
        options = {"threshold": 50.0, "delta": 0.005, "mode": "up", **page_hinkley_options}
        self._ph = PageHinkley(**options)
        self.mean0, self.sd0 = mean0, sd0
        self._detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update with scores detected a change."""
        return self._detected

    def update_stats(self, score_sum: float, n: float) -> ScoreMeanPageHinkley:
        """One bucket given as the sum of its ``n`` scores (an empty bucket changes nothing)."""
        self._detected = False
        if n > 0:
            self._ph.update((score_sum / n - self.mean0) / (self.sd0 / math.sqrt(n)))
            self._detected = bool(self._ph.drift_detected)
        return self

    def update(self, scores: np.ndarray) -> ScoreMeanPageHinkley:
        """One bucket of scores."""
        scores = np.asarray(scores, float)
        return self.update_stats(float(scores.sum()), len(scores))
