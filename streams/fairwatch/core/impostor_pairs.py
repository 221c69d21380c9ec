"""Impostor pairs by demographic pair: FMR (and FPIR) for same-group and cross-group impostors, as a
matrix per attribute, and the differentials on same-group impostors, as NIST FRVT Part 3 reports
them [^1].

Most false matches happen between people who share sex, race and age band, so the FMR of a group
over all its impostor comparisons mixes two rates: that of its same-group impostors and that of its
cross-group ones, in proportions the deployment's traffic sets. Per attribute (or intersection)
``a`` of one deployment x algorithm x mode, with ``g`` the subject's label and ``h`` the other
side's:

* **verification** (1:1): ``FMR[g, h]`` = weighted false matches / weighted impostor comparisons
  whose subject has label ``g`` and whose reference has label ``h`` for ``a`` (the event's
  ``reference``). Each cell has its own denominator, the impostor pairs of that cell. Pairs where
  the reference has no label for ``a`` are left out of the cells and counted per row as *without
  labels* (``unlabeled``); pairs whose subject has none, per matrix (``subject_unlabeled``). Same
  group is the diagonal ``FMR[g, g]``.
* **identification** (1:N) with candidate lists: FPIR decomposed by the label of the rank-1
  candidate listed at or above the threshold, ``FPIR[g, h]`` = weighted non-mated searches of a
  ``g``-probe whose rank-1 candidate (at or above the threshold) has label ``h`` / weighted
  non-mated searches of ``g``-probes. The denominator is the row's, not the cell's: every
  non-mated search of a ``g``-probe, whatever it returned. So a row's cells, plus the false
  positives whose rank-1 candidate has no label for ``a`` (*candidate unlabeled*) and those of
  searches sent without a candidate list (*no candidate list*), sum to ``FPIR_g`` exactly. A cell
  is not a rate of "same-group non-mated searches" (a search is not a pair until it lists
  someone), which is why no differential is computed on the diagonal of an FPIR matrix.

Every cell is weighted (``weight = 1 / inclusion_prob``) and has the interval the per-group rates
have (:class:`~fairwatch.core.estimates.RateEstimator`: Clopper-Pearson on the verified error share,
mapped to the rate through the inclusion probabilities of the subject group's matches and
non-matches, or on Kish's effective counts, :func:`~fairwatch.core.intervals.effective_counts`, where
those probabilities vary). A cell with fewer than ``min_comparisons`` comparisons in its denominator
is ``too_little_evidence``, the rule of the per-group table.

**Same-group differentials.** NIST FRVT Part 3 computes the demographic differentials in FMR on
same-group impostors, so that a group is not made to look better or worse by the mix of the
impostors it happened to meet. :func:`same_group_differentials` computes the metrics of
:mod:`fairwatch.core.differentials` (max/min, max/geomean, GARBE, FDR, IR, with their simultaneous
intervals) on the diagonal ``FMR[g, g]`` and each group's FNMR (genuine comparisons are same-person,
hence same-group, already).

The rows come from the store (:func:`fairwatch.store.impostor_pairs.read_pair_sums`) as the six
sums of :mod:`fairwatch.core.layout` per (scope, attribute, subject label, pair label), the pair
label being the other side's label or one of :data:`UNLABELED`, :data:`UNLISTED`, :data:`NOT_LISTED`
(labels never start with ``=``, so the marks cannot be labels).

References
----------
[^1]: Grother, P., Ngan, M. and Hanaoka, K. (2019). Face Recognition Vendor Test Part 3:
    Demographic Effects. NIST IR 8280 (cross-demographic false match rates, section 5; FMR
    differentials on same-sex, same-age, same-region impostor pairs).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from fairwatch.core.config import CoreConfig
from fairwatch.core.differentials import AttributeSet, Differential, differentials
from fairwatch.core.estimates import GroupEstimate, RateEstimate, RateEstimator, Status
from fairwatch.core.intervals import stratum_inclusion
from fairwatch.core.layout import OVERALL, POPULATION_FIELDS, GroupKey

__all__ = ["UNLABELED", "UNLISTED", "NOT_LISTED", "TOO_LITTLE_EVIDENCE", "MEASURED", "PairMatrix",
           "pair_matrices", "same_group_differentials"]

# the pair label of a comparison whose other side has no label for the attribute (verification:
# the reference; identification: the rank-1 candidate of a false positive)
UNLABELED = "=unlabeled"
# identification: a false positive of a search sent without its candidate list
UNLISTED = "=unlisted"
# identification: a non-mated search that listed no one at or above the threshold (no false positive)
NOT_LISTED = "=none"
MARKS = (UNLABELED, UNLISTED, NOT_LISTED)
TOO_LITTLE_EVIDENCE, MEASURED = "too_little_evidence", "measured"
_SIX = len(POPULATION_FIELDS)


def _zeros() -> np.ndarray:
    return np.zeros(_SIX)


@dataclass(frozen=True)
class PairMatrix:
    """The impostor-pair matrix of one attribute set (see the module docstring).

    ``sums[(g, h)]``: the six sums of a cell's numerator population: in verification the impostor
    pairs ``(g, h)``; in identification the non-mated searches of ``g``-probes whose rank-1
    candidate at or above the threshold is labelled ``h`` (all of them errors). ``totals[g]``: the
    six sums of every impostor comparison (non-mated search) of a ``g`` subject, labelled pair or not.
    ``unlabeled[g]`` / ``unlisted[g]``: those whose other side has no label / that had no list
    (identification: false positives only). ``subject_unlabeled``: comparisons whose subject has no
    label for the attribute. ``cells[(g, h)]``: the rate with its interval and status.
    """

    scope: AttributeSet
    groups: tuple[str, ...]
    references: tuple[str, ...]
    sums: dict[tuple[str, str], np.ndarray]
    totals: dict[str, np.ndarray]
    unlabeled: dict[str, np.ndarray]
    unlisted: dict[str, np.ndarray]
    subject_unlabeled: np.ndarray
    cells: dict[tuple[str, str], RateEstimate] = field(default_factory=dict)

    @property
    def identification(self) -> bool:
        return self.scope.mode == "identification"

    @property
    def rate(self) -> str:
        """The rate the cells hold: ``FMR`` (verification) or ``FPIR`` (identification)."""
        return "FPIR" if self.identification else "FMR"

    def cell_sums(self, group: str, reference: str) -> np.ndarray:
        """The six sums a cell's rate is estimated from: its own population in verification; in
        identification the row's population with the cell's errors."""
        own = self.sums.get((group, reference), _zeros())
        if not self.identification:
            return own
        total = self.totals.get(group, _zeros())
        return np.array([total[0], own[1], total[2], own[3], total[4], own[5]])

    def status(self, group: str, reference: str) -> str:
        estimate = self.cells[group, reference]
        return TOO_LITTLE_EVIDENCE if estimate.status == Status.INSUFFICIENT else MEASURED

    def to_dict(self) -> dict:
        """JSON-ready: the scope, the rate, the labels, one row per subject group (its totals and
        what its labelled cells leave out) and one record per cell."""
        def weighted(sums: np.ndarray, errors: bool) -> float:
            return float(sums[3] if errors else sums[2])

        rows = []
        for g in self.groups:
            total = self.totals.get(g, _zeros())
            row = {"group": g, "comparisons": int(total[0]), "errors": int(total[1]),
                   "rate": float(total[3] / total[2]) if total[0] > 0 else None}
            left = self.unlabeled.get(g, _zeros())
            if self.identification:
                unlisted = self.unlisted.get(g, _zeros())
                row.update(candidate_unlabeled=int(left[1]),
                           candidate_unlabeled_rate=float(left[3] / total[2]) if total[0] > 0 else None,
                           no_candidate_list=int(unlisted[1]),
                           no_candidate_list_rate=float(unlisted[3] / total[2]) if total[0] > 0 else None)
            else:
                row.update(without_labels=int(left[0]), without_labels_weighted=weighted(left, False))
            rows.append(row)
        cells = []
        for g in self.groups:
            for h in self.references:
                e, sums = self.cells[g, h], self.cell_sums(g, h)
                cells.append({"group": g, "reference": h, "comparisons": int(sums[0]), "errors": int(sums[1]),
                              "weighted_comparisons": float(sums[2]), "weighted_errors": float(sums[3]),
                              "rate": e.rate, "low": e.low, "high": e.high, "n_eff": e.n_eff,
                              "status": self.status(g, h)})
        return {**self.scope._asdict(), "rate": self.rate, "groups": list(self.groups),
                "references": list(self.references), "rows": rows, "cells": cells,
                "subject_without_labels": int(self.subject_unlabeled[0])}


def _inclusions(groups: Mapping[GroupKey, GroupEstimate], scope: AttributeSet, names: Sequence[str],
                block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``block`` (six sums, subject group ``names[i]``): the inclusion probabilities of its
    errors' and its correct decisions' strata, the subject group's matches and non-matches (NaN when
    the group's are unknown, as its own rates have them); for a group not in ``groups``, what
    :meth:`~fairwatch.core.estimates.RateEstimator.estimate` assumes alone: the other stratum's."""
    n, errors, w, w_err, w2, w2_err = block.T
    error = stratum_inclusion(n - errors, w - w_err, w2 - w2_err)
    correct = stratum_inclusion(errors, w_err, w2_err)
    for i, name in enumerate(names):
        found = groups.get(GroupKey(*scope, name))
        if found is not None:
            error[i], correct[i] = (np.nan if v is None else float(v)
                                    for v in (found.fmr.error_inclusion, found.fmr.correct_inclusion))
    return error, correct


def pair_matrices(rows: Iterable[Sequence], config: CoreConfig,
                  groups: Mapping[GroupKey, GroupEstimate] | None = None) -> list[PairMatrix]:
    """The matrices of the rows ``(deployment, algorithm, mode, attribute, subject label, pair label,
    n, errors, w, w_err, w2, w2_err)`` (several rows of one key are summed).

    ``groups``: the per-group estimates of the same window (:class:`~fairwatch.core.groupframe.GroupFrame`
    ``by_group``), whose inclusion probabilities of matches and non-matches a cell takes where it
    has no verified record of a decision of its own. A subject label ``""`` is a comparison whose
    subject has no label for the attribute. Attribute sets without any labelled subject give no matrix.

    Examples
    --------
    Verification, attribute sex, every comparison verified: F subjects met 1000 F and 500 M
    impostors, with 6 and 1 false matches; one comparison's reference was not labelled.

    >>> rows = [("d", "a", "verification", "sex", "F", "F", 1000, 6, 1000, 6, 1000, 6),
    ...         ("d", "a", "verification", "sex", "F", "M", 500, 1, 500, 1, 500, 1),
    ...         ("d", "a", "verification", "sex", "F", UNLABELED, 1, 0, 1, 0, 1, 0)]
    >>> [m] = pair_matrices(rows, CoreConfig())
    >>> m.references, m.cells["F", "F"].rate, m.cells["F", "M"].rate, m.status("F", "M")
    (('F', 'M'), 0.006, 0.002, 'measured')
    >>> m.to_dict()["rows"][0]["without_labels"]
    1

    Identification: 2000 non-mated searches of F probes, 8 false positives: 6 listed an F first,
    1 an M, 1 a candidate without a sex label. The cells share the row's denominator and sum to
    the row's FPIR with what they leave out:

    >>> rows = [("d", "a", "identification", "sex", "F", NOT_LISTED, 1992, 0, 1992, 0, 1992, 0),
    ...         ("d", "a", "identification", "sex", "F", "F", 6, 6, 6, 6, 6, 6),
    ...         ("d", "a", "identification", "sex", "F", "M", 1, 1, 1, 1, 1, 1),
    ...         ("d", "a", "identification", "sex", "F", UNLABELED, 1, 1, 1, 1, 1, 1)]
    >>> [m] = pair_matrices(rows, CoreConfig())
    >>> m.cells["F", "F"].rate, m.cells["F", "M"].rate, m.to_dict()["rows"][0]["rate"]
    (0.003, 0.0005, 0.004)
    """
    groups = groups or {}
    by_set: dict[AttributeSet, dict[tuple[str, str], np.ndarray]] = defaultdict(dict)
    for row in rows:
        *key, subject, pair = row[:6]
        sums = np.asarray(row[6:], dtype=float)
        cells = by_set[AttributeSet(*key)]
        cells[subject, pair] = cells.get((subject, pair), _zeros()) + sums
    estimator = RateEstimator(config)
    out = []
    for scope in sorted(by_set):
        found = by_set[scope]
        labelled = sorted({g for g, _ in found if g})
        if not labelled:
            continue
        # the other side's labels met; in verification the subjects' too, so that every diagonal exists
        seen = {h for g, h in found if g and h not in MARKS}
        references = sorted(seen if scope.mode == "identification" else seen | set(labelled))
        totals: dict[str, np.ndarray] = defaultdict(_zeros)
        unlabeled: dict[str, np.ndarray] = defaultdict(_zeros)
        unlisted: dict[str, np.ndarray] = defaultdict(_zeros)
        subject_unlabeled, sums = _zeros(), {}
        for (g, h), value in found.items():
            if not g:
                subject_unlabeled += value
                continue
            totals[g] += value
            if h == UNLABELED:
                unlabeled[g] += value
            elif h == UNLISTED:
                unlisted[g] += value
            elif h != NOT_LISTED:
                sums[g, h] = value
        matrix = PairMatrix(scope, tuple(labelled), tuple(references), sums, dict(totals), dict(unlabeled),
                            dict(unlisted), subject_unlabeled)
        pairs = [(g, h) for g in labelled for h in references]
        block = np.array([matrix.cell_sums(g, h) for g, h in pairs]).reshape(-1, _SIX)
        estimates = estimator.estimate(block, None, *_inclusions(groups, scope, [g for g, _ in pairs], block))
        matrix.cells.update(zip(pairs, estimates))
        out.append(matrix)
    return out


def same_group_differentials(matrix: PairMatrix, groups: Mapping[GroupKey, GroupEstimate],
                             config: CoreConfig) -> list[Differential]:
    """The differentials of :func:`fairwatch.core.differentials.differentials` with each group's
    FMR taken over its same-group impostors only (the diagonal), its FNMR as it is; empty for an
    identification matrix (module docstring).

    Every group of the attribute set in ``groups`` enters, a group without same-group impostors
    with no FMR (which leaves the differentials ``insufficient``, as a group without evidence does
    in the per-group table). The diagonal rates are judged as the per-group FMRs are: against
    ``config.target_fmr``, in the status family of the group's own FMR, through the same design.
    """
    if matrix.identification:
        return []
    members = {key.group: estimate for key, estimate in groups.items()
               if AttributeSet(*key[:4]) == matrix.scope and key.group != OVERALL}
    if not members:
        return []
    names = sorted(members)
    block = np.array([matrix.sums.get((g, g), _zeros()) for g in names]).reshape(-1, _SIX)
    families = [members[g].fmr.family for g in names]
    diagonal = RateEstimator(config).estimate(block, config.target_fmr, *_inclusions(groups, matrix.scope, names, block),
                                              family=families)
    same = [GroupEstimate(GroupKey(*matrix.scope, g), fmr, members[g].fnmr) for g, fmr in zip(names, diagonal)]
    return differentials(matrix.scope, same, config)
