"""Homogeneity: is there any difference at all between the error rates of an attribute set's groups?

For one rate (FMR or FNMR; FPIR / FNIR in identification mode) of the groups of one attribute set,
:func:`homogeneity` tests ``H0: r_1 = r_2 = ... = r_k`` (every group with comparisons has the same
rate) against "some two groups differ", and gives a p-value and a :class:`Homogeneity` verdict.
It says whether a difference is shown, not how large it is: the differentials
(:mod:`fairwatch.core.differentials`) say that. Groups without comparisons (``n == 0``) take no
part. Each call is one test at level ``1 - confidence``; an audit of many attribute sets and both
rates makes many tests, and the chance that one of them says ``differ`` under parity everywhere
grows with their number.

Two methods, chosen per call:

``exact-conditional``
    When the groups' verified comparisons are a binomial sample of their rate through a common
    design: unweighted (every weight 1), or partially verified with the same ratio
    ``error_inclusion / correct_inclusion`` of the two strata's inclusion probabilities in every
    group (:class:`~fairwatch.core.estimates.RateEstimate`; e.g. every non-match verified with the
    same probability ``pi``, every match verified). Given its ``n`` verified comparisons, a group's
    verified errors are Binomial(``n``, ``q``) with error share ``q / (1 - q) = r / (1 - r) *
    error_inclusion / correct_inclusion`` (:func:`~fairwatch.core.intervals.verified_share_to_rate`),
    so equal rates give equal shares, and given both margins of the 2 x k table (errors and correct
    decisions by group) the table's null distribution is the multivariate hypergeometric, whatever
    the common share: the test is exact. The statistic is the likelihood-ratio
    ``G = 2 sum O log(O / E)`` (``E`` the expected counts under the margins); its null law is
    sampled with ``draws`` tables of :func:`scipy.stats.random_table` (Patefield's algorithm, fast
    for any counts), seeded, and ``p = (1 + #{G_null >= G_obs}) / (1 + draws)`` (ties within a
    relative ``1e-9``), a valid p-value for any number of draws (Davison and Hinkley [^1]): under
    H0 the observed table is exchangeable with the draws. A table with no error, or no correct
    decision, is the only one with its margins: ``p = 1``.

``interval-intersection``
    Otherwise (strata verified with different probabilities in different groups, a stratum whose
    probability varies or is unknown): under H0 every group's interval at level ``1 - alpha / k``
    (:meth:`~fairwatch.core.estimates.RateEstimate.interval`, the two-phase interval) holds the
    common rate with probability at least ``1 - alpha / k``, so with probability at least
    ``1 - alpha`` (Bonferroni) all hold it and their intersection is not empty. An empty
    intersection (largest lower bound above the smallest upper bound) rejects at level ``alpha``.
    The intervals shrink as ``alpha`` grows, so the p-value, the least ``alpha`` at which the
    intersection is empty, is the root in ``log(alpha)`` of "largest lower bound minus smallest
    upper bound", found between :data:`ALPHA_FLOOR` and :data:`ALPHA_CEILING` by Brent's method
    (to a relative ``1e-4``); the reported value is one at which the intersection was seen empty,
    so it errs upwards (conservative). ``p = 1`` when the intervals still meet at
    :data:`ALPHA_CEILING`; ``p = ALPHA_FLOOR`` means "at most that". Valid whatever the rates and
    designs, as far as the intervals are (exact where each stratum has one probability; the
    effective-counts fallback where it varies is an approximation), and conservative: Bonferroni
    and Clopper-Pearson both hold their level with room to spare, so it needs a larger difference
    than the exact test to reject.

``method="auto"`` (default) takes the exact test whenever its condition holds; either method may
be asked for, but ``exact-conditional`` only where its condition holds.

Verdict, with ``alpha = 1 - confidence``:

1. ``insufficient`` with ``p_value`` None and method ``none`` when fewer than two groups have
   comparisons;
2. ``insufficient`` when any group (also one without comparisons) has fewer than
   ``min_comparisons``, as for the differentials' policy verdict; the p-value is still computed
   and shown (it is valid: a small group only costs power), but no verdict is drawn from it;
3. otherwise ``differ`` when ``p_value <= alpha``, else ``no_difference_shown`` (never "equal":
   a test that does not reject shows no parity).

Examples
--------
FNMR 2/1000 against 12/1000, every comparison verified:

>>> from fairwatch.core.config import CoreConfig
>>> from fairwatch.core.estimates import RateEstimator
>>> estimator = RateEstimator(CoreConfig())
>>> block = np.array([[1000, 2] * 3, [1000, 12] * 3], dtype=float)
>>> result = homogeneity(estimator.estimate(block, None), confidence=0.95, min_comparisons=30)
>>> result.method, result.groups, result.verdict, result.p_value < 0.05
('exact-conditional', 2, 'differ', True)

The Bonferroni intervals, the only choice for groups verified differently, need more evidence
for the same counts:

>>> result = homogeneity(estimator.estimate(block, None), 0.95, 30, method="interval-intersection")
>>> result.verdict, round(result.p_value, 2)
('no_difference_shown', 0.15)

References
----------
[^1]: Davison, A. C. and Hinkley, D. V. (1997). Bootstrap Methods and Their Application.
    Cambridge University Press, section 4.2.5 (Monte Carlo p-values ``(1 + #) / (1 + R)``).
[^2]: Patefield, W. M. (1981). Algorithm AS 159: an efficient method of generating random r x c
    tables with given row and column totals. Applied Statistics, 30(1), 91-97.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from fairwatch.core.estimates import RateEstimate

__all__ = ["ALPHA_CEILING", "ALPHA_FLOOR", "METHODS", "VERDICTS", "Homogeneity", "g_statistic", "homogeneity"]

METHODS = ("exact-conditional", "interval-intersection", "none")
VERDICTS = ("differ", "no_difference_shown", "insufficient")
ALPHA_FLOOR = 1e-10  # interval-intersection p-values below this are reported as this (an upper bound)
ALPHA_CEILING = 0.999  # intervals that still meet at this alpha give p = 1
_LOG_TOLERANCE = 1e-4  # the root search stops within this of log(alpha)
_TIE = 1e-9  # null statistics within this relative distance of the observed one count as ties
_SAME_DESIGN = 1e-6  # relative tolerance between the groups' inclusion-probability ratios


@dataclass(frozen=True, slots=True)
class Homogeneity:
    """Result of one homogeneity test; rules in the module docstring.

    ``groups`` counts the groups with comparisons (the ``k`` of the test).
    """

    p_value: float | None
    method: str
    groups: int
    verdict: str

    def to_dict(self) -> dict:
        return {"p_value": self.p_value, "method": self.method, "groups": self.groups, "verdict": self.verdict}


def homogeneity(
    estimates: Sequence[RateEstimate],
    confidence: float,
    min_comparisons: int,
    *,
    draws: int = 2000,
    seed: int = 0,
    method: str = "auto",
) -> Homogeneity:
    """Test that the groups' rates are all equal (module docstring).

    Parameters
    ----------
    estimates
        One rate of every group of one attribute set, e.g. ``[g.fnmr for g in groups]`` of a
        :class:`~fairwatch.core.groupframe.GroupFrame`'s estimates of that set (never the overall
        row). Built with the group's strata (as ``GroupFrame`` does), their inclusion
        probabilities decide the method.
    confidence
        ``1 - alpha``: ``differ`` when ``p_value <= 1 - confidence``.
    min_comparisons
        A group with fewer comparisons makes the verdict ``insufficient``.
    draws
        Null tables of the exact-conditional test; its p-value is at least ``1 / (1 + draws)``.
    seed
        Seed of those draws: the same counts give the same p-value.
    method
        ``"auto"``, ``"exact-conditional"`` (ValueError where its condition does not hold) or
        ``"interval-intersection"``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    if method not in ("auto", *METHODS[:2]):
        raise ValueError(f"method must be 'auto' or one of {METHODS[:2]}, got {method!r}")
    measured = [est for est in estimates if est.n > 0]
    if len(measured) < 2:
        return Homogeneity(None, "none", len(measured), "insufficient")
    exact = _common_design(measured)
    if method == "exact-conditional" and not exact:
        raise ValueError("exact-conditional needs every group's strata known, each with one inclusion probability, "
                         "and the same error / correct inclusion ratio in every group")
    if method == "interval-intersection" or not exact:
        chosen, p_value = "interval-intersection", _intersection_p_value(measured)
    else:
        errors = np.array([est.errors for est in measured], dtype=np.int64)
        n = np.array([est.n for est in measured], dtype=np.int64)
        chosen, p_value = "exact-conditional", _exact_p_value(errors, n, draws, seed)
    if any(est.n < min_comparisons for est in estimates):
        verdict = "insufficient"
    else:
        verdict = "differ" if p_value <= 1 - confidence else "no_difference_shown"
    return Homogeneity(p_value, chosen, len(measured), verdict)


def _common_design(estimates: Sequence[RateEstimate]) -> bool:
    """Every group's two strata have one known probability each, in the same ratio everywhere."""
    ratios = []
    for est in estimates:
        error, correct = est.error_inclusion, est.correct_inclusion
        # None: unknown; VARIES (negative): several probabilities within the stratum
        if error is None or correct is None or not (error > 0 and correct > 0):
            return False
        ratios.append(error / correct)
    return max(ratios) <= min(ratios) * (1 + _SAME_DESIGN)


def g_statistic(errors: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Likelihood-ratio statistic of the 2 x k tables ``errors`` (shape ``[..., k]``) over ``n``.

    ``2 sum O log(O / E)`` over both rows, with ``E`` the counts expected from the margins.
    """
    errors = np.asarray(errors, dtype=float)
    n = np.asarray(n, dtype=float)
    correct = n - errors
    total = n.sum()
    share = errors.sum(axis=-1, keepdims=True) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = special.xlogy(errors, errors / (n * share)) + special.xlogy(correct, correct / (n * (1 - share)))
    return 2 * terms.sum(axis=-1)


def _exact_p_value(errors: np.ndarray, n: np.ndarray, draws: int, seed: int) -> float:
    total_errors = int(errors.sum())
    if total_errors == 0 or total_errors == int(n.sum()):
        return 1.0  # one table has these margins
    observed = g_statistic(errors, n)
    tables = stats.random_table([total_errors, int(n.sum()) - total_errors], n, seed=seed).rvs(
        size=draws, method="patefield")
    null = g_statistic(tables[:, 0, :], n)
    extreme = int(np.count_nonzero(null >= observed - _TIE * max(1.0, abs(observed))))
    return (1 + extreme) / (1 + draws)


def _gap(estimates: Sequence[RateEstimate], log_alpha: float) -> float:
    """Largest lower bound minus smallest upper bound of the groups' intervals at level
    ``1 - alpha / k``: positive when their intersection is empty; increasing in ``alpha``."""
    bounds = [est.interval(1 - math.exp(log_alpha) / len(estimates)) for est in estimates]
    return max(low for low, _ in bounds) - min(high for _, high in bounds)


def _intersection_p_value(estimates: Sequence[RateEstimate]) -> float:
    floor, ceiling = math.log(ALPHA_FLOOR), math.log(ALPHA_CEILING)
    if _gap(estimates, ceiling) <= 0:
        return 1.0
    if _gap(estimates, floor) > 0:
        return ALPHA_FLOOR
    # the gap is continuous in log(alpha): Brent's method finds its root in a few evaluations
    root = optimize.brentq(lambda x: _gap(estimates, x), floor, ceiling, xtol=_LOG_TOLERANCE)
    # report an alpha at which the intersection was seen empty, at or above the root
    step = _LOG_TOLERANCE
    while root + step < ceiling and _gap(estimates, root + step) <= 0:
        step *= 2
    return math.exp(min(root + step, ceiling))
