"""Scores, not only decisions: per-group score distributions, DET points and the threshold that
would meet an intended FMR, from the verified comparisons.

A match event carries the matcher's ``score``; its decision is ``match`` when ``score >= threshold``.
Re-applying that rule at any threshold ``t`` to the verified comparisons of a group gives

* ``FMR(t)``: the weighted share of the group's impostor comparisons with ``score >= t``;
* ``FNMR(t)``: the weighted share of its genuine comparisons with ``score < t``;

each verified comparison weighing ``1 / inclusion_prob`` (the Horvitz-Thompson ratio estimator of
:mod:`fairwatch.core.layout`), so that the verification design (matches verified more often than
non-matches) does not bend the curves. ``(FMR(t), FNMR(t))`` over ``t`` is the group's DET curve.
In identification mode the event's score is the rank-1 candidate's: ``FPIR(t)`` of the non-mated
searches (impostor truth) is computed the same way. ``FNIR(t)`` is judged on the mate's own score
(the candidate at the outcome's ``mate_rank``), which is the rank-1 score only when the mate ranks
first. A mated search whose mate was not listed has no score: all that is known is that the mate
was not returned, and the list was cut at the search's threshold. It is a miss at every threshold
at or above that cut, so such searches enter the FNMR sums as errors at every ``t``
(:attr:`GroupScores.genuine_missed`) and ``FNIR(t)`` is exact only for ``t`` at or above the highest
threshold their lists were cut at (:attr:`GroupScores.missed_cut`); below it the mate might have been
returned, so the FNIR there counts too many misses: an upper bound, flagged ``fnmr_exact`` false.
Without genuine scores at all (None) a group's FNMR side is left out.

Intervals: at each threshold the six sums of the population (:data:`~fairwatch.core.layout.POPULATION_FIELDS`,
errors being the comparisons on the wrong side of ``t``) give effective counts
(:func:`~fairwatch.core.intervals.effective_counts`), and an interval of
:data:`~fairwatch.core.intervals.INTERVALS` (Clopper-Pearson by default) of those counts is the
rate's interval at ``t``.

The threshold for an intended FMR ``target``: the candidate thresholds of a deployment x algorithm
x mode are the distinct verified scores of all its groups (one grid, so that the groups' thresholds
compare). Over them (:func:`threshold_for_fmr`):

* ``threshold``: the smallest candidate ``t`` with ``FMR(t) <= target``;
* ``low``: the smallest candidate whose FMR lower bound is ``<= target``;
* ``high``: the smallest candidate from which on every FMR upper bound is ``<= target``.

Why ``[low, high]`` bounds the true threshold ``t0`` (the smallest candidate whose true FMR is
within the target; the true FMR does not increase with ``t``): ``low > t0`` needs the lower bound
at ``t0`` above ``target >= FMR(t0)``, a miss of that bound; ``high < t0`` needs an upper bound
``<= target`` at or above the candidate just below ``t0``, whose true FMR is above ``target``, a miss
of that bound (upper bounds further down only matter through that one: ``high`` asks every bound
from it upwards to be within the target). So, for a fixed grid and bounds valid at each ``t``, the
interval misses ``t0`` with probability at most the two one-sided error rates of the per-threshold
interval together, ``1 - confidence``. The FNMR interval below adds the FNMR bounds' misses. Here the grid is the data's own scores and the weighted
bounds are approximate, so this is an argument, not a guarantee; ``benchmarks/bench_score_curves.py``
measures the coverage.

The FNMR the threshold would cost is ``FNMR(threshold)`` with the interval ``[lower bound of FNMR at
low, upper bound of FNMR at high]`` (FNMR does not decrease with ``t``): it holds the FNMR at the
true threshold when the threshold interval and both FNMR bounds do.

Too little evidence: when no candidate's upper bound reaches the target there is no ``high``, and
no threshold is given at all, only the status ``too_little_evidence``. Even with no false match
above it a threshold needs :func:`impostors_needed` effective impostor comparisons (about
``3.7 / target`` at 95%: 36,887 for 1e-4).

References
----------
[^1]: Grother, P., Ngan, M. and Hanaoka, K. (2019). Face Recognition Vendor Test Part 3:
    Demographic Effects. NISTIR 8280 (per-group FMR and FNMR at one global threshold, and the
    thresholds at which groups reach a given FMR).
[^2]: ISO/IEC 19795-1:2021, Biometric performance testing and reporting: Principles and
    framework (FMR, FNMR, FPIR, FNIR and DET curves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from fairwatch.core.intervals import INTERVALS, effective_counts
from fairwatch.core.layout import OVERALL, GroupKey

__all__ = ["GroupScores", "RateCurve", "TargetThreshold", "ScoreCurves", "tail_sums", "population_sums", "missed_sums",
           "threshold_for_fmr", "impostors_needed", "weighted_histogram", "FOUND", "TOO_LITTLE_EVIDENCE"]

FOUND, TOO_LITTLE_EVIDENCE = "found", "too_little_evidence"
DEFAULT_BINS = 20


def _sorted(scores, weights) -> tuple[np.ndarray, np.ndarray]:
    scores, weights = np.asarray(scores, float).ravel(), np.asarray(weights, float).ravel()
    if scores.shape != weights.shape:
        raise ValueError(f"{len(scores)} scores but {len(weights)} weights")
    if not (np.all(np.isfinite(scores)) and np.all(np.isfinite(weights)) and np.all(weights > 0)):
        raise ValueError("scores must be finite and weights finite and positive")
    order = np.argsort(scores, kind="stable")
    return scores[order], weights[order]


def population_sums(scores, weights, thresholds, errors: str) -> np.ndarray:
    """The six sums of one population at each threshold, in the layout's order
    ``(n, errors, w, w_err, w2, w2_err)``, shape ``(len(thresholds), 6)``.

    ``errors="above"``: the errors at ``t`` are the comparisons with ``score >= t`` (false matches of
    impostors); ``errors="below"``: those with ``score < t`` (false non-matches of genuine ones).
    Each error sum adds its own records only (sums from the top down, or from the bottom up).

    Examples
    --------
    >>> population_sums([0.2, 0.5, 0.5, 0.9], [1, 2, 1, 4], [0.5, 1.0], "above")
    array([[ 4.,  3.,  8.,  7., 22., 21.],
           [ 4.,  0.,  8.,  0., 22.,  0.]])
    """
    if errors not in ("above", "below"):
        raise ValueError(f"errors must be 'above' or 'below', got {errors!r}")
    s, w = _sorted(scores, weights)
    thresholds = np.asarray(thresholds, float).ravel()
    below = np.searchsorted(s, thresholds, side="left")  # records with score < t
    zero = np.zeros(1)
    if errors == "above":
        w_tail = np.concatenate([np.cumsum(w[::-1])[::-1], zero])
        w2_tail = np.concatenate([np.cumsum((w * w)[::-1])[::-1], zero])
        n_err, w_err, w2_err = len(s) - below, w_tail[below], w2_tail[below]
    else:
        w_head = np.concatenate([zero, np.cumsum(w)])
        w2_head = np.concatenate([zero, np.cumsum(w * w)])
        n_err, w_err, w2_err = below, w_head[below], w2_head[below]
    out = np.empty((len(thresholds), 6))
    out[:, 0], out[:, 1] = len(s), n_err
    out[:, 2], out[:, 3] = w.sum(), w_err
    out[:, 4], out[:, 5] = (w * w).sum(), w2_err
    return out


def missed_sums(weights) -> np.ndarray:
    """The six sums of records that are errors at every threshold, to add to each row of
    :func:`population_sums`: ``(k, k, w, w, w2, w2)``.

    >>> missed_sums([2.0, 4.0]).tolist()
    [2.0, 2.0, 6.0, 6.0, 20.0, 20.0]
    """
    if weights is None:
        return np.zeros(6)
    weights = np.asarray(weights, float).ravel()
    if not (np.all(np.isfinite(weights)) and np.all(weights > 0)):
        raise ValueError("weights must be finite and positive")
    k, w, w2 = float(len(weights)), float(weights.sum()), float((weights * weights).sum())
    return np.array([k, k, w, w, w2, w2])


def tail_sums(scores, weights, thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(count, sum of weights, sum of squared weights)`` of the records with ``score >= t``, per threshold.

    >>> [v.tolist() for v in tail_sums([1.0, 2.0, 2.0], [1.0, 2.0, 4.0], [2.0, 2.5])]
    [[2.0, 0.0], [6.0, 0.0], [20.0, 0.0]]
    """
    sums = population_sums(scores, weights, thresholds, "above")
    return sums[:, 1], sums[:, 3], sums[:, 5]


@dataclass(frozen=True)
class RateCurve:
    """A rate at each of ``thresholds`` with its interval: FMR (errors above) or FNMR (errors below).

    ``rate`` is NaN where the population is empty (its interval is then ``[0, 1]``).

    Examples
    --------
    >>> curve = RateCurve.of([0.1, 0.4, 0.7, 0.9], [1, 1, 1, 1], [0.4, 0.8], "above")
    >>> curve.rate.tolist(), [round(float(h), 3) for h in curve.high]
    ([0.75, 0.25], [0.994, 0.806])
    """

    thresholds: np.ndarray
    sums: np.ndarray  # (T, 6) in the layout's population order
    rate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_eff: np.ndarray  # effective comparisons behind each interval

    @classmethod
    def from_sums(cls, thresholds, sums: np.ndarray, confidence: float = 0.95,
                  interval: str = "clopper-pearson") -> RateCurve:
        n, errors, w, w_err, w2, w2_err = np.asarray(sums, float).T
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(w > 0, w_err / w, np.nan)
        errors_eff, n_eff = effective_counts(n, errors, w, w_err, w2, w2_err)
        # p * n_eff never exceeds n_eff, but keep the interval's precondition exact
        low, high = INTERVALS[interval](np.minimum(errors_eff, n_eff), n_eff, confidence)
        return cls(np.asarray(thresholds, float), np.asarray(sums, float), rate, np.atleast_1d(low),
                   np.atleast_1d(high), n_eff)

    @classmethod
    def of(cls, scores, weights, thresholds, errors: str, confidence: float = 0.95,
           interval: str = "clopper-pearson", missed=None) -> RateCurve:
        """The curve of one population's verified scores (see :func:`population_sums` for ``errors``);
        ``missed``: the weights of records without a score that are errors at every threshold (mated
        searches whose mate was not listed).

        The sums change only where a score lies between two thresholds, so the intervals are
        computed once per distinct row of sums (the costly part) and shared by equal rows."""
        sums = population_sums(scores, weights, thresholds, errors) + missed_sums(missed)
        if len(sums) < 2:
            return cls.from_sums(thresholds, sums, confidence, interval)
        # the error count fixes the rest of a row: the errors are the top (or bottom) records
        _, first, inverse = np.unique(sums[:, 1], return_index=True, return_inverse=True)
        shared = cls.from_sums(np.asarray(thresholds, float)[first], sums[first], confidence, interval)
        return cls(np.asarray(thresholds, float), sums, shared.rate[inverse], shared.low[inverse],
                   shared.high[inverse], shared.n_eff[inverse])


def impostors_needed(target: float, confidence: float = 0.95, interval: str = "clopper-pearson") -> int:
    """The fewest (effective) impostor comparisons whose upper bound can be ``<= target`` at all:
    with no false match, the interval's upper bound falls to the target at this count.

    >>> impostors_needed(1e-4), impostors_needed(1e-3)
    (36887, 3688)
    """
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target}")
    bounds = INTERVALS[interval]

    def reaches(n: float) -> bool:
        return float(bounds(0.0, n, confidence)[1]) <= target

    high = 1
    while not reaches(high):
        high *= 2
    low = high // 2  # does not reach (or 0)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


@dataclass(frozen=True)
class TargetThreshold:
    """The threshold at which a group's FMR would meet ``target``, its interval, and the FNMR it
    would cost (module docstring); with status :data:`TOO_LITTLE_EVIDENCE` every number is None."""

    target: float
    status: str
    impostors: float  # verified impostor comparisons (count)
    impostors_effective: float  # Kish's effective count of them
    impostors_needed: int
    threshold: float | None = None
    low: float | None = None
    high: float | None = None
    fmr: float | None = None  # at threshold
    fmr_low: float | None = None
    fmr_high: float | None = None
    fnmr: float | None = None  # at threshold; None also where the genuine scores are not known
    fnmr_low: float | None = None  # lower FNMR bound at low
    fnmr_high: float | None = None  # upper FNMR bound at high
    # False when low is below the cut of a list that did not name the mate (identification): the
    # FNMR counts that mate as a miss where it might have been returned, an upper bound
    fnmr_exact: bool | None = None

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def threshold_for_fmr(candidates, impostor_scores, impostor_weights, target: float, genuine_scores=None,
                      genuine_weights=None, confidence: float = 0.95,
                      interval: str = "clopper-pearson", genuine_missed=None,
                      missed_cut: float | None = None) -> TargetThreshold:
    """The threshold at which the FMR of one group's impostors meets ``target`` among ``candidates``
    (sorted ascending, distinct), with its interval and the FNMR of the genuine comparisons there
    (module docstring). Without genuine scores the FNMR fields are None. ``genuine_missed`` and
    ``missed_cut``: as in :class:`GroupScores` (genuine comparisons without a score, errors at every
    threshold from ``missed_cut`` on).

    Examples
    --------
    Ten thousand impostors with scores 0.0000 .. 0.9999 and no weighting: an FMR of 1% needs
    ``t = 0.99`` (the hundred scores from it up match), and the interval follows the
    Clopper-Pearson bounds of the shares above each candidate.

    >>> scores = np.arange(10_000) / 10_000
    >>> found = threshold_for_fmr(scores, scores, np.ones(10_000), 0.01)
    >>> found.status, found.threshold, found.low, found.high
    ('found', 0.99, 0.988, 0.992)

    A target that 10,000 impostors cannot certify:

    >>> threshold_for_fmr(scores, scores, np.ones(10_000), 1e-4).status
    'too_little_evidence'
    """
    candidates = np.asarray(candidates, float)
    if candidates.ndim != 1 or np.any(np.diff(candidates) <= 0):
        raise ValueError("candidates must be sorted ascending and distinct")
    needed = impostors_needed(target, confidence, interval)
    fmr = RateCurve.of(impostor_scores, impostor_weights, candidates, "above", confidence, interval)
    n, _, w, _, w2, _ = fmr.sums[0] if len(candidates) else (0.0,) * 6
    kish = w * w / w2 if w2 > 0 else 0.0
    common = {"target": target, "impostors": float(n), "impostors_effective": float(kish), "impostors_needed": needed}
    above = np.nonzero(~(fmr.high <= target))[0]  # upper bounds above the target (or NaN)
    k_high = 0 if len(above) == 0 else int(above[-1]) + 1
    if k_high >= len(candidates):
        return TargetThreshold(status=TOO_LITTLE_EVIDENCE, **common)
    # both exist at or below k_high: low <= rate <= high <= target there
    k_low = int(np.argmax(fmr.low <= target))
    k = int(np.argmax(fmr.rate <= target))
    found = dict(common, status=FOUND, threshold=float(candidates[k]), low=float(candidates[k_low]),
                 high=float(candidates[k_high]), fmr=float(fmr.rate[k]), fmr_low=float(fmr.low[k]),
                 fmr_high=float(fmr.high[k]))
    missed = 0 if genuine_missed is None else len(genuine_missed)
    if genuine_scores is not None and len(genuine_scores) + missed:
        at = candidates[[k, k_low, k_high]]
        fnmr = RateCurve.of(genuine_scores, genuine_weights, at, "below", confidence, interval, genuine_missed)
        found.update(fnmr=float(fnmr.rate[0]), fnmr_low=float(fnmr.low[1]), fnmr_high=float(fnmr.high[2]),
                     fnmr_exact=_exact(missed, missed_cut, candidates[k_low]))
    return TargetThreshold(**found)


def _exact(missed: int, cut: float | None, t: float) -> bool:
    """Is FNMR(t) exact: no genuine comparison without a score, or ``t`` at or above their cut."""
    return not missed or cut is None or bool(t >= cut)


def weighted_histogram(scores, weights, edges) -> tuple[np.ndarray, np.ndarray]:
    """Comparisons and their summed weights per bin ``[edges[i], edges[i + 1])``, the last bin closed;
    scores outside the edges are not counted.

    >>> counts, weighted = weighted_histogram([0.0, 0.5, 0.5, 1.0], [1, 2, 4, 1], [0.0, 0.5, 1.0])
    >>> counts.tolist(), weighted.tolist()
    ([1.0, 3.0], [1.0, 7.0])
    """
    scores, weights = np.asarray(scores, float).ravel(), np.asarray(weights, float).ravel()
    edges = np.asarray(edges, float)
    bins = len(edges) - 1
    index = np.searchsorted(edges, scores, side="right") - 1
    index[scores == edges[-1]] = bins - 1
    inside = (index >= 0) & (index < bins)
    counts = np.bincount(index[inside], minlength=bins).astype(float)
    weighted = np.bincount(index[inside], weights=weights[inside], minlength=bins)
    return counts, weighted


@dataclass(frozen=True)
class GroupScores:
    """The verified comparisons of one group: impostor scores and weights, and the genuine ones
    (None where the genuine score is not known).

    ``genuine_missed``: the weights of genuine comparisons without a score that are errors at every
    threshold at or above ``missed_cut``: mated identification searches whose mate was not listed,
    ``missed_cut`` the highest threshold their lists were cut at (module docstring). None or empty
    when there are none.
    """

    impostor_scores: np.ndarray
    impostor_weights: np.ndarray
    genuine_scores: np.ndarray | None
    genuine_weights: np.ndarray | None
    genuine_missed: np.ndarray | None = None
    missed_cut: float | None = None

    @property
    def missed(self) -> int:
        """Genuine comparisons without a score (:attr:`genuine_missed`)."""
        return 0 if self.genuine_missed is None else len(self.genuine_missed)

    def fnmr_exact(self, t: float) -> bool | None:
        """Whether FNMR(t) is exact (None without genuine scores): see the module docstring."""
        return None if self.genuine_scores is None else _exact(self.missed, self.missed_cut, t)

    def scores(self) -> np.ndarray:
        """Every score of the group whose truth is usable here (impostor, and genuine where known)."""
        parts = [self.impostor_scores] + ([self.genuine_scores] if self.genuine_scores is not None else [])
        return np.concatenate([np.asarray(p, float) for p in parts])


Scope = tuple  # (deployment, algorithm, mode)


class ScoreCurves:
    """Score curves of the groups of one or more deployment x algorithm x mode scopes, read like
    fairlearn's ``MetricFrame``: per-group rows, with each scope's overall row among them.

    Scores are compared within a scope only: one algorithm and one mode, never pooled. A scope's
    candidate thresholds (:attr:`candidates`) and histogram edges (:attr:`edges`, ``bins`` equal bins
    from its lowest to its highest verified score) are shared by its groups.

    Parameters
    ----------
    groups
        :class:`~fairwatch.core.layout.GroupKey` -> :class:`GroupScores`.
    confidence, interval
        Level and method (a key of :data:`~fairwatch.core.intervals.INTERVALS`) of the intervals.
    bins
        Histogram bins per scope.

    Examples
    --------
    >>> key = GroupKey("gate-a", "algo-1", "verification", "*", "*")
    >>> curves = ScoreCurves({key: GroupScores(np.array([0.1, 0.2, 0.6]), np.ones(3),
    ...                                        np.array([0.5, 0.8, 0.9]), np.ones(3))}, bins=2)
    >>> [(p["threshold"], p["fmr"], round(p["fnmr"], 3)) for p in curves.det_points({key[:3]: [0.55]})]
    [(0.55, 0.3333333333333333, 0.333)]
    """

    def __init__(self, groups: Mapping[GroupKey, GroupScores], confidence: float = 0.95,
                 interval: str = "clopper-pearson", bins: int = DEFAULT_BINS) -> None:
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {sorted(INTERVALS)}, got {interval!r}")
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        self.groups = {GroupKey(*key): value for key, value in groups.items()}
        self.confidence, self.interval, self.bins = confidence, interval, bins
        scores: dict[Scope, list[np.ndarray]] = {}
        for key, group in self.groups.items():
            scores.setdefault(key[:3], []).append(group.scores())
        self.candidates = {scope: np.unique(np.concatenate(parts)) for scope, parts in scores.items()}
        self.edges = {scope: _edges(values, bins) for scope, values in self.candidates.items() if len(values)}

    @property
    def scopes(self) -> list[Scope]:
        return sorted(self.candidates)

    def keys(self, scope: Scope | None = None) -> list[GroupKey]:
        """The groups (of ``scope``), the overall row of each scope first."""
        return sorted((k for k in self.groups if scope is None or k[:3] == tuple(scope)),
                      key=lambda k: (k[:3], k.attribute != OVERALL, k.attribute, k.group))

    def curves(self, key: GroupKey, thresholds) -> tuple[RateCurve, RateCurve | None]:
        """FMR and FNMR (None without genuine scores) of a group at ``thresholds``."""
        group = self.groups[key]
        fmr = RateCurve.of(group.impostor_scores, group.impostor_weights, thresholds, "above", self.confidence,
                           self.interval)
        fnmr = None if group.genuine_scores is None else RateCurve.of(
            group.genuine_scores, group.genuine_weights, thresholds, "below", self.confidence, self.interval,
            group.genuine_missed)
        return fmr, fnmr

    def det_points(self, thresholds: Mapping[Scope, Sequence[float]]) -> list[dict]:
        """Per group and threshold of its scope: FMR and FNMR with their intervals and the verified
        comparisons behind them (FNMR None without genuine scores), and ``fnmr_exact``
        (:meth:`GroupScores.fnmr_exact`)."""
        rows = []
        for scope, chosen in thresholds.items():
            chosen = np.asarray(sorted(set(float(t) for t in chosen)), float)
            if not len(chosen):
                continue
            for key in self.keys(scope):
                fmr, fnmr = self.curves(key, chosen)
                for i, t in enumerate(chosen.tolist()):
                    rows.append({**key._asdict(), "threshold": t, "impostor": float(fmr.sums[i, 0]),
                                 **_rate("fmr", fmr, i), "genuine": None if fnmr is None else float(fnmr.sums[i, 0]),
                                 **_rate("fnmr", fnmr, i), "fnmr_exact": self.groups[key].fnmr_exact(t)})
        return rows

    def thresholds_for_fmr(self, target: float) -> dict[GroupKey, TargetThreshold]:
        """Each group's :class:`TargetThreshold` for ``target`` on its scope's candidates."""
        out = {}
        for key in self.keys():
            group = self.groups[key]
            out[key] = threshold_for_fmr(self.candidates[key[:3]], group.impostor_scores, group.impostor_weights,
                                         target, group.genuine_scores, group.genuine_weights, self.confidence,
                                         self.interval, group.genuine_missed, group.missed_cut)
        return out

    def histograms(self) -> list[dict]:
        """Per group and truth (``impostor``, ``genuine`` where known): the scope's edges, the
        comparisons per bin and the weighted share of the population in each bin; genuine rows also
        ``not_listed`` and ``not_listed_share``: the genuine comparisons without a score
        (:attr:`GroupScores.genuine_missed`), whose share the bins' shares leave out."""
        rows = []
        for key in self.keys():
            edges = self.edges.get(key[:3])
            if edges is None:
                continue
            group = self.groups[key]
            for truth, scores, weights in (("impostor", group.impostor_scores, group.impostor_weights),
                                           ("genuine", group.genuine_scores, group.genuine_weights)):
                if scores is None:
                    continue
                counts, weighted = weighted_histogram(scores, weights, edges)
                missed = group.genuine_missed if truth == "genuine" and group.missed else np.zeros(0)
                total = weighted.sum() + missed.sum()
                row = {**key._asdict(), "truth": truth, "edges": edges.tolist(), "counts": counts.tolist(),
                       "shares": (weighted / total).tolist() if total > 0 else [None] * len(counts)}
                if truth == "genuine":
                    row.update(not_listed=float(len(missed)),
                               not_listed_share=float(missed.sum() / total) if total > 0 else None)
                rows.append(row)
        return rows


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    low, high = float(values[0]), float(values[-1])
    if high == low:
        high = low + 1.0  # one distinct score: one bin holds it
    return np.linspace(low, high, bins + 1)


def _rate(name: str, curve: RateCurve | None, i: int) -> dict:
    if curve is None:
        return {name: None, f"{name}_low": None, f"{name}_high": None}
    rate = float(curve.rate[i])
    return {name: rate if rate == rate else None, f"{name}_low": float(curve.low[i]),
            f"{name}_high": float(curve.high[i])}


def scopes_of(keys: Iterable[GroupKey]) -> list[Scope]:
    """The distinct deployment x algorithm x mode scopes of ``keys``, sorted."""
    return sorted({tuple(k[:3]) for k in keys})
