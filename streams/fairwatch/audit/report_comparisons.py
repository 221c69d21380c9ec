"""Which groups' rates differ from which: the report's matrix view of the groups of an attribute set.

Group ``g``'s rate is *higher* than ``h``'s when ``g``'s lower bound lies above ``h``'s upper bound,
both bounds from the box the differentials' intervals are the range over
(:mod:`fairwatch.core.differentials`): every measured group's exact interval at level
``1 - alpha / m``, ``m`` the groups of the set with that rate measured, computed by the same
:meth:`~fairwatch.core.estimates.RateEstimate.interval`. With probability at least the
confidence every rate lies in its interval at once, so every *higher* of every matrix holds at
once; and a set's max/min ratio interval excludes 1 exactly when some pair is *higher*.
"""

from __future__ import annotations

from collections import defaultdict

from fairwatch.audit.report_fields import RATES, SET_SCOPE
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame

HIGHER, LOWER, UNDECIDED, SELF = "higher", "lower", "not distinguishable", "-"


def comparisons(frame: GroupFrame, config: CoreConfig, hidden_sets: set[tuple] = frozenset()) -> list[dict]:
    """Per attribute set (not in ``hidden_sets``: suppressed) and rate with two or more measured
    groups: the groups from the highest rate down, their simultaneous bounds, and ``matrix[i][j]``,
    how group ``i``'s rate compares with group ``j``'s.

    Examples
    --------
    >>> import numpy as np
    >>> from fairwatch.core.layout import GroupKey
    >>> def row(impostor, fm, genuine, fnm):
    ...     return [impostor, fm, impostor, fm, impostor, fm, genuine, fnm, genuine, fnm, genuine, fnm]
    >>> keys = [GroupKey("d", "a", "verification", "race", g) for g in ("A", "B", "C")]
    >>> rows = np.array([row(2000, 80, 500, 5), row(2000, 10, 500, 6), row(2000, 12, 500, 5)], dtype=float)
    >>> [fmr, fnmr] = comparisons(GroupFrame.from_counts(keys, rows), CoreConfig())
    >>> fmr["groups"], fmr["matrix"][0]
    (['A', 'C', 'B'], ['-', 'higher', 'higher'])
    >>> fnmr["matrix"][0]
    ['-', 'not distinguishable', 'not distinguishable']
    """
    alpha = 1 - config.confidence
    sets = defaultdict(list)
    for key, estimate in frame.by_group.items():
        sets[key[:4]].append(estimate)
    found = []
    for scope, groups in sorted(sets.items()):
        if tuple(scope) in hidden_sets:
            continue
        for rate in RATES:
            measured = [(g.key.group, getattr(g, rate)) for g in groups if getattr(g, rate).n > 0]
            if len(measured) < 2:
                continue
            level = 1 - alpha / len(measured)  # as the differentials' box: Bonferroni over the measured groups
            measured.sort(key=lambda item: (-item[1].rate, item[0]))
            bounds = [estimate.interval(level) for _, estimate in measured]
            matrix = [[SELF if i == j else HIGHER if low_i > bounds[j][1] else LOWER if high_i < bounds[j][0]
                       else UNDECIDED for j in range(len(bounds))] for i, (low_i, high_i) in enumerate(bounds)]
            found.append({**dict(zip(SET_SCOPE, scope)), "rate": rate, "level": level,
                          "groups": [name for name, _ in measured],
                          "low": [b[0] for b in bounds], "high": [b[1] for b in bounds], "matrix": matrix})
    return found


def higher_pairs(comparison: dict) -> list[tuple[str, str]]:
    """The (higher, lower) group pairs of one comparison."""
    names = comparison["groups"]
    return [(names[i], names[j]) for i, row in enumerate(comparison["matrix"]) for j, verdict in enumerate(row)
            if verdict == HIGHER]
