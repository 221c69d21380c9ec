"""Per-group error rates with their uncertainty and a status that never mistakes no evidence for fair.

From the six sums of a population (:mod:`fairwatch.core.layout`) a :class:`RateEstimator`
gives a :class:`RateEstimate`: the rate (weighted when inclusion probabilities are below 1), a
fixed-sample interval, anytime-valid bounds, the effective sample size and a :class:`Status`. A
:class:`GroupEstimate` pairs the FMR (impostor) and FNMR (genuine) estimates of one group; in
identification mode the same numbers are FPIR and FNIR.

Status rules, per population with target ``t`` (``CoreConfig.target_fmr`` for the impostor
population, ``target_fnmr`` for the genuine one) and interval ``[low, high]`` at
``CoreConfig.confidence``:

1. ``insufficient`` when ``n == 0`` or ``n < min_comparisons``;
2. otherwise, with no target: ``no_target``: measured, but there is nothing to judge it against
   (never ``ok``, which would read as "shown to be fine");
3. otherwise ``above_target`` when ``low > t``: the rate is shown to exceed the target;
4. otherwise ``ok`` when ``high <= t``: the rate is shown to be within the target;
5. otherwise ``insufficient``: the interval contains ``t``, so the data cannot tell a rate within
   the target from one above it.

Rule 5 generalizes the rule of three: with no error, ``high <= t`` needs
``n >= log(alpha/2) / log(1 - t)``, about ``3.69 / t`` comparisons with the default 95%
Clopper-Pearson interval (the one-sided rule of three gives ``3 / t``). With errors it needs more.
A rate very close to its target stays ``insufficient`` for a long time, which is honest: neither
claim can be made. The status is a fixed-sample judgement of one window; a monitor that acts on
every refresh must use the anytime-valid bounds instead, which allow continuous looking.

A group's overall ``status`` is ``above_target`` when either rate is, else ``insufficient`` when
either rate is, else ``no_target`` when either rate is, else ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from fairwatch.core.config import CoreConfig
from fairwatch.core.intervals import INTERVALS, BetaBinomialMixture, effective_counts
from fairwatch.core.layout import POPULATION_FIELDS, GroupKey

__all__ = ["Status", "RateEstimate", "RateEstimator", "GroupEstimate", "rate_labels"]

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


@dataclass(frozen=True, slots=True)
class RateEstimate:
    """The error rate of one population (the impostor or genuine comparisons of one group).

    ``rate`` is None when there are no comparisons. ``low`` / ``high`` bound the rate at the
    configured confidence for this window; ``anytime_low`` / ``anytime_high`` hold at every look
    at a *growing* window (cumulative counts from a fixed start), however often it is looked at.
    They make no such promise for trailing windows that drop old data, and the status does not
    use them yet.
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
        nominal only on average). Weighted populations use effective counts
        (:func:`fairwatch.core.intervals.effective_counts`).
    sequence
        The anytime-valid confidence sequence.

    Examples
    --------
    No false match in 500 impostor comparisons cannot show an FMR within 1e-4:

    >>> estimator = RateEstimator(CoreConfig(target_fmr=1e-4))
    >>> block = np.array([[500, 0, 500, 0, 500, 0]], dtype=float)
    >>> [fmr] = estimator.estimate(block, target=1e-4)
    >>> fmr.rate, fmr.status
    (0.0, <Status.INSUFFICIENT: 'insufficient'>)
    >>> print(f"{fmr.high:.5f} > 1e-4")
    0.00735 > 1e-4

    40,000 comparisons without error can:

    >>> [fmr] = estimator.estimate(np.array([[40_000, 0, 40_000, 0, 40_000, 0]], dtype=float), target=1e-4)
    >>> str(fmr.status), fmr.high < 1e-4
    ('ok', True)
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

    def estimate(self, block: np.ndarray, target: float | None) -> list[RateEstimate]:
        """Estimates for the populations in ``block``, float64[k, 6] of :data:`POPULATION_FIELDS`."""
        block = np.asarray(block, dtype=float).reshape(-1, len(POPULATION_FIELDS))
        if not np.all(np.isfinite(block)) or np.any(block < 0):
            raise ValueError("counts must be finite and non-negative")
        n, errors, w, w_err, w2, w2_err = block.T
        errors_eff, n_eff = effective_counts(n, errors, w, w_err, w2, w2_err)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(n > 0, w_err / w, np.nan)
        confidence = self.config.confidence
        low, high = self.interval(errors_eff, n_eff, confidence)
        anytime_low, anytime_high = self.sequence.interval(errors_eff, n_eff, confidence)
        status = self._status(n, low, high, target)
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
    ``fmr_label`` / ``fnmr_label`` and the group ``status``. Numbers that do not exist are None.
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
        }
