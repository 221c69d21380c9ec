"""Demographic differentials: how unequal the error rates of the groups of one attribute set are.

An attribute set is the groups of one attribute (or intersection, e.g. ``sex&race``) of one
deployment x algorithm x mode; the overall row ``*`` is never part of it. With ``fmr_g`` and
``fnmr_g`` the rates of group ``g`` (FPIR / FNIR in identification mode):

==================  ========  ====================================================================
metric              rate      value
==================  ========  ====================================================================
max_min_ratio       fmr/fnmr  ``max_g r_g / min_g r_g`` (NIST FRVT demographics [^1])
max_geomean         fmr/fnmr  ``max_g r_g / (prod_g r_g)^(1/G)`` (NIST FRTE summaries [^2])
max_min_difference  fmr/fnmr  ``max_g r_g - min_g r_g``: the A and B of FDR
garbe               fmr/fnmr  Gini coefficient ``G(r) = n/(n-1) sum_i sum_j |r_i - r_j| / (2 n^2 mean(r))``
                              over the ``n`` groups [^4]
fdr                 combined  ``1 - (alpha A + (1 - alpha) B)``, ``A``, ``B`` the max-min differences of
                              FMR and FNMR; 1 is fair. Fairness Discrepancy Rate, Pereira and Marcel
                              [^3]; ``alpha = CoreConfig.fdr_alpha``
ir                  combined  ``(max fmr / min fmr)^alpha (max fnmr / min fnmr)^(1 - alpha)``; 1 is fair.
                              Inequity Rate as defined in Howard et al. [^4] (section II), who
                              evaluate it as the U.S. proposal to ISO/IEC 19795-10;
                              ``alpha = CoreConfig.ir_alpha``
garbe               combined  ``alpha G(fmr) + (1 - alpha) G(fnmr)``; 0 is fair. Gini Aggregation Rate
                              for Biometric Equitability [^4]; ``alpha = CoreConfig.garbe_alpha``
==================  ========  ====================================================================

Intervals: every group of the set gets an exact (Clopper-Pearson) interval for its rate at level
``1 - alpha / m``, ``m`` the number of groups with that rate measured (Bonferroni; for the combined
metrics, every group's FMR and FNMR: twice as many), so that with probability at least
``CoreConfig.confidence`` every group's rates lie in their intervals at once: a box. Each
differential's interval is the range of the metric over that box
(exact for the differences, FDR and the ratio upper bounds; conservative bounds for Max/GeoMean's
lower end and the Gini coefficient), so it covers the true value with at least the stated
probability whatever the rates, at parity included, and always holds the plug-in value. Weighted
populations enter with their two-phase intervals (:meth:`RateEstimate.interval`). A ratio whose box allows a rate of 0 has no upper
bound (``high`` is None): the data cannot rule out an arbitrarily large ratio, and saying a
number would be false; its lower bound still says how unequal the groups at least are.

Ratio floors: a policy may declare a floor per rate (``CoreConfig.ratio_floor_fmr`` /
``ratio_floor_fnmr``, e.g. the smallest rate it cares to tell apart). The ratio metrics (max/min,
Max/GeoMean, IR) are then those of the floored rates ``max(r_g, F)``, a different metric that the
rows name (``fmr_floor`` / ``fnmr_floor``): value and bounds are always finite, zero-error groups
included. The floored box is the box mapped by the same monotone function, so the intervals keep
their coverage. The differences and the Gini coefficients are bounded anyway and never floored, and
``vs_policy`` is judged on the unfloored ratio interval (a floor only lowers a ratio, so a floored
interval could call a set within the policy that is not).

Against a policy (``CoreConfig.policy_ratio``, the largest max/min ratio it allows), each rate's
``max_min_ratio`` says ``vs_policy``: ``above_policy`` when its whole interval lies above the
policy ratio, ``within_policy`` when its whole interval lies at or below it,
``not_distinguishable`` when the interval holds the policy ratio, and ``insufficient`` when
fewer than two groups have comparisons or a group has fewer than ``min_comparisons`` (whatever
the rate targets: the verdict is about the differential alone). The verdict holds with the interval's probability.
Other metrics, and sets without a policy, have None.

Status: ``insufficient`` when fewer than two groups have comparisons for a rate the metric uses,
or when any group of the set has status ``insufficient`` for such a rate (a differential can be
no better resolved than its worst-measured group; dropping that group would hide exactly the
groups most likely to be harmed); otherwise ``undefined`` when the value does not exist (a ratio
whose denominator rate is 0, e.g. a group with no observed error, and no floor declared: shown as
None, never inf or NaN; its lower bound is still given); otherwise ``ok``. Values that exist are shown whatever the status. With fewer than two
groups value and interval are None. The Gini coefficient of rates that are all 0 is 0 (all
equal).

References
----------
[^1]: Grother, P., Ngan, M. and Hanaoka, K. (2019). Face Recognition Vendor Test Part 3:
    Demographic Effects. NIST IR 8280.
[^2]: NIST FRTE 1:1 Verification, demographic differentials summary (max / geometric mean).
[^3]: de Freitas Pereira, T. and Marcel, S. (2022). Fairness in biometrics: a figure of merit to
    assess biometric verification systems. IEEE Transactions on Biometrics, Behavior, and Identity
    Science, 4(1), 19-29.
[^4]: Howard, J. J., Laird, E. J., Rubin, R. E., Sirotin, Y. B., Tipton, J. L. and Vemury, A. R.
    (2023). Evaluating proposed fairness models for face recognition algorithms. ICPR 2022
    workshops; arXiv:2203.05051.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from fairwatch.core.config import CoreConfig
from fairwatch.core.estimates import GroupEstimate, RateEstimate, Status

__all__ = [
    "AttributeSet",
    "Differential",
    "DifferentialStatus",
    "max_min_ratio",
    "max_geomean_ratio",
    "max_min_difference",
    "gini",
    "fdr",
    "inequity_rate",
    "garbe",
    "differentials",
    "rate_differentials",
]

RATES = ("fmr", "fnmr")


class AttributeSet(NamedTuple):
    deployment: str
    algorithm: str
    mode: str
    attribute: str


class DifferentialStatus(StrEnum):
    """Rules in the module docstring."""

    OK = "ok"
    INSUFFICIENT = "insufficient"
    UNDEFINED = "undefined"


# Each metric takes rates with the groups on the last axis, so that one call computes the plug-in
# value (shape [G]) or every bootstrap draw (shape [draws, G]).


def max_min_ratio(rates: np.ndarray) -> np.ndarray:
    """``max / min`` of the rates; inf or nan when the smallest rate is 0.

    >>> float(max_min_ratio(np.array([0.01, 0.04, 0.02])))
    4.0
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return rates.max(axis=-1) / rates.min(axis=-1)


def max_geomean_ratio(rates: np.ndarray) -> np.ndarray:
    """``max / geometric mean`` of the rates; inf or nan when a rate is 0.

    >>> round(float(max_geomean_ratio(np.array([0.01, 0.04]))), 6)  # 0.04 / sqrt(0.0004) = 0.04 / 0.02
    2.0
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return rates.max(axis=-1) / np.exp(np.log(rates).mean(axis=-1))


def max_min_difference(rates: np.ndarray) -> np.ndarray:
    """``max - min`` of the rates.

    >>> round(float(max_min_difference(np.array([0.01, 0.04, 0.02]))), 6)
    0.03
    """
    return rates.max(axis=-1) - rates.min(axis=-1)


def gini(rates: np.ndarray) -> np.ndarray:
    """Gini coefficient with the ``n / (n - 1)`` small-sample correction (Howard et al. [^4]).

    Uses ``sum_i sum_j |r_i - r_j| = 2 sum_i (2i - n - 1) r_(i)`` over the sorted rates, so
    ``G = sum_i (2i - n - 1) r_(i) / ((n - 1) sum_i r_i)``; 0 when every rate is 0.

    >>> float(gini(np.array([0.0, 1.0])))  # one group has all the errors
    1.0
    >>> float(gini(np.array([0.02, 0.02, 0.02])))
    0.0
    """
    count = rates.shape[-1]
    ranks = 2 * np.arange(1, count + 1) - count - 1
    total = rates.sum(axis=-1)
    spread = (np.sort(rates, axis=-1) * ranks).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, spread / ((count - 1) * total), 0.0)


def fdr(fmr: np.ndarray, fnmr: np.ndarray, alpha: float) -> np.ndarray:
    """Fairness Discrepancy Rate (Pereira and Marcel [^3]); 1 is fair.

    >>> round(float(fdr(np.array([0.01, 0.03]), np.array([0.1, 0.2]), alpha=0.5)), 6)  # 1 - (0.01 + 0.05)
    0.94
    """
    return 1 - (alpha * max_min_difference(fmr) + (1 - alpha) * max_min_difference(fnmr))


def inequity_rate(fmr: np.ndarray, fnmr: np.ndarray, alpha: float) -> np.ndarray:
    """Inequity Rate as defined in Howard et al. [^4]; 1 is fair.

    >>> float(inequity_rate(np.array([0.01, 0.04]), np.array([0.1, 0.1]), alpha=0.5))  # 4^0.5 * 1^0.5
    2.0
    """
    with np.errstate(invalid="ignore"):
        return max_min_ratio(fmr) ** alpha * max_min_ratio(fnmr) ** (1 - alpha)


def garbe(fmr: np.ndarray, fnmr: np.ndarray, alpha: float) -> np.ndarray:
    """Gini Aggregation Rate for Biometric Equitability (Howard et al. [^4]); 0 is fair.

    >>> float(garbe(np.array([0.0, 0.02]), np.array([0.1, 0.1]), alpha=0.5))  # 0.5 * 1 + 0.5 * 0
    0.5
    """
    return alpha * gini(fmr) + (1 - alpha) * gini(fnmr)


PER_RATE = {
    "max_min_ratio": max_min_ratio,
    "max_geomean": max_geomean_ratio,
    "max_min_difference": max_min_difference,
    "garbe": gini,
}


@dataclass(frozen=True, slots=True)
class Differential:
    """One differential of one attribute set; :meth:`to_dict` gives the JSON-ready row.

    ``max_group`` / ``min_group`` name the groups with the highest and lowest rate (per-rate
    metrics only); ``groups`` counts the groups that entered the value.
    """

    scope: AttributeSet
    metric: str
    rate: str
    value: float | None
    low: float | None
    high: float | None
    status: DifferentialStatus
    groups: int
    max_group: str | None = None
    min_group: str | None = None
    vs_policy: str | None = None
    fmr_floor: float | None = None
    fnmr_floor: float | None = None

    def to_dict(self) -> dict:
        return {
            **self.scope._asdict(),
            "metric": self.metric,
            "rate": self.rate,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "status": str(self.status),
            "groups": self.groups,
            "max_group": self.max_group,
            "min_group": self.min_group,
            "vs_policy": self.vs_policy,
            "fmr_floor": self.fmr_floor,
            "fnmr_floor": self.fnmr_floor,
        }


class _RateBox(NamedTuple):
    """The groups with comparisons for one rate: names, plug-in rates, simultaneous bounds."""

    groups: list[str]
    rates: np.ndarray
    low: np.ndarray
    high: np.ndarray
    resolved: bool
    evidence: bool  # two or more groups, each with min_comparisons: what a policy verdict needs


def _box(estimates: dict[str, RateEstimate], confidence: float, min_comparisons: int) -> _RateBox:
    """Exact intervals at ``confidence`` for every measured group (the caller splits alpha)."""
    measured = {name: est for name, est in estimates.items() if est.n > 0}
    resolved = len(measured) >= 2 and all(est.status != Status.INSUFFICIENT for est in estimates.values())
    evidence = len(measured) >= 2 and all(est.n >= min_comparisons for est in estimates.values())
    rates = np.array([est.rate for est in measured.values()], dtype=float)
    bounds = np.array([est.interval(confidence) for est in measured.values()], dtype=float).reshape(-1, 2)
    return _RateBox(list(measured), rates, bounds[:, 0], bounds[:, 1], resolved, evidence)


def _floored(box: _RateBox, floor: float | None) -> _RateBox:
    """The box of the rates ``max(r, floor)``: the same monotone map applied to the rates and bounds."""
    if floor is None:
        return box
    return box._replace(rates=np.maximum(box.rates, floor), low=np.maximum(box.low, floor),
                        high=np.maximum(box.high, floor))


RATIOS = ("max_min_ratio", "max_geomean")

MAX_VERTEX_GROUPS = 12  # up to 2**12 corners of the box are tried for the Gini coefficient's maximum


def _pairs(values: np.ndarray) -> np.ndarray:
    """``values[i, j]`` for the pairs of two different groups (one group is never both ends)."""
    return values[~np.eye(len(values), dtype=bool)]


def _ratio_bounds(low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """Range of ``max / min`` over the box: its least value makes the rates as equal as allowed,
    its greatest puts one group at its upper bound and another at its lower bound."""
    with np.errstate(divide="ignore", invalid="ignore"):
        most = _pairs(high[:, None] / low[None, :]).max()
        return max(1.0, float(low.max() / high.min())), float(most)


def _geomean_bounds(low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """The maximum puts one group at its upper bound and the others at their lower bounds; the
    minimum is bounded below by the largest lower bound over the geometric mean of the upper ones."""
    count = len(low)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_low, log_high = np.log(low), np.log(high)
        least = float(np.exp(log_low.max() - log_high.mean()))
        others = (log_low.sum() - log_low) / count  # each group's share of the others at their lower bounds
        # a lower bound of 0 lets the geometric mean reach 0 under any other group's maximum
        most = np.inf if low.min() == 0 else float(np.exp((log_high * (1 - 1 / count) - others).max()))
    return max(1.0, least), most


def _difference_bounds(low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    return max(0.0, float(low.max() - high.min())), float(_pairs(high[:, None] - low[None, :]).max())


def _gini_bounds(low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """The Gini coefficient is quasi-convex (a convex spread over a linear total), so its maximum
    over the box is at a corner: every corner is tried for up to :data:`MAX_VERTEX_GROUPS` groups,
    and beyond that each pairwise gap and the total are bounded separately (conservative). The
    minimum is bounded below the same separate way; it is 0 whenever the intervals overlap."""
    count = len(low)
    i, j = np.triu_indices(count, 1)
    least_gaps = np.maximum(0.0, np.maximum(low[i] - high[j], low[j] - high[i])).sum()
    least = float(least_gaps / ((count - 1) * high.sum()))
    if count <= MAX_VERTEX_GROUPS:
        corners = (np.arange(2**count)[:, None] >> np.arange(count)) & 1
        most = float(gini(np.where(corners == 1, high, low)).max())
    else:
        most_gaps = np.maximum(high[i] - low[j], high[j] - low[i]).sum()
        most = 1.0 if low.sum() == 0 else min(1.0, float(most_gaps / ((count - 1) * low.sum())))
    return least, most


PER_RATE_BOUNDS = {
    "max_min_ratio": _ratio_bounds,
    "max_geomean": _geomean_bounds,
    "max_min_difference": _difference_bounds,
    "garbe": _gini_bounds,
}


def _combined_bounds(metric: str, fmr: _RateBox, fnmr: _RateBox, config: CoreConfig) -> tuple[float, float]:
    """FDR, IR and GARBE are monotone in their per-rate parts: their range follows from those ranges."""
    if metric == "fdr":
        (a_low, a_high), (b_low, b_high) = (_difference_bounds(r.low, r.high) for r in (fmr, fnmr))
        alpha = config.fdr_alpha
        return 1 - (alpha * a_high + (1 - alpha) * b_high), 1 - (alpha * a_low + (1 - alpha) * b_low)
    if metric == "ir":
        (a_low, a_high), (b_low, b_high) = (_ratio_bounds(r.low, r.high) for r in (fmr, fnmr))
        alpha = config.ir_alpha
        return a_low**alpha * b_low ** (1 - alpha), a_high**alpha * b_high ** (1 - alpha)
    (a_low, a_high), (b_low, b_high) = (_gini_bounds(r.low, r.high) for r in (fmr, fnmr))
    alpha = config.garbe_alpha
    return alpha * a_low + (1 - alpha) * b_low, alpha * a_high + (1 - alpha) * b_high


def _number(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def _vs_policy(evidence: bool, low: float | None, high: float | None, ratio: float) -> str:
    """By the interval alone: a target declared for the rates changes nothing here."""
    if not evidence or low is None:
        return "insufficient"
    if low > ratio:
        return "above_policy"
    if high is not None and high <= ratio:
        return "within_policy"
    return "not_distinguishable"


def _differential(
    scope: AttributeSet,
    metric: str,
    rate: str,
    boxes: list[_RateBox],
    value: Callable[..., np.ndarray],
    bounds: Callable[[], tuple[float, float]],
    extremes: tuple[str, str] | None = None,
) -> Differential:
    count = min(len(b.groups) for b in boxes)
    if count < 2:
        return Differential(scope, metric, rate, None, None, None, DifferentialStatus.INSUFFICIENT, count)
    plug_in = _number(value(*(b.rates for b in boxes)))
    low, high = bounds()
    if not all(b.resolved for b in boxes):
        status = DifferentialStatus.INSUFFICIENT
    elif plug_in is None:
        status = DifferentialStatus.UNDEFINED
    else:
        status = DifferentialStatus.OK
    max_group, min_group = extremes or (None, None)
    return Differential(scope, metric, rate, plug_in, _number(low), _number(high), status, count, max_group,
                        min_group)


def rate_differentials(scope: AttributeSet, rate: str, estimates: dict[str, RateEstimate], config: CoreConfig,
                       floor: float | None = None) -> list[Differential]:
    """The per-rate differentials (:data:`PER_RATE`) of one rate over the groups of one attribute set.

    ``estimates``: group -> its estimate of the rate (never the overall row). The bounds come from
    simultaneous intervals (Bonferroni over the measured groups); the ratios are taken on the rates
    floored at ``floor`` (None: none), and the max / min ratio is judged against
    ``config.policy_ratio`` on the rates themselves. The floor is named in the rows of FMR and FNMR.
    """
    alpha = 1 - config.confidence
    count = sum(1 for est in estimates.values() if est.n > 0)
    box = _box(estimates, 1 - alpha / max(1, count), config.min_comparisons)
    extremes = None
    if box.groups:
        extremes = (box.groups[int(np.argmax(box.rates))], box.groups[int(np.argmin(box.rates))])
    result = []
    for metric, compute in PER_RATE.items():
        bounds = PER_RATE_BOUNDS[metric]
        used = _floored(box, floor) if metric in RATIOS else box
        found = _differential(scope, metric, rate, [used], compute,
                              lambda bounds=bounds, used=used: bounds(used.low, used.high), extremes)
        if metric in RATIOS and rate in RATES:
            found = replace(found, **{f"{rate}_floor": floor})
        if metric == "max_min_ratio" and config.policy_ratio is not None:
            # judged on the rates themselves: a floor only lowers a ratio, and the policy is about the ratio
            low, high = ((_number(v) for v in _ratio_bounds(box.low, box.high)) if len(box.groups) >= 2
                         else (None, None))
            found = replace(found, vs_policy=_vs_policy(box.evidence, low, high, config.policy_ratio))
        result.append(found)
    return result


def differentials(scope: AttributeSet, groups: list[GroupEstimate], config: CoreConfig) -> list[Differential]:
    """Every differential of one attribute set.

    Parameters
    ----------
    scope
        The attribute set.
    groups
        Its group estimates (never the overall row).
    config
        ``confidence``, ``fdr_alpha``, ``ir_alpha``, ``garbe_alpha``.

    Examples
    --------
    FMR 1/1000 for F and 4/1000 for M; FNMR 20/1000 for both:

    >>> from fairwatch.core.layout import GroupKey
    >>> from fairwatch.core.estimates import RateEstimator
    >>> config = CoreConfig()
    >>> rows = np.array([[1000, 1, 1000, 1, 1000, 1, 1000, 20, 1000, 20, 1000, 20],
    ...                  [1000, 4, 1000, 4, 1000, 4, 1000, 20, 1000, 20, 1000, 20]], dtype=float)
    >>> estimator = RateEstimator(config)
    >>> fmrs, fnmrs = estimator.estimate(rows[:, :6], None), estimator.estimate(rows[:, 6:], None)
    >>> groups = [GroupEstimate(GroupKey("d", "a", "verification", "sex", g), f, n)
    ...           for g, f, n in zip("FM", fmrs, fnmrs)]
    >>> scope = AttributeSet("d", "a", "verification", "sex")
    >>> table = {(d.metric, d.rate): d for d in differentials(scope, groups, config)}
    >>> d = table["max_min_ratio", "fmr"]
    >>> d.value, d.max_group, d.min_group, str(d.status)
    (4.0, 'M', 'F', 'ok')
    >>> d.low < 4.0 < d.high
    True
    >>> round(table["fdr", "combined"].value, 6)  # 1 - (0.5 * 0.003 + 0.5 * 0)
    0.9985
    """
    # simultaneous intervals: a per-rate differential needs every group's rate of that kind at
    # once (Bonferroni over the groups, in rate_differentials), a combined one every group's FMR and FNMR
    fmrs, fnmrs = {g.key.group: g.fmr for g in groups}, {g.key.group: g.fnmr for g in groups}
    alpha = 1 - config.confidence
    counts = [sum(1 for est in rates.values() if est.n > 0) for rates in (fmrs, fnmrs)]
    both_fmr, both_fnmr = (_box(rates, 1 - alpha / max(1, sum(counts)), config.min_comparisons)
                           for rates in (fmrs, fnmrs))

    floors = {"fmr": config.ratio_floor_fmr, "fnmr": config.ratio_floor_fnmr}
    result = []
    for rate, rates in zip(RATES, (fmrs, fnmrs)):
        result += rate_differentials(scope, rate, rates, config, floors[rate])
    floored_fmr, floored_fnmr = _floored(both_fmr, floors["fmr"]), _floored(both_fnmr, floors["fnmr"])
    combined = {
        "fdr": lambda f, n: fdr(f, n, config.fdr_alpha),
        "ir": lambda f, n: inequity_rate(f, n, config.ir_alpha),
        "garbe": lambda f, n: garbe(f, n, config.garbe_alpha),
    }
    for metric, compute in combined.items():
        if metric == "ir":
            found = _differential(scope, metric, "combined", [floored_fmr, floored_fnmr], compute,
                                  lambda: _combined_bounds("ir", floored_fmr, floored_fnmr, config))
            result.append(replace(found, fmr_floor=floors["fmr"], fnmr_floor=floors["fnmr"]))
            continue
        result.append(_differential(scope, metric, "combined", [both_fmr, both_fnmr], compute,
                                    lambda metric=metric: _combined_bounds(metric, both_fmr, both_fnmr, config)))
    return result
