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

Intervals: each value gets an equal-tailed percentile interval at ``CoreConfig.confidence`` from
``CoreConfig.bootstrap_draws`` parametric bootstrap draws, each group's rate drawn independently
from its Jeffreys posterior ``Beta(x + 1/2, n - x + 1/2)`` (effective counts when weighted). The
generator is seeded by ``CoreConfig.seed`` and the attribute set's names, so a report is
reproducible whatever else it contains.

Status: ``insufficient`` when fewer than two groups have comparisons for a rate the metric uses,
or when any group of the set has status ``insufficient`` for such a rate (a differential can be
no better resolved than its worst-measured group; dropping that group would hide exactly the
groups most likely to be harmed); otherwise ``undefined`` when the value does not exist (a ratio
whose denominator rate is 0, e.g. a group with no observed error: shown as None, never inf or
NaN); otherwise ``ok``. Values that exist are shown whatever the status. With fewer than two
groups value and interval are None. The Gini coefficient of rates that are all 0 is 0 (all
equal). The bootstrap interval of an ``undefined`` ratio is finite (posterior draws are never
0): it says how large the ratio plausibly is, given the Jeffreys prior.

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

import zlib
from collections.abc import Callable
from dataclasses import dataclass
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
        }


class _RateSample(NamedTuple):
    """The groups with comparisons for one rate: names, plug-in rates, bootstrap draws [draws, G]."""

    groups: list[str]
    rates: np.ndarray
    draws: np.ndarray
    resolved: bool


def _sample(estimates: dict[str, RateEstimate], draws: int, rng: np.random.Generator) -> _RateSample:
    measured = {name: est for name, est in estimates.items() if est.n > 0}
    resolved = len(measured) >= 2 and all(est.status != Status.INSUFFICIENT for est in estimates.values())
    rates = np.array([est.rate for est in measured.values()])
    n_eff = np.array([est.n_eff for est in measured.values()])
    errors_eff = rates * n_eff  # the effective error count (the error count when unweighted)
    posterior = rng.beta(errors_eff + 0.5, n_eff - errors_eff + 0.5, size=(draws, len(measured)))
    return _RateSample(list(measured), rates, posterior, resolved)


def _number(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def _differential(
    scope: AttributeSet,
    metric: str,
    rate: str,
    samples: list[_RateSample],
    compute: Callable[..., np.ndarray],
    config: CoreConfig,
    extremes: tuple[str, str] | None = None,
) -> Differential:
    count = min(len(s.groups) for s in samples)
    if count < 2:
        return Differential(scope, metric, rate, None, None, None, DifferentialStatus.INSUFFICIENT, count)
    value = _number(compute(*(s.rates for s in samples)))
    tail = (1 - config.confidence) / 2
    # order statistics, not interpolation: an inf draw stays inf and becomes None below
    low, high = np.quantile(compute(*(s.draws for s in samples)), [tail, 1 - tail], method="inverted_cdf")
    if not all(s.resolved for s in samples):
        status = DifferentialStatus.INSUFFICIENT
    elif value is None:
        status = DifferentialStatus.UNDEFINED
    else:
        status = DifferentialStatus.OK
    max_group, min_group = extremes or (None, None)
    return Differential(scope, metric, rate, value, _number(low), _number(high), status, count, max_group, min_group)


def differentials(scope: AttributeSet, groups: list[GroupEstimate], config: CoreConfig) -> list[Differential]:
    """Every differential of one attribute set.

    Parameters
    ----------
    scope
        The attribute set.
    groups
        Its group estimates (never the overall row).
    config
        ``confidence``, ``fdr_alpha``, ``ir_alpha``, ``garbe_alpha``, ``bootstrap_draws``, ``seed``.

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
    digest = zlib.crc32("\x1f".join(scope).encode())
    rng = np.random.default_rng([config.seed, digest])
    draws = config.bootstrap_draws
    fmr = _sample({g.key.group: g.fmr for g in groups}, draws, rng)
    fnmr = _sample({g.key.group: g.fnmr for g in groups}, draws, rng)

    result = []
    for rate, sample in zip(RATES, (fmr, fnmr)):
        extremes = None
        if sample.groups:
            extremes = (sample.groups[int(np.argmax(sample.rates))], sample.groups[int(np.argmin(sample.rates))])
        for metric, compute in PER_RATE.items():
            result.append(_differential(scope, metric, rate, [sample], compute, config, extremes))
    combined = {
        "fdr": lambda f, n: fdr(f, n, config.fdr_alpha),
        "ir": lambda f, n: inequity_rate(f, n, config.ir_alpha),
        "garbe": lambda f, n: garbe(f, n, config.garbe_alpha),
    }
    for metric, compute in combined.items():
        result.append(_differential(scope, metric, "combined", [fmr, fnmr], compute, config))
    return result
