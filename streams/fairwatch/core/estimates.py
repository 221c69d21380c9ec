"""Per-group error rates with their uncertainty and a status that never mistakes no evidence for fair.

From the six sums of a population (:mod:`fairwatch.core.layout`) a :class:`RateEstimator`
gives a :class:`RateEstimate`: the rate (weighted when inclusion probabilities are below 1), a
fixed-sample interval, anytime-valid bounds, the effective sample size and a :class:`Status`. A
:class:`GroupEstimate` pairs the FMR (impostor) and FNMR (genuine) estimates of one group; in
identification mode the same numbers are FPIR and FNIR.

Status rules, per population with target ``t`` (``CoreConfig.target_fmr`` for the impostor
population, ``target_fnmr`` for the genuine one):

1. ``insufficient`` when ``n == 0`` or ``n < min_comparisons``;
2. otherwise, with no target: ``no_target``: measured, but there is nothing to judge it against
   (never ``ok``, which would read as "shown to be fine");
3. otherwise ``above_target`` when ``anytime_low > t``: the rate is shown to exceed the target;
4. otherwise ``ok`` when ``anytime_high <= t``: the rate is shown to be within the target;
5. otherwise ``insufficient``: the bounds contain ``t``, so the data cannot tell a rate within
   the target from one above it.

The status is judged on the *anytime-valid* bounds, not on the fixed-sample interval
``[low, high]``, and at a *family-wise* level: ``anytime_low`` / ``anytime_high`` are the
confidence sequence (:class:`~fairwatch.core.intervals.BetaBinomialMixture`) at level
``1 - (1 - confidence) / family``, ``family`` the number of rates judged together (Bonferroni;
:class:`~fairwatch.core.groupframe.GroupFrame` counts every rate with a target and a comparison
in one deployment x algorithm x mode: the overall rows, every group of every attribute and
intersection). So with probability at least ``confidence`` no status of a deployment x
algorithm x mode is wrong, at any number of looks at a growing window (counts from a fixed
start, as an audit period fills). Trailing windows that drop old data are not covered by that
proof; the per-look guarantee still holds, and ``benchmarks/bench_status.py`` measures the
ever-wrong rate of repeated looks at them.

The proof assumes final labels that arrived in an order unrelated to decision and truth: the
verified comparisons at each look are a sample of the design. A window whose labels are not
mature (:mod:`fairwatch.audit.maturity`) breaks it, for example when matches are reviewed at
once and the sampled non-matches a day later (measured: every run wrong at some look), so its
statuses are provisional.

The price: with no error, ``ok`` needs about ``log(family * sqrt(pi n) / alpha) / t``
comparisons (at 95%: ``8.1 / t`` alone and ``12 / t`` in a family of 40 for ``t = 1e-3``;
``9.3 / t`` and ``13.2 / t`` for ``t = 1e-4``), where one fixed-sample look at one rate would need
``3.69 / t`` (Clopper-Pearson; the rule of three). With errors it needs more, and a
rate very close to its target stays ``insufficient`` for a long time, which is honest: neither
claim can be made.

A group's overall ``status`` is ``above_target`` when either rate is, else ``insufficient`` when
either rate is, else ``no_target`` when either rate is, else ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from fairwatch.core.clusters import design_effects
from fairwatch.core.config import CoreConfig
from fairwatch.core.intervals import (
    INTERVALS,
    VARIES,
    BetaBinomialMixture,
    clopper_pearson,
    effective_counts,
    stratum_inclusion,
    verified_share_to_rate,
)
from fairwatch.core.layout import POPULATION_FIELDS, GroupKey

__all__ = ["GroupEstimate", "RateEstimate", "RateEstimator", "Status", "rate_labels"]

_RATE_LABELS = {"verification": ("FMR", "FNMR"), "identification": ("FPIR", "FNIR")}


def rate_labels(mode: str) -> tuple[str, str]:
    """Names of the false-match and false-non-match rates in a mode, e.g. ``("FPIR", "FNIR")``."""
    return _RATE_LABELS[mode]


class Status(StrEnum):
    """Rules in the module docstring."""

    OK = "ok"
    INSUFFICIENT = "insufficient"
    ABOVE_TARGET = "above_target"
    NO_TARGET = "no_target"


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _rate_bounds(share_low, share_high, error_inclusion, correct_inclusion, rate):
    """Bounds on the rate from bounds on the verified error share; the point always inside, and
    no upper bound below 1 where an inclusion probability is unknown."""
    low = verified_share_to_rate(share_low, error_inclusion, correct_inclusion)
    high = verified_share_to_rate(share_high, error_inclusion, correct_inclusion)
    unknown = ~(np.isfinite(error_inclusion) & np.isfinite(correct_inclusion))
    low = np.fmin(np.where(unknown, 0.0, low), rate)  # fmin/fmax: a NaN rate (no comparison) leaves them
    high = np.fmax(np.where(unknown, 1.0, high), rate)
    return low, high


def _design_bounds(interval, confidence, errors, n, errors_eff, n_eff, error_inclusion, correct_inclusion, rate):
    """``interval`` of the verified error share mapped to the rate (:func:`_rate_bounds`); where a
    stratum's probabilities vary (:data:`VARIES`) no exact map exists, and ``interval`` of Kish's
    effective counts is used instead."""
    error_inclusion, correct_inclusion, rate = (np.atleast_1d(np.asarray(v, float))
                                                for v in (error_inclusion, correct_inclusion, rate))
    low, high = _rate_bounds(*interval(errors, n, confidence), error_inclusion, correct_inclusion, rate)
    varies = (error_inclusion == VARIES) | (correct_inclusion == VARIES)
    if varies.any():
        low, high = np.array(low, float, ndmin=1), np.array(high, float, ndmin=1)
        confidence = np.broadcast_to(np.asarray(confidence, float), varies.shape)
        low[varies], high[varies] = interval(np.atleast_1d(errors_eff)[varies], np.atleast_1d(n_eff)[varies],
                                             confidence[varies])
    return low, high


@dataclass(frozen=True, slots=True)
class RateEstimate:
    """The error rate of one population (the impostor or genuine comparisons of one group).

    ``rate`` is None when there are no comparisons. ``low`` / ``high`` bound the rate at the
    configured confidence for this window, one look at one rate; ``anytime_low`` /
    ``anytime_high`` hold for all ``family`` rates judged together and at every look at a
    *growing* window (cumulative counts from a fixed start), however often it is looked at, and
    the status is judged on them (module docstring).
    """

    n: int
    errors: int
    n_eff: float
    rate: float | None
    low: float
    high: float
    anytime_low: float
    anytime_high: float
    target: float | None
    status: Status
    # inclusion probabilities of the errors' and the correct decisions' strata: None when unknown,
    # VARIES when they differ within the stratum
    error_inclusion: float | None = 1.0
    correct_inclusion: float | None = 1.0
    family: int = 1  # rates whose statuses hold together (Bonferroni over the family)
    # the clustering's design effect (fairwatch.core.clusters): 1 when the comparisons are
    # independent as far as the data tell; above 1, n_eff is already divided by it
    design_effect: float = 1.0

    def interval(self, confidence: float) -> tuple[float, float]:
        """A Clopper-Pearson interval at another level, from the same verified counts and design."""
        rate, error, correct = (np.nan if v is None else v for v in (self.rate, self.error_inclusion,
                                                                         self.correct_inclusion))
        if self.design_effect > 1 and np.isfinite(error) and np.isfinite(correct):
            error = correct = VARIES  # clustered: the effective counts, as the estimate took them
        low, high = _design_bounds(clopper_pearson, confidence, self.errors, self.n, np.nan_to_num(rate) * self.n_eff,
                                   self.n_eff, error, correct, rate)
        return float(low[0]), float(high[0])

    @property
    def vs_target(self) -> tuple[float | None, float | None, float | None]:
        """Realized / intended rate with its interval, or Nones when no target is declared."""
        if self.target is None:
            return None, None, None
        ratio = None if self.rate is None else self.rate / self.target
        return ratio, self.low / self.target, self.high / self.target

    def to_dict(self, prefix: str) -> dict:
        ratio, ratio_low, ratio_high = self.vs_target
        return {
            prefix: self.rate,
            f"{prefix}_low": self.low,
            f"{prefix}_high": self.high,
            f"{prefix}_anytime_low": self.anytime_low,
            f"{prefix}_anytime_high": self.anytime_high,
            f"{prefix}_n_eff": self.n_eff,
            f"{prefix}_design_effect": self.design_effect,
            f"{prefix}_status": str(self.status),
            f"{prefix}_target": self.target,
            f"{prefix}_vs_target": ratio,
            f"{prefix}_vs_target_low": ratio_low,
            f"{prefix}_vs_target_high": ratio_high,
        }


class RateEstimator:
    """Estimates error rates of many populations at once from their counts.

    Parameters
    ----------
    config
        Confidence level, ``min_comparisons``; the target is passed per call.
    method
        Fixed-sample interval, ``"clopper-pearson"`` (default: coverage at least nominal at every
        rate, so an ``ok`` is never granted on a lucky interval) or ``"jeffreys"`` (shorter,
        nominal only on average), of the error share among verified comparisons; weighted
        populations map it to the rate (:meth:`estimate`).
    sequence
        The anytime-valid confidence sequence.

    Examples
    --------
    No false match in 500 impostor comparisons cannot show an FMR within 1e-4:

    >>> estimator = RateEstimator(CoreConfig(target_fmr=1e-4))
    >>> def no_error(n):
    ...     return np.array([[n, 0, n, 0, n, 0]], dtype=float)
    >>> [fmr] = estimator.estimate(no_error(500), target=1e-4)
    >>> fmr.rate, fmr.status
    (0.0, <Status.INSUFFICIENT: 'insufficient'>)
    >>> print(f"{fmr.high:.5f}, anytime {fmr.anytime_high:.5f} > 1e-4")
    0.00735, anytime 0.01326 > 1e-4

    40,000 comparisons without error would pass one fixed-sample look, not a monitor that keeps
    looking; 100,000 pass both, and with 40 rates judged together (``family``) 140,000 are needed:

    >>> [fmr] = estimator.estimate(no_error(40_000), target=1e-4)
    >>> str(fmr.status), fmr.high < 1e-4
    ('insufficient', True)
    >>> [fmr] = estimator.estimate(no_error(100_000), target=1e-4)
    >>> str(fmr.status)
    'ok'
    >>> [str(estimator.estimate(no_error(n), target=1e-4, family=40)[0].status) for n in (100_000, 140_000)]
    ['insufficient', 'ok']
    """

    def __init__(
        self,
        config: CoreConfig,
        method: str = "clopper-pearson",
        sequence: BetaBinomialMixture | None = None,
    ) -> None:
        if method not in INTERVALS:
            raise ValueError(f"method must be one of {sorted(INTERVALS)}, got {method!r}")
        self.config = config
        self.interval = INTERVALS[method]
        self.sequence = sequence or BetaBinomialMixture()

    def estimate(self, block: np.ndarray, target: float | None, error_inclusion=None,
                 correct_inclusion=None, family=1, clustering: np.ndarray | None = None,
                 pooled_roh: np.ndarray | None = None) -> list[RateEstimate]:
        """Estimates for the populations in ``block``, float64[k, 6] of :data:`POPULATION_FIELDS`.

        Verified outcomes are a two-phase sample: within each decision's stratum every event was
        verified with the same probability. The errors of a population come from one decision
        (false matches from matches, false non-matches from non-matches), its correct decisions
        from the other, and the interval is exact for the error share among the verified, mapped
        to the rate through the two inclusion probabilities
        (:func:`~fairwatch.core.intervals.verified_share_to_rate`). The correct decisions' weights
        give their stratum's probability, and the errors' own weights give theirs. When no error
        (no correct decision) was verified, that stratum's probability is ``error_inclusion``
        (``correct_inclusion``), per population, from the group's other population, where that
        decision's verified records are (see :class:`~fairwatch.core.groupframe.GroupFrame`);
        without it, the other stratum's. Unknown (NaN: no verified record of that decision at
        all) leaves the bounds at 0 and 1. Where a stratum's probabilities vary (the sums show
        it: :func:`~fairwatch.core.intervals.stratum_inclusion`), no exact map exists and the
        interval falls back to Kish's effective counts (an approximation).

        ``family`` (per population, or one for all) is the number of rates whose statuses must
        hold together: the anytime bounds, and so the status, are at level
        ``1 - (1 - confidence) / family``.

        ``clustering``: float64[k, 4] of :data:`~fairwatch.core.clusters.MOMENT_FIELDS` when the
        comparisons carry cluster keys. Where they show a design effect above 1, both the interval
        and the anytime bounds are taken on the effective counts divided by it
        (:func:`~fairwatch.core.clusters.design_effects`; an approximation, as for varying
        probabilities: the anytime guarantee is proven for independent comparisons).
        ``pooled_roh``: per population, the intra-cluster correlation of a larger population of
        the same comparisons, a floor on its design effect (:func:`~fairwatch.core.clusters.design_effects`).
        """
        block = np.asarray(block, dtype=float).reshape(-1, len(POPULATION_FIELDS))
        if not np.all(np.isfinite(block)) or np.any(block < 0):
            raise ValueError("counts must be finite and non-negative")
        n, errors, w, w_err, w2, w2_err = block.T
        errors_eff, n_eff = effective_counts(n, errors, w, w_err, w2, w2_err)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(n > 0, w_err / w, np.nan)
        factor, deff = design_effects(block, clustering, self.config.confidence, pooled_roh)
        clustered = factor > 1
        n_eff = np.where(clustered, n_eff / factor, n_eff)
        errors_eff = np.where(clustered, np.nan_to_num(rate) * n_eff, errors_eff)
        # each stratum's probability from its own verified records; a stratum with none (no
        # error, or no correct decision, verified) takes the caller's (the group's other
        # population holds that decision's records), else the other stratum's (no better guess)
        own_error = stratum_inclusion(errors, w_err, w2_err)
        own_correct = stratum_inclusion(n - errors, w - w_err, w2 - w2_err)
        given_error = own_correct if error_inclusion is None else np.broadcast_to(np.asarray(error_inclusion, float), n.shape)
        given_correct = own_error if correct_inclusion is None else np.broadcast_to(np.asarray(correct_inclusion, float), n.shape)
        error_inclusion = np.where(errors > 0, own_error, given_error)
        correct = np.where(n > errors, own_correct, given_correct)
        # clustered: no exact map from the verified share; the effective counts, like VARIES
        # (unknown probabilities still leave the bounds at 0 and 1)
        mapped = clustered & np.isfinite(error_inclusion) & np.isfinite(correct)
        bounds_error = np.where(mapped, VARIES, error_inclusion)
        bounds_correct = np.where(mapped, VARIES, correct)
        design = (errors, n, errors_eff, n_eff, bounds_error, bounds_correct, rate)
        family = np.broadcast_to(np.asarray(family, dtype=int), n.shape)
        if np.any(family < 1):
            raise ValueError("family must be at least 1")
        low, high = _design_bounds(self.interval, self.config.confidence, *design)
        anytime_confidence = 1 - (1 - self.config.confidence) / family
        anytime_low, anytime_high = _design_bounds(self.sequence.interval, anytime_confidence, *design)
        status = self._status(n, anytime_low, anytime_high, target)
        return [
            RateEstimate(
                n=int(n[i]),
                errors=int(errors[i]),
                n_eff=float(n_eff[i]),
                rate=_finite_or_none(rate[i]),
                low=float(low[i]),
                high=float(high[i]),
                anytime_low=float(anytime_low[i]),
                anytime_high=float(anytime_high[i]),
                target=target,
                status=status[i],
                error_inclusion=_finite_or_none(error_inclusion[i]),
                correct_inclusion=_finite_or_none(correct[i]),
                family=int(family[i]),
                design_effect=float(deff[i]),
            )
            for i in range(len(n))
        ]

    def _status(self, n: np.ndarray, low: np.ndarray, high: np.ndarray, target: float | None) -> list[Status]:
        # the rules of the module docstring, in order
        enough = (n > 0) & (n >= self.config.min_comparisons)
        if target is None:
            return [Status.NO_TARGET if e else Status.INSUFFICIENT for e in enough]
        status = np.where(low > target, Status.ABOVE_TARGET, np.where(high <= target, Status.OK, Status.INSUFFICIENT))
        return [Status(s) if e else Status.INSUFFICIENT for s, e in zip(status, enough)]


@dataclass(frozen=True, slots=True)
class GroupEstimate:
    """FMR and FNMR (FPIR and FNIR in identification mode) of one group.

    :meth:`to_dict` gives the flat, JSON-ready row: key fields, ``impostor``, ``false_match``,
    ``genuine``, ``false_non_match``, then ``fmr*`` and ``fnmr*`` fields (:meth:`RateEstimate.to_dict`),
    ``fmr_label`` / ``fnmr_label``, the group ``status`` and ``status_family`` (the rates judged
    together with these). Numbers that do not exist are None.
    """

    key: GroupKey
    fmr: RateEstimate
    fnmr: RateEstimate

    @property
    def status(self) -> Status:
        statuses = {self.fmr.status, self.fnmr.status}
        for status in (Status.ABOVE_TARGET, Status.INSUFFICIENT, Status.NO_TARGET):
            if status in statuses:
                return status
        return Status.OK

    def to_dict(self) -> dict:
        fmr_label, fnmr_label = rate_labels(self.key.mode)
        return {
            **self.key._asdict(),
            "impostor": self.fmr.n,
            "false_match": self.fmr.errors,
            "genuine": self.fnmr.n,
            "false_non_match": self.fnmr.errors,
            **self.fmr.to_dict("fmr"),
            **self.fnmr.to_dict("fnmr"),
            "fmr_label": fmr_label,
            "fnmr_label": fnmr_label,
            "status": str(self.status),
            "status_family": self.fmr.family,
        }
