"""Error rates corrected for reviewers' mistakes, from a double-reviewed sample.

Verified outcomes are labels, not truth: a reviewer calls a genuine pair an impostor now and
then, and with far more impostor than genuine comparisons among non-matches (and the reverse
among matches) a small reviewer error moves the rates a lot. Where a random sample of verified
events is reviewed a second time, independently (blind to the first verdict), the disagreements
measure the reviewers' error, and the rates can be corrected (Rogan and Gladen [^1]).

Model, per group and decision stratum ``d`` (matches ``M``, non-matches ``N``):

- every verified event of the stratum has a final label; its reviewer is wrong with probability
  ``e_d`` whatever the truth (symmetric error: with two reviewers and no gold standard,
  error rates that differ by truth are not identifiable), independently of other reviewers;
- a random subsample, independent of the truth, is labelled again by another reviewer: ``k_d``
  pairs, ``x_d`` of them disagreeing. ``P(disagree) = 2 e_d (1 - e_d)``, so
  ``e_d = (1 - sqrt(1 - 2 D_d)) / 2`` with ``D_d = x_d / k_d``;
- the labelled impostor share among the stratum's verified events, ``s_d``, is the true share
  ``t_d`` seen through the error: ``s_d = t_d (1 - e_d) + (1 - t_d) e_d``, so
  ``t_d = (s_d - e_d) / (1 - 2 e_d)`` (clipped to [0, 1]).

The stratum totals are estimated from the verified counts and the inclusion probabilities
(Horvitz-Thompson: ``M = V_M / pi_M``), and

``FMR = M t_M / (M t_M + N t_N)``, ``FNMR = N (1 - t_N) / (N (1 - t_N) + M (1 - t_M))``.

The disagreements measure the error of one blind verdict, ``e``: that of a first verdict. The
verdicts that count may have been corrected since (a later revision), so their own error is
anywhere in ``[0, e]``; the intervals therefore let it range over ``[0, e_high]`` (which also
holds when no verdict was corrected, and keeps a sample that contradicts the model, labelled
shares below the measured error, from giving a confident rate of 0). The point is the
Rogan-Gladen estimate at ``e`` when the verdicts that count are first verdicts
(``corrected_labels=False``), and the labels-as-truth rate otherwise, the residual error being
unknown within the interval.

Intervals: exact (Clopper-Pearson) intervals for ``s_M``, ``s_N``, ``D_M`` and ``D_N`` at level
``1 - alpha / 4`` each (Bonferroni), the error ranging over ``[0, e(D_high)]``; FMR rises with
``t_M`` and falls with ``t_N`` (FNMR the reverse), and ``t`` is monotone in ``s`` and in ``e`` for
each fixed other, so the extreme rates over the box lie at its corners, which are all evaluated. A disagreement
bound at or above 1/2 leaves ``e`` unbounded (labels no better than a coin) and the rate's
interval [0, 1]. The totals' own sampling error is not carried (it is small beside the error
terms when few errors are expected); ``benchmarks/bench_misclassification.py`` measures the
coverage that results.

References
----------
[^1]: Rogan, W. J. and Gladen, B. (1978). Estimating prevalence from the results of a screening
    test. American Journal of Epidemiology 107(1), 71-76.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from fairwatch.core.intervals import clopper_pearson
from fairwatch.core.layout import GENUINE, IMPOSTOR

__all__ = ["ReviewerError", "CorrectedRates", "reviewer_error", "corrected_rates", "stratum_labels"]


@dataclass(frozen=True, slots=True)
class ReviewerError:
    """Double reviews of one decision stratum: ``pairs`` reviewed twice, ``disagreements`` among them."""

    pairs: int
    disagreements: int

    def __post_init__(self) -> None:
        if self.pairs < 0 or not 0 <= self.disagreements <= self.pairs:
            raise ValueError(f"need 0 <= disagreements <= pairs, got {self.disagreements} of {self.pairs}")


def reviewer_error(disagreement_share) -> np.ndarray:
    """The error rate ``e`` of one reviewer from the share of disagreeing pairs, ``2 e (1 - e)``;
    0.5 (no information) for shares at or above 1/2."""
    share = np.clip(np.asarray(disagreement_share, dtype=float), 0.0, 0.5)
    return (1 - np.sqrt(1 - 2 * share)) / 2


def _true_share(labelled, error) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (labelled - error) / (1 - 2 * error)
    # error 1/2: the labels say nothing; the caller widens to [0, 1]
    return np.clip(np.where(error < 0.5, share, np.nan), 0.0, 1.0)


def _rates(matches, non_matches, t_m, t_n) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        impostor_matches, impostor_non = matches * t_m, non_matches * t_n
        genuine_matches, genuine_non = matches * (1 - t_m), non_matches * (1 - t_n)
        fmr = impostor_matches / (impostor_matches + impostor_non)
        fnmr = genuine_non / (genuine_non + genuine_matches)
    return fmr, fnmr


def stratum_labels(row: np.ndarray) -> tuple[float, float, float, float]:
    """From a counts row (float64[12], :mod:`fairwatch.core.layout`): verified matches labelled
    impostor and genuine, verified non-matches labelled impostor and genuine."""
    imp, gen = row[IMPOSTOR], row[GENUINE]
    return imp[1], gen[0] - gen[1], imp[0] - imp[1], gen[1]


@dataclass(frozen=True, slots=True)
class CorrectedRates:
    """FMR and FNMR of one group corrected for reviewer error, with intervals that carry it."""

    fmr: float | None
    fmr_low: float
    fmr_high: float
    fnmr: float | None
    fnmr_low: float
    fnmr_high: float
    error_matches: float | None  # estimated reviewer error among matches
    error_non_matches: float | None


def corrected_rates(row: np.ndarray, match_inclusion: float, non_match_inclusion: float,
                    matches_review: ReviewerError, non_matches_review: ReviewerError,
                    confidence: float = 0.95, corrected_labels: bool = False) -> CorrectedRates:
    """The group's rates corrected for reviewer error (module docstring).

    ``row`` is the group's counts row; ``match_inclusion`` / ``non_match_inclusion`` the strata's
    inclusion probabilities (:func:`~fairwatch.core.groupframe.decision_inclusions`). A stratum
    without double review has no error estimate: then nothing can be corrected and the rates are
    None with bounds [0, 1]. ``corrected_labels``: some verdicts that count are corrections (their
    error is not that of a first verdict), so the point is not corrected (module docstring).

    >>> row = np.array([1000, 8, 1000, 8, 1000, 8, 1000, 3, 1000, 3, 1000, 3], dtype=float)
    >>> fixed = corrected_rates(row, 1.0, 1.0, ReviewerError(500, 2), ReviewerError(500, 2))
    >>> print(f"{fixed.fmr:.4f} in [{fixed.fmr_low:.4f}, {fixed.fmr_high:.4f}]; e = {fixed.error_matches:.4f}")
    0.0060 in [0.0000, 0.0181]; e = 0.0020
    """
    if not (0 < match_inclusion <= 1 and 0 < non_match_inclusion <= 1):
        raise ValueError("inclusion probabilities must be in (0, 1]")
    m_imp, m_gen, n_imp, n_gen = stratum_labels(np.asarray(row, dtype=float))
    verified_m, verified_n = m_imp + m_gen, n_imp + n_gen
    if matches_review.pairs == 0 or non_matches_review.pairs == 0 or verified_m == 0 or verified_n == 0:
        return CorrectedRates(None, 0.0, 1.0, None, 0.0, 1.0, None, None)
    matches, non_matches = verified_m / match_inclusion, verified_n / non_match_inclusion
    level = 1 - (1 - confidence) / 4
    e_m, e_n = (reviewer_error(r.disagreements / r.pairs) for r in (matches_review, non_matches_review))
    point_m, point_n = (0.0, 0.0) if corrected_labels else (e_m, e_n)
    fmr, fnmr = _rates(matches, non_matches, _true_share(m_imp / verified_m, point_m),
                       _true_share(n_imp / verified_n, point_n))

    def box(labelled: float, verified: float, review: ReviewerError) -> np.ndarray:
        s_low, s_high = clopper_pearson(labelled, verified, level)
        _, d_high = clopper_pearson(review.disagreements, review.pairs, level)
        corners = [_true_share(s, e) for s, e in product((s_low, s_high), (0.0, reviewer_error(d_high)))]
        if np.isnan(corners).any():  # the error may be 1/2: the labels may say nothing
            return np.array([0.0, 1.0])
        return np.array([np.min(corners), np.max(corners)])

    t_m, t_n = box(m_imp, verified_m, matches_review), box(n_imp, verified_n, non_matches_review)
    fmrs, fnmrs = _rates(matches, non_matches, *np.meshgrid(t_m, t_n))
    finite = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    fmr_low, fmr_high = np.nanmin(fmrs, initial=1.0), np.nanmax(fmrs, initial=0.0)
    fnmr_low, fnmr_high = np.nanmin(fnmrs, initial=1.0), np.nanmax(fnmrs, initial=0.0)
    if np.isnan(fmrs).any():  # 0 / 0 at a corner: no impostor at all is possible
        fmr_low, fmr_high = 0.0, 1.0
    if np.isnan(fnmrs).any():
        fnmr_low, fnmr_high = 0.0, 1.0
    fmr, fnmr = finite(fmr), finite(fnmr)
    return CorrectedRates(
        fmr, float(min(fmr_low, fmr if fmr is not None else 1.0)), float(max(fmr_high, fmr or 0.0)),
        fnmr, float(min(fnmr_low, fnmr if fnmr is not None else 1.0)), float(max(fnmr_high, fnmr or 0.0)),
        float(e_m), float(e_n))
