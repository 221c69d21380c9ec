"""Impostor-pair matrices and same-group differentials against numbers worked out by hand, with the
intervals from scipy's beta quantiles (Clopper-Pearson) and the two-phase map written out here."""

from __future__ import annotations

import numpy as np
import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.impostor_pairs import (
    MEASURED,
    NOT_LISTED,
    TOO_LITTLE_EVIDENCE,
    UNLABELED,
    UNLISTED,
    pair_matrices,
    same_group_differentials,
)
from fairwatch.core.layout import GroupKey
from scipy.stats import beta

SCOPE = ("gate", "algo", "verification")


def cp(x: float, n: float, level: float = 0.95) -> tuple[float, float]:
    a = 1 - level
    return (beta.ppf(a / 2, x, n - x + 1) if x > 0 else 0.0, beta.ppf(1 - a / 2, x + 1, n - x) if x < n else 1.0)


def unit(n: int, errors: int) -> list[float]:
    return [n, errors, n, errors, n, errors]


def row(mode: str, attribute: str, subject: str, pair: str, sums) -> tuple:
    return ("gate", "algo", mode, attribute, subject, pair, *sums)


# verification, sex, every comparison verified: F subjects met 1000 F impostors (8 false matches),
# 500 M (1), and 40 whose reference had no sex label (1); M subjects met 400 F (0) and 1000 M (2);
# 10 comparisons of subjects without a sex label
VERIFICATION = [
    row("verification", "sex", "F", "F", unit(1000, 8)), row("verification", "sex", "F", "M", unit(500, 1)),
    row("verification", "sex", "F", UNLABELED, unit(40, 1)), row("verification", "sex", "M", "F", unit(400, 0)),
    row("verification", "sex", "M", "M", unit(600, 1)), row("verification", "sex", "M", "M", unit(400, 1)),
    row("verification", "sex", "", "F", unit(10, 0)),
]


def test_verification_cells_are_the_rates_of_their_own_pairs_with_exact_intervals():
    [m] = pair_matrices(VERIFICATION, CoreConfig(min_comparisons=500))
    assert (m.groups, m.references, m.rate) == (("F", "M"), ("F", "M"), "FMR")
    expected = {("F", "F"): (8, 1000), ("F", "M"): (1, 500), ("M", "F"): (0, 400), ("M", "M"): (2, 1000)}
    for (g, h), (x, n) in expected.items():
        cell = m.cells[g, h]
        assert (cell.n, cell.errors, cell.rate) == (n, x, x / n)
        assert (cell.low, cell.high) == pytest.approx(cp(x, n), rel=1e-12)
    assert m.status("M", "F") == TOO_LITTLE_EVIDENCE and m.status("F", "M") == MEASURED  # 400 < 500 <= 500
    document = m.to_dict()
    rows = {r["group"]: r for r in document["rows"]}
    assert rows["F"] == {"group": "F", "comparisons": 1540, "errors": 10, "rate": 10 / 1540, "without_labels": 40,
                         "without_labels_weighted": 40.0}
    assert rows["M"]["without_labels"] == 0 and document["subject_without_labels"] == 10
    assert [(c["group"], c["reference"], c["status"]) for c in document["cells"]] == [
        ("F", "F", MEASURED), ("F", "M", MEASURED), ("M", "F", TOO_LITTLE_EVIDENCE), ("M", "M", MEASURED)]


def test_weighted_cells_map_the_verified_share_through_the_subject_groups_design():
    """F-F: 5 false matches (matches verified with probability 1) among 105 verified, the 100 others
    non-matches verified with probability 0.25; M-M: no false match among 200 verified non-matches,
    so the probability of M's matches comes from M's group (1.0), not from the cell."""
    ff = [105, 5, 5 + 100 * 4, 5, 5 + 100 * 16, 5]
    mm = [200, 0, 800, 0, 3200, 0]
    rows = [row("verification", "sex", "F", "F", ff), row("verification", "sex", "M", "M", mm)]
    # the groups: each with its matches verified with probability 1 (a genuine match among them)
    keys = [GroupKey(*SCOPE, "sex", g) for g in "FM"]
    counts = np.array([[*ff, 50, 1, 50, 1, 50, 1], [*mm, 50, 1, 50, 1, 50, 1]], float)
    frame = GroupFrame.from_counts(keys, counts, CoreConfig())
    [m] = pair_matrices(rows, CoreConfig(), frame.by_group)

    def mapped(q, pe, pc):
        return q * pc / (q * pc + (1 - q) * pe)

    ff_cell = m.cells["F", "F"]
    assert ff_cell.rate == pytest.approx(5 / 405, rel=1e-12)
    assert (ff_cell.low, ff_cell.high) == pytest.approx([mapped(q, 1.0, 0.25) for q in cp(5, 105)], rel=1e-9)
    mm_cell = m.cells["M", "M"]
    assert mm_cell.rate == 0.0 and mm_cell.low == 0.0
    assert mm_cell.high == pytest.approx(mapped(cp(0, 200)[1], 1.0, 0.25), rel=1e-9)
    # without the group's design, the cell could only guess its matches' probability (the other stratum's)
    [alone] = pair_matrices(rows, CoreConfig())
    assert alone.cells["M", "M"].high == pytest.approx(cp(0, 200)[1], rel=1e-9)


def test_identification_cells_share_the_rows_denominator_and_add_up_to_the_fpir():
    """2000 non-mated searches of F probes: 1990 listed no one at or above the threshold, 6 listed an F
    first, 1 an M, 1 a candidate without a sex label, 2 had no list (but were judged a match); 300 of
    M probes, 3 false positives with an F first."""
    rows = [row("identification", "sex", "F", NOT_LISTED, unit(1990, 0)),
            row("identification", "sex", "F", "F", unit(6, 6)), row("identification", "sex", "F", "M", unit(1, 1)),
            row("identification", "sex", "F", UNLABELED, unit(1, 1)), row("identification", "sex", "F", UNLISTED, unit(2, 2)),
            row("identification", "sex", "M", NOT_LISTED, unit(297, 0)), row("identification", "sex", "M", "F", unit(3, 3))]
    [m] = pair_matrices(rows, CoreConfig(min_comparisons=500))
    assert (m.rate, m.groups, m.references) == ("FPIR", ("F", "M"), ("F", "M"))
    for (g, h), (x, n) in {("F", "F"): (6, 2000), ("F", "M"): (1, 2000), ("M", "F"): (3, 300),
                           ("M", "M"): (0, 300)}.items():
        cell = m.cells[g, h]
        assert (cell.n, cell.errors, cell.rate) == (n, x, x / n)
        assert (cell.low, cell.high) == pytest.approx(cp(x, n), rel=1e-12)
        assert m.status(g, h) == (MEASURED if n >= 500 else TOO_LITTLE_EVIDENCE)
    f = next(r for r in m.to_dict()["rows"] if r["group"] == "F")
    assert (f["comparisons"], f["errors"], f["rate"]) == (2000, 10, 10 / 2000)
    assert (f["candidate_unlabeled"], f["no_candidate_list"]) == (1, 2)
    parts = m.cells["F", "F"].rate + m.cells["F", "M"].rate + f["candidate_unlabeled_rate"] + f["no_candidate_list_rate"]
    assert parts == pytest.approx(f["rate"], rel=1e-12)
    assert same_group_differentials(m, {}, CoreConfig()) == []  # no same-group rate in identification


def test_same_group_differentials_use_the_diagonal_and_each_groups_fnmr():
    """Same-group FMR: F 8/1000, M 2/1000 (ratio 4); over all impostors F 10/1540, M 2/1400 (ratio 4.55);
    FNMR F 30/1000, M 10/1000 in both."""
    keys = [GroupKey(*SCOPE, "sex", g) for g in "FM"]
    counts = np.array([[*unit(1540, 10), *unit(1000, 30)], [*unit(1400, 2), *unit(1000, 10)]], float)
    config = CoreConfig()
    frame = GroupFrame.from_counts(keys, counts, config)
    [m] = pair_matrices(VERIFICATION, config, frame.by_group)
    same = {(d.metric, d.rate): d for d in same_group_differentials(m, frame.by_group, config)}
    pooled = {(d.metric, d.rate): d for d in frame.differentials}
    assert same["max_min_ratio", "fmr"].value == pytest.approx(4.0)
    assert pooled["max_min_ratio", "fmr"].value == pytest.approx((10 / 1540) / (2 / 1400))
    assert same["max_min_ratio", "fnmr"].value == pooled["max_min_ratio", "fnmr"].value == pytest.approx(3.0)
    assert same["fdr", "combined"].value == pytest.approx(1 - (0.5 * 0.006 + 0.5 * 0.02))
    assert same["garbe", "fmr"].value == pytest.approx(2 * 0.012 / (2 * 4 * 0.005))  # n/(n-1) sum|ri-rj| / (2n^2 mean)
    # the interval: each group's diagonal FMR at level 1 - 0.05 / 2 (Bonferroni over the two groups)
    (f_low, f_high), (m_low, m_high) = cp(8, 1000, 0.975), cp(2, 1000, 0.975)
    d = same["max_min_ratio", "fmr"]
    assert (d.low, d.high) == pytest.approx((max(1.0, max(f_low / m_high, m_low / f_high)),
                                             max(f_high / m_low, m_high / f_low)), rel=1e-9)
    assert (d.max_group, d.min_group) == ("F", "M")


def test_a_group_without_same_group_impostors_leaves_the_differentials_insufficient():
    rows = [row("verification", "sex", "F", "F", unit(1000, 8)), row("verification", "sex", "M", "F", unit(1000, 3))]
    keys = [GroupKey(*SCOPE, "sex", g) for g in "FM"]
    counts = np.array([[*unit(1000, 8), *unit(1000, 30)], [*unit(1000, 3), *unit(1000, 10)]], float)
    frame = GroupFrame.from_counts(keys, counts, CoreConfig())
    [m] = pair_matrices(rows, CoreConfig(), frame.by_group)
    assert m.cells["M", "M"].n == 0 and m.status("M", "M") == TOO_LITTLE_EVIDENCE
    same = {(d.metric, d.rate): d for d in same_group_differentials(m, frame.by_group, CoreConfig())}
    assert same["max_min_ratio", "fmr"].value is None and str(same["max_min_ratio", "fmr"].status) == "insufficient"
    assert str(same["max_min_ratio", "fnmr"].status) == "ok"
