"""Error rates by group and their differentials as one object, read like fairlearn's ``MetricFrame``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from fairwatch.core.clusters import N_MOMENTS, intra_cluster_correlation
from fairwatch.core.config import CoreConfig
from fairwatch.core.differentials import AttributeSet, Differential, differentials
from fairwatch.core.estimates import GroupEstimate, RateEstimator
from fairwatch.core.homogeneity import Homogeneity, homogeneity
from fairwatch.core.intervals import stratum_inclusion
from fairwatch.core.layout import GENUINE, IMPOSTOR, N_COLUMNS, OVERALL, GroupKey
from fairwatch.core.misclassification import (
    CorrectedRates,
    ReviewerError,
    corrected_rates,
)

__all__ = ["GroupFrame"]

_RATE_CHOICES = ("fmr", "fnmr")


def decision_inclusions(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusion probabilities of the match and non-match strata of each counts row (float64[k, 12]).

    Matches are the false matches (impostor errors) and the genuine matches (genuine correct);
    non-matches the impostor non-matches and the false non-matches. So a group with no verified
    false non-match still shows, through its impostor non-matches, how often non-matches were
    verified: the weight an unseen false non-match would carry.
    """
    imp, gen = rows[:, IMPOSTOR], rows[:, GENUINE]
    n, errors, w, w_err, w2, w2_err = range(6)

    def correct(block: np.ndarray, total: int, part: int) -> np.ndarray:
        return block[:, total] - block[:, part]

    matches = stratum_inclusion(imp[:, errors] + correct(gen, n, errors), imp[:, w_err] + correct(gen, w, w_err),
                                imp[:, w2_err] + correct(gen, w2, w2_err))
    non_matches = stratum_inclusion(correct(imp, n, errors) + gen[:, errors], correct(imp, w, w_err) + gen[:, w_err],
                                    correct(imp, w2, w2_err) + gen[:, w2_err])
    return matches, non_matches


def population_strata(rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per rate, the inclusion probabilities of its errors' and its correct decisions' strata, as
    :meth:`~fairwatch.core.estimates.RateEstimator.estimate` takes them: false matches are matches
    and impostors' correct decisions non-matches; the other way round for genuine comparisons."""
    matches, non_matches = decision_inclusions(rows)
    return {"fmr": (matches, non_matches), "fnmr": (non_matches, matches)}


def status_families(keys: Sequence[GroupKey], rows: np.ndarray, config: CoreConfig) -> np.ndarray:
    """Per row, how many rates are judged together with its own: every rate with a target and any
    comparison among the rows of its deployment x algorithm x mode (overall rows, every attribute
    and intersection). Statuses are Bonferroni-corrected over that family
    (:mod:`fairwatch.core.estimates`); at least 1.

    A rate counts from its first comparison, not from ``min_comparisons`` (when it can first be
    judged): the union bound is for a family fixed in advance, and a family that grew while rates
    were being judged would have judged the first ones at a weaker level. Counted this way it is
    fixed once every group has appeared."""
    judged = np.zeros(len(keys), dtype=int)
    for target, population in ((config.target_fmr, IMPOSTOR), (config.target_fnmr, GENUINE)):
        if target is not None:
            judged += rows[:, population][:, 0] > 0
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for key, count in zip(keys, judged):
        totals[key[:3]] += int(count)
    return np.array([max(1, totals[key[:3]]) for key in keys], dtype=int)


class GroupFrame:
    """FMR / FNMR (FPIR / FNIR) by group with intervals and statuses, plus the differentials.

    Attributes
    ----------
    by_group
        ``GroupKey -> GroupEstimate`` for every group of every attribute set, in key order.
    overall
        ``(deployment, algorithm, mode) -> GroupEstimate`` of the all-comparisons rows (attribute
        and group ``"*"``), when the counts have them.
    differentials
        Every :class:`~fairwatch.core.differentials.Differential` of every attribute set.
    homogeneity
        ``(AttributeSet, rate) -> Homogeneity``: is there any difference at all between the
        groups' rates (:mod:`fairwatch.core.homogeneity`), per attribute set and rate.
    corrected
        ``GroupKey -> CorrectedRates``: the rates corrected for reviewer error
        (:mod:`fairwatch.core.misclassification`), for the groups (overall rows included) of the
        deployments x algorithms x modes with independent reviews; empty without any.

    Examples
    --------
    A window of one deployment: 600 impostor and 500 genuine comparisons per group, one group
    without false match; the deployment declares a target FMR of 1e-3.

    >>> from fairwatch.core.layout import GroupKey
    >>> def row(impostor, fm, genuine, fnm):  # unweighted: every weight 1
    ...     return [impostor, fm, impostor, fm, impostor, fm, genuine, fnm, genuine, fnm, genuine, fnm]
    >>> keys = [GroupKey("gate-3", "algo-2", "verification", "*", "*"),
    ...         GroupKey("gate-3", "algo-2", "verification", "sex", "F"),
    ...         GroupKey("gate-3", "algo-2", "verification", "sex", "M")]
    >>> rows = np.array([row(1200, 6, 1000, 30), row(600, 6, 500, 20), row(600, 0, 500, 10)], dtype=float)
    >>> frame = GroupFrame.from_counts(keys, rows, CoreConfig(target_fmr=1e-3))
    >>> for key, g in frame.by_group.items():
    ...     print(key.group, g.fmr.rate, str(g.fmr.status), g.fnmr.rate, str(g.status))
    F 0.01 above_target 0.04 above_target
    M 0.0 insufficient 0.02 insufficient
    >>> frame.overall["gate-3", "algo-2", "verification"].fmr.rate
    0.005

    Differences and ratios between the groups of each attribute set, with intervals:

    >>> [d] = frame.difference("fnmr").values()
    >>> d.value, d.max_group, d.min_group, str(d.status)
    (0.02, 'F', 'M', 'ok')
    >>> [d] = frame.ratio("fmr").values()  # M has no false match: the ratio does not exist
    >>> d.value, str(d.status), d.high  # and M's rate may be tiny: no upper bound either
    (None, 'insufficient', None)
    >>> d.low  # 6/600 against 0/600: at 95% for every group at once, parity is not ruled out
    1.0

    JSON-ready rows, where numbers that do not exist are None:

    >>> record = frame.to_records()[2]
    >>> {k: record[k] for k in ("group", "impostor", "false_match", "fmr", "fmr_vs_target", "status")}
    {'group': 'M', 'impostor': 600, 'false_match': 0, 'fmr': 0.0, 'fmr_vs_target': 0.0, 'status': 'insufficient'}
    """

    def __init__(
        self,
        by_group: dict[GroupKey, GroupEstimate],
        overall: dict[tuple[str, str, str], GroupEstimate],
        differentials: list[Differential],
        homogeneity: dict[tuple[AttributeSet, str], Homogeneity] | None = None,
        corrected: dict[GroupKey, CorrectedRates] | None = None,
    ) -> None:
        self.by_group = by_group
        self.overall = overall
        self.differentials = differentials
        self.homogeneity = homogeneity or {}
        self.corrected = corrected or {}

    @classmethod
    def from_counts(
        cls,
        keys: Sequence[GroupKey],
        rows: np.ndarray,
        config: CoreConfig | None = None,
        method: str = "clopper-pearson",
        reviews: dict[tuple[str, str, str], tuple[ReviewerError, ReviewerError, bool]] | None = None,
        clustering: dict[GroupKey, np.ndarray] | None = None,
    ) -> GroupFrame:
        """Build the frame from counts rows (float64[k, 12], :mod:`fairwatch.core.layout`).

        Rows of the same key are summed, so the rows of a window's buckets may be passed as
        they are. ``method`` is the fixed-sample interval (:class:`~fairwatch.core.estimates.RateEstimator`).
        ``reviews``: per deployment x algorithm x mode, the independent reviews of its matches and
        non-matches (pairs, disagreements with first verdicts) and whether some verdicts that count
        are corrections, the reviewers' error assumed the same in all its groups; where given,
        every group's rates are also given allowing for that error (``corrected``).
        ``clustering``: per group, float64[2, 4] (impostor, genuine) of
        :data:`~fairwatch.core.clusters.MOMENT_FIELDS`, for the groups whose comparisons share
        cluster keys: their intervals allow for the clustering's design effect, at least the one
        the intra-cluster correlation of their deployment x algorithm x mode's overall row gives.
        """
        config = config or CoreConfig()
        keys, rows = _sum_by_key(keys, rows)
        estimator = RateEstimator(config, method)
        strata = population_strata(rows)
        family = status_families(keys, rows, config)
        moments, roh = [None, None], [None, None]
        if clustering:
            both = np.array([clustering.get(key, np.zeros((2, N_MOMENTS))) for key in keys]).reshape(-1, 2, N_MOMENTS)
            moments = [both[:, 0], both[:, 1]]
            roh = [_overall_roh(keys, rows[:, population], moments[p])
                   for p, population in enumerate((IMPOSTOR, GENUINE))]
        fmrs = estimator.estimate(rows[:, IMPOSTOR], config.target_fmr, *strata["fmr"], family=family,
                                  clustering=moments[0], pooled_roh=roh[0])
        fnmrs = estimator.estimate(rows[:, GENUINE], config.target_fnmr, *strata["fnmr"], family=family,
                                   clustering=moments[1], pooled_roh=roh[1])

        by_group, overall = {}, {}
        attribute_sets: dict[AttributeSet, list[GroupEstimate]] = defaultdict(list)
        for key, fmr, fnmr in zip(keys, fmrs, fnmrs):
            estimate = GroupEstimate(key, fmr, fnmr)
            if key.attribute == OVERALL:
                overall[key.deployment, key.algorithm, key.mode] = estimate
            else:
                by_group[key] = estimate
                attribute_sets[AttributeSet(*key[:4])].append(estimate)
        found = [d for scope, groups in attribute_sets.items() for d in differentials(scope, groups, config)]
        tests = {(scope, rate): homogeneity([getattr(g, rate) for g in groups], config.confidence,
                                            config.min_comparisons)
                 for scope, groups in attribute_sets.items() for rate in _RATE_CHOICES}
        corrected = {}
        if reviews:
            match_pi, non_match_pi = strata["fmr"]  # the match and non-match strata, computed above
            for i, key in enumerate(keys):
                review = reviews.get(key[:3])
                # a stratum whose probabilities vary or are unknown has no exact design to correct
                if review is not None and 0 < match_pi[i] <= 1 and 0 < non_match_pi[i] <= 1:
                    matches, non_matches, corrected_labels = review
                    corrected[key] = corrected_rates(rows[i], match_pi[i], non_match_pi[i], matches, non_matches,
                                                     config.confidence, corrected_labels)
        return cls(by_group, overall, found, tests, corrected)

    def _select(self, metric: str, rate: str) -> dict[AttributeSet, Differential]:
        if rate not in _RATE_CHOICES:
            raise ValueError(f"rate must be one of {_RATE_CHOICES}, got {rate!r}")
        return {d.scope: d for d in self.differentials if d.metric == metric and d.rate == rate}

    def difference(self, rate: str = "fmr") -> dict[AttributeSet, Differential]:
        """Largest minus smallest rate between the groups of each attribute set."""
        return self._select("max_min_difference", rate)

    def ratio(self, rate: str = "fmr") -> dict[AttributeSet, Differential]:
        """Largest over smallest rate of each attribute set (>= 1: the biometric convention, where
        fairlearn's ``ratio()`` gives smallest over largest)."""
        return self._select("max_min_ratio", rate)

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per group, overall rows first (:meth:`GroupEstimate.to_dict`)."""
        return [g.to_dict() for g in (*self.overall.values(), *self.by_group.values())]

    def corrected_records(self) -> list[dict]:
        """One JSON-ready dict per group with rates corrected for reviewer error: key fields, then
        the :class:`~fairwatch.core.misclassification.CorrectedRates` fields."""
        return [{**key._asdict(), **{f: getattr(c, f) for f in c.__slots__}} for key, c in self.corrected.items()]

    def homogeneity_records(self) -> list[dict]:
        """One JSON-ready dict per attribute set and rate: its scope, ``rate`` and the test's fields."""
        return [{**scope._asdict(), "rate": rate, **test.to_dict()} for (scope, rate), test in self.homogeneity.items()]

    def to_dict(self) -> dict:
        """``{"groups": to_records(), "differentials": [...], "homogeneity": [...]}``, ready for ``json.dumps``."""
        return {"groups": self.to_records(), "differentials": [d.to_dict() for d in self.differentials],
                "homogeneity": self.homogeneity_records()}


def _overall_roh(keys: Sequence[GroupKey], block: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """Per row, the intra-cluster correlation of its deployment x algorithm x mode's overall row (NaN without one)."""
    overall = {key[:3]: i for i, key in enumerate(keys) if key.attribute == OVERALL}
    roh = intra_cluster_correlation(block, moments)
    return np.array([roh[overall[key[:3]]] if key[:3] in overall else np.nan for key in keys], dtype=float)


def _sum_by_key(keys: Iterable[GroupKey], rows: np.ndarray) -> tuple[list[GroupKey], np.ndarray]:
    keys = [GroupKey(*key) for key in keys]
    rows = np.asarray(rows, dtype=float).reshape(len(keys), N_COLUMNS)
    unique = sorted(set(keys))
    index = {key: i for i, key in enumerate(unique)}
    summed = np.zeros((len(unique), N_COLUMNS))
    np.add.at(summed, [index[key] for key in keys], rows)
    return unique, summed
