"""Rank-1 and rank-R rates of identification (1:N) searches: per group, FNIR at rank <= R for every
R up to the longest candidate list, with intervals; ``1 - FNIR(R)`` is the CMC curve.

A mated search (verified ``genuine``, its mate enrolled) with its candidate list is *identified at
rank R* when its mate is listed at a rank ``<= R`` with a score at or above the event's threshold
(ISO/IEC 19795-1, NIST FRVT Part 2 [^1]). So

* ``FNIR(R)``: the weighted share of the group's mated searches whose mate is not listed at or above
  the threshold at a rank ``<= R``;
* ``FNIR(L)``, ``L`` the longest list of the scope, is the FNIR the counts hold (``group_counts``
  under mode ``identification``: the mate anywhere in the list at or above the threshold), and
  ``FNIR(1)``, the headline, asks the mate to be the top candidate;
* ``1 - FNIR(R)`` is the cumulative match characteristic (CMC) at rank ``R``.

A mate listed below the threshold misses at every rank; so does a mate not listed. A search is
summarised by the rank it was identified at, :data:`MISSED` (0) when it was not: it is an error of
``FNIR(R)`` exactly when that rank is 0 or above ``R``. Searches without a candidate list are not
counted here: their decision cannot tell the mate from another candidate.

Weights and intervals as the per-group rates and the score curves: each verified search weighs
``1 / inclusion_prob`` (the latest revision of its primary verdict counts); at each ``R`` the six sums
of the population (:data:`~fairwatch.core.layout.POPULATION_FIELDS`) give effective counts
(:func:`~fairwatch.core.intervals.effective_counts`) and an interval of
:data:`~fairwatch.core.intervals.INTERVALS` (Clopper-Pearson by default) of those. Exact without
weights; with them the approximation of Korn and Graubard. Each interval is for one ``R`` (pointwise),
not for the curve as a whole. Searches whose events share a ``cluster_id`` (a subject searched again)
are sampling clusters, as for the per-group rates (:mod:`fairwatch.core.clusters`): a
:class:`RankClusters` gives, at each ``R``, what they add to the variance, and the interval is taken on
the effective counts divided by the design effect (at least the one the scope's overall row's
intra-cluster correlation gives).

References
----------
[^1]: Grother, P., Ngan, M. and Hanaoka, K. (2019). Face Recognition Vendor Test Part 2:
    Identification. NISTIR 8271 (FNIR at rank R and threshold T; CMC).
[^2]: ISO/IEC 19795-1:2021, Biometric performance testing and reporting: Principles and
    framework (identification rates, rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from fairwatch.core.clusters import design_effects, intra_cluster_correlation
from fairwatch.core.intervals import INTERVALS, effective_counts
from fairwatch.core.layout import OVERALL, GroupKey

__all__ = ["MISSED", "RankClusters", "RankTally", "RankCurve", "IdentificationRanks", "identified_rank"]

MISSED = 0  # the rank of a mated search whose mate was not identified at any rank


def identified_rank(mate_rank: int | None, candidate_scores, threshold: float) -> int:
    """The rank a mated search's mate was identified at: ``mate_rank`` when the list has it there
    with a score at or above ``threshold``, else :data:`MISSED`.

    >>> identified_rank(2, [0.9, 0.8, 0.4], 0.5), identified_rank(3, [0.9, 0.8, 0.4], 0.5)
    (2, 0)
    >>> identified_rank(None, [0.9], 0.5), identified_rank(4, [0.9], 0.5)  # not listed; not in the list
    (0, 0)
    """
    if not mate_rank or mate_rank > len(candidate_scores):
        return MISSED
    return int(mate_rank) if candidate_scores[mate_rank - 1] >= threshold else MISSED


@dataclass(frozen=True, eq=False)
class RankClusters:
    """The keyed searches of one group (their events carried a ``cluster_id``), as the sums that give
    :data:`~fairwatch.core.clusters.MOMENT_FIELDS` of FNIR at any rank ``R``.

    With ``B_k`` a cluster's summed weight and ``h_k[r]`` the weight of its searches identified at rank
    ``r`` (position 0, :data:`MISSED`, unused), its weighted errors at ``R`` are
    ``A_k(R) = B_k - sum_{1 <= r <= R} h_k[r]``, so ``sum_k A_k(R)^2`` and ``sum_k A_k(R) B_k`` come
    from ``bb = sum_k B_k^2``, ``hb[r] = sum_k B_k h_k[r]`` and ``hh[r, s] = sum_k h_k[r] h_k[s]``;
    ``w2[r]``: the squared weights of the keyed searches identified at ``r``; ``merged``: keyed
    searches minus keyed clusters.

    >>> clusters = RankClusters.of(["a", "a", "b"], [1, 0, 1], [1.0, 1.0, 1.0], size=2)
    >>> clusters.moments([1]).tolist()  # a: A = 1, B = 2; b: A = 0, B = 1 (alone: adds nothing)
    [[0.0, 1.0, 2.0, 1.0]]
    """

    bb: float
    hb: np.ndarray
    hh: np.ndarray
    w2: np.ndarray
    merged: float

    @classmethod
    def of(cls, clusters, ranks, weights, size: int) -> RankClusters:
        """From one cluster label, identified rank and weight per keyed search; ``size``: ranks 0 .. size - 1."""
        return cls.from_rows(list(zip(clusters, ranks, weights, np.square(np.asarray(weights, float)),
                                      np.ones(len(weights)))), size)

    @classmethod
    def from_rows(cls, rows, size: int) -> RankClusters:
        """From ``(cluster, rank, sum of weights, sum of squared weights, count)`` rows."""
        labels = sorted({r[0] for r in rows})
        index = {label: i for i, label in enumerate(labels)}
        h = np.zeros((len(labels), int(size)))
        w2 = np.zeros(int(size))
        searches = 0.0
        for cluster, rank, weight, weight2, count in rows:
            h[index[cluster], int(rank)] += weight
            w2[int(rank)] += weight2
            searches += count
        b = h.sum(axis=1)
        h[:, 0] = 0.0  # missed at every rank: only B_k counts it
        return cls(float(b @ b), b @ h, h.T @ h, w2, searches - len(labels))

    def moments(self, ranks) -> np.ndarray:
        """float64[len(ranks), 4] of :data:`~fairwatch.core.clusters.MOMENT_FIELDS` of FNIR at each rank."""
        ranks = np.minimum(np.atleast_1d(np.asarray(ranks, dtype=np.int64)), len(self.hb) - 1)
        hb = np.concatenate([[0.0], np.cumsum(self.hb[1:])])[ranks]
        hh = np.cumsum(np.cumsum(self.hh, axis=0), axis=1)[ranks, ranks]  # row/column 0 are zero
        w2_total = float(self.w2.sum())
        w2_missed = w2_total - np.concatenate([[0.0], np.cumsum(self.w2[1:])])[ranks]
        aa = self.bb - 2 * hb + hh
        ab = self.bb - hb
        return np.column_stack([aa - w2_missed, ab - w2_missed, np.full(len(ranks), self.bb - w2_total),
                                np.full(len(ranks), self.merged)])


@dataclass(frozen=True, eq=False)
class RankTally:
    """One group's verified mated searches by the rank their mate was identified at: position ``r``
    of ``n``, ``w`` and ``w2`` holds the count, the summed weights and squared weights of the
    searches identified at rank ``r`` (position 0: :data:`MISSED`).

    ``longest``: the longest candidate list among the searches (``list_length``, or the listed
    candidates when the event gave no ``list_length``). ``clusters``: the keyed searches among them
    (None when none was keyed).

    Examples
    --------
    >>> tally = RankTally.of([1, 2, 0, 1], [1.0, 1.0, 2.0, 1.0], longest=3)
    >>> tally.n.tolist(), tally.w.tolist()
    ([1.0, 2.0, 1.0, 0.0], [2.0, 2.0, 1.0, 0.0])
    >>> tally.sums([1, 2, 3])[:, :4].tolist()  # (n, errors, w, w_err) at R = 1, 2, 3
    [[4.0, 2.0, 5.0, 3.0], [4.0, 1.0, 5.0, 2.0], [4.0, 1.0, 5.0, 2.0]]
    """

    n: np.ndarray
    w: np.ndarray
    w2: np.ndarray
    longest: int
    clusters: RankClusters | None = None

    def __post_init__(self) -> None:
        shapes = {np.shape(self.n), np.shape(self.w), np.shape(self.w2)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1 or len(self.n) < 1:
            raise ValueError("n, w and w2 must be 1-d arrays of one length (position 0: missed)")
        if np.any(np.asarray(self.n) < 0) or np.any(np.asarray(self.w) < 0) or self.longest < 0:
            raise ValueError("counts, weights and the longest list must not be negative")
        if len(self.n) - 1 > max(self.longest, 0) and np.any(np.asarray(self.n)[self.longest + 1:] > 0):
            raise ValueError(f"a search identified beyond the longest list ({self.longest})")

    def __eq__(self, other: object) -> bool:
        """Equal counts and weights at every rank (trailing empty ranks aside) and the same longest list."""
        if not isinstance(other, RankTally):
            return NotImplemented
        size = max(len(self.n), len(other.n))
        return self.longest == other.longest and all(
            np.array_equal(np.pad(a, (0, size - len(a))), np.pad(b, (0, size - len(b))))
            for a, b in ((self.n, other.n), (self.w, other.w), (self.w2, other.w2)))

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def of(cls, ranks, weights, longest: int | None = None, clusters=None) -> RankTally:
        """From one identified rank (:data:`MISSED` or 1, 2, ...) and weight per search, and its
        cluster label (``clusters``; None or ``""`` for a search without one)."""
        ranks = np.asarray(ranks, dtype=np.int64).ravel()
        weights = np.asarray(weights, dtype=float).ravel()
        if ranks.shape != weights.shape:
            raise ValueError(f"{len(ranks)} ranks but {len(weights)} weights")
        if np.any(ranks < 0) or not (np.all(np.isfinite(weights)) and np.all(weights > 0)):
            raise ValueError("ranks must be >= 0 and weights finite and positive")
        top = int(ranks.max()) if len(ranks) else 0
        longest = top if longest is None else int(longest)
        size = max(longest, top) + 1
        keyed = None
        if clusters is not None:
            labels = np.asarray(clusters, dtype=object).ravel()
            mask = np.array([c is not None and c != "" for c in labels], dtype=bool)
            if mask.any():
                keyed = RankClusters.of(labels[mask].tolist(), ranks[mask], weights[mask], size)
        return cls(np.bincount(ranks, minlength=size).astype(float), np.bincount(ranks, weights, minlength=size),
                   np.bincount(ranks, weights * weights, minlength=size), longest, keyed)

    @classmethod
    def from_rows(cls, rows, longest: int, keyed_rows=()) -> RankTally:
        """From ``(rank, count, sum of weights, sum of squared weights)`` rows (ranks may repeat), and
        ``keyed_rows``, ``(cluster, rank, sum of weights, sum of squared weights, count)`` of the keyed
        searches among them (:meth:`RankClusters.from_rows`)."""
        size = max([int(longest)] + [int(r[0]) for r in rows]) + 1
        n, w, w2 = np.zeros(size), np.zeros(size), np.zeros(size)
        for rank, count, weight, weight2 in rows:
            n[int(rank)] += count
            w[int(rank)] += weight
            w2[int(rank)] += weight2
        return cls(n, w, w2, int(longest), RankClusters.from_rows(keyed_rows, size) if keyed_rows else None)

    @property
    def searches(self) -> float:
        return float(self.n.sum())

    def sums(self, ranks) -> np.ndarray:
        """The six sums ``(n, errors, w, w_err, w2, w2_err)`` of FNIR at each rank of ``ranks``
        (1, 2, ...), shape ``(len(ranks), 6)``: the errors at ``R`` are the searches not identified
        at a rank ``<= R``."""
        ranks = np.atleast_1d(np.asarray(ranks, dtype=np.int64))
        if np.any(ranks < 1):
            raise ValueError("ranks start at 1")
        out = np.empty((len(ranks), 6))
        for column, values in ((0, self.n), (2, self.w), (4, self.w2)):
            hits = np.concatenate([[0.0], np.cumsum(values[1:])])  # identified at rank <= R, R = 0, 1, ...
            within = hits[np.minimum(ranks, len(values) - 1)]
            out[:, column] = values.sum()
            out[:, column + 1] = np.maximum(values.sum() - within, 0.0)
        return out


@dataclass(frozen=True)
class RankCurve:
    """FNIR at each rank ``1 .. len(ranks)`` of one group, with intervals.

    ``fnir`` is NaN where the group has no verified mated search (its interval ``[0, 1]``);
    :attr:`identification_rate` is the CMC, ``1 - fnir``.

    Examples
    --------
    Ten unweighted mated searches: six identified at rank 1, two at rank 2, two missed.

    >>> curve = RankCurve.of(RankTally.of([1] * 6 + [2] * 2 + [0] * 2, [1.0] * 10), 3)
    >>> curve.fnir.tolist(), curve.identification_rate.tolist()
    ([0.4, 0.2, 0.2], [0.6, 0.8, 0.8])
    >>> [round(float(h), 4) for h in curve.high]
    [0.7376, 0.5561, 0.5561]
    """

    ranks: np.ndarray
    sums: np.ndarray  # (R, 6) in the layout's population order
    fnir: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_eff: np.ndarray  # divided by the design effect's factor where the searches cluster
    design_effect: np.ndarray | None = None  # per rank (:mod:`fairwatch.core.clusters`); None: 1

    @classmethod
    def of(cls, tally: RankTally, max_rank: int, confidence: float = 0.95,
           interval: str = "clopper-pearson", pooled_roh=None) -> RankCurve:
        """``pooled_roh``: per rank, the intra-cluster correlation of a larger population of the
        same searches (the scope's overall row), a floor on the design effect of keyed searches."""
        if max_rank < 1:
            raise ValueError(f"max_rank must be at least 1, got {max_rank}")
        ranks = np.arange(1, int(max_rank) + 1)
        sums = tally.sums(ranks)
        n, errors, w, w_err, w2, w2_err = sums.T
        with np.errstate(divide="ignore", invalid="ignore"):
            fnir = np.where(w > 0, w_err / w, np.nan)
        errors_eff, n_eff = effective_counts(n, errors, w, w_err, w2, w2_err)
        deff = None
        if tally.clusters is not None:
            factor, deff = design_effects(sums, tally.clusters.moments(ranks), confidence, pooled_roh)
            n_eff = np.where(factor > 1, n_eff / factor, n_eff)
            errors_eff = np.where(factor > 1, np.nan_to_num(fnir) * n_eff, errors_eff)
        low, high = INTERVALS[interval](np.minimum(errors_eff, n_eff), n_eff, confidence)
        return cls(ranks, sums, fnir, np.atleast_1d(low), np.atleast_1d(high), np.atleast_1d(n_eff), deff)

    @property
    def identification_rate(self) -> np.ndarray:
        """The CMC: ``1 - FNIR(R)`` (its interval is ``[1 - high, 1 - low]``)."""
        return 1.0 - self.fnir


Scope = tuple  # (deployment, algorithm, mode)


class IdentificationRanks:
    """FNIR at rank ``<= R`` of the groups of one or more deployment x algorithm scopes (mode
    identification), read like fairlearn's ``MetricFrame``: per-group rows, each scope's overall
    row among them.

    The ranks of a scope run from 1 to its longest candidate list (:attr:`max_rank`), the same for
    its groups, so that their curves compare.

    Parameters
    ----------
    groups
        :class:`~fairwatch.core.layout.GroupKey` -> :class:`RankTally`.
    confidence, interval
        Level and method (a key of :data:`~fairwatch.core.intervals.INTERVALS`) of the intervals.

    Examples
    --------
    >>> key = GroupKey("watch", "algo-1", "identification", "*", "*")
    >>> ranks = IdentificationRanks({key: RankTally.of([1, 1, 2, 0], [1.0, 1.0, 1.0, 1.0], longest=2)})
    >>> [(r["rank"], r["fnir"]) for r in ranks.records()]
    [(1, 0.5), (2, 0.25)]
    >>> ranks.headline()[0]["rank_1_fnir"], ranks.headline()[0]["last_rank"]
    (0.5, 2)
    """

    def __init__(self, groups: Mapping[GroupKey, RankTally], confidence: float = 0.95,
                 interval: str = "clopper-pearson") -> None:
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {sorted(INTERVALS)}, got {interval!r}")
        self.groups = {GroupKey(*key): value for key, value in groups.items()}
        self.confidence, self.interval = confidence, interval
        self.max_rank: dict[Scope, int] = {}
        for key, tally in self.groups.items():
            longest = max(tally.longest, len(tally.n) - 1)
            self.max_rank[key[:3]] = max(self.max_rank.get(key[:3], 1), longest, 1)

    @property
    def scopes(self) -> list[Scope]:
        return sorted(self.max_rank)

    def keys(self, scope: Scope | None = None) -> list[GroupKey]:
        """The groups (of ``scope``), the overall row of each scope first."""
        return sorted((k for k in self.groups if scope is None or k[:3] == tuple(scope)),
                      key=lambda k: (k[:3], k.attribute != OVERALL, k.attribute, k.group))

    def curve(self, key: GroupKey) -> RankCurve:
        return RankCurve.of(self.groups[key], self.max_rank[key[:3]], self.confidence, self.interval,
                            self._pooled_roh(key[:3]))

    def _pooled_roh(self, scope: Scope) -> np.ndarray | None:
        """Per rank, the intra-cluster correlation of the scope's overall row (None without keyed searches)."""
        overall = self.groups.get(GroupKey(*scope, OVERALL, OVERALL))
        if overall is None or overall.clusters is None:
            return None
        ranks = np.arange(1, self.max_rank[scope] + 1)
        return intra_cluster_correlation(overall.sums(ranks), overall.clusters.moments(ranks))

    def records(self) -> list[dict]:
        """One JSON-ready row per group and rank: key fields, ``rank``, ``mated`` (verified mated
        searches with a list), ``missed`` (of them, not identified at a rank <= R), ``fnir`` with
        ``fnir_low`` / ``fnir_high`` (None without a mated search) and ``n_eff``."""
        rows = []
        for key in self.keys():
            curve = self.curve(key)
            for i, rank in enumerate(curve.ranks.tolist()):
                rows.append({**key._asdict(), "rank": rank, "mated": float(curve.sums[i, 0]),
                             "missed": float(curve.sums[i, 1]), **_fnir(curve, i),
                             "n_eff": float(curve.n_eff[i])})
        return rows

    def headline(self) -> list[dict]:
        """One row per group: rank-1 FNIR and FNIR at the scope's last rank (the longest list),
        each with its interval (``rank_1_fnir*``, ``last_fnir*``), ``last_rank`` and ``mated``."""
        rows = []
        for key in self.keys():
            curve = self.curve(key)
            last = len(curve.ranks) - 1
            first, final = _fnir(curve, 0), _fnir(curve, last)
            rows.append({**key._asdict(), "mated": float(curve.sums[0, 0]), "last_rank": int(curve.ranks[last]),
                         **{f"rank_1_{k}": v for k, v in first.items()},
                         **{f"last_{k}": v for k, v in final.items()}})
        return rows


def _fnir(curve: RankCurve, i: int) -> dict:
    rate = float(curve.fnir[i])
    if rate != rate:
        return {"fnir": None, "fnir_low": None, "fnir_high": None}
    return {"fnir": rate, "fnir_low": float(curve.low[i]), "fnir_high": float(curve.high[i])}
