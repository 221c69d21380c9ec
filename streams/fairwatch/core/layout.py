"""The one layout of per-group error counts shared by the join, the estimators, the store and reports.

A *population* is the impostor comparisons (for FMR / FPIR) or the genuine comparisons (for FNMR /
FNIR) of one group. For each population six sums are kept, so that unweighted and
Horvitz-Thompson weighted estimates (weight = 1 / inclusion_prob) and Kish's effective sample
size can all be derived from bucket sums, and any window is a plain sum of buckets:

========  ===========================================================
n         comparisons (unweighted count)
errors    errors among them (false matches, or false non-matches)
w         sum of weights
w_err     sum of weights of the errors
w2        sum of squared weights
w2_err    sum of squared weights of the errors
========  ===========================================================

A counts row is ``numpy.float64[12]``: the impostor block then the genuine block, in the order
of :data:`COLUMNS`. Keys are :class:`GroupKey`.
"""

from __future__ import annotations

from typing import NamedTuple

POPULATION_FIELDS = ("n", "errors", "w", "w_err", "w2", "w2_err")
COLUMNS = tuple(f"impostor_{f}" for f in POPULATION_FIELDS) + tuple(f"genuine_{f}" for f in POPULATION_FIELDS)
N_COLUMNS = len(COLUMNS)
IMPOSTOR = slice(0, 6)
GENUINE = slice(6, 12)
COL = {name: i for i, name in enumerate(COLUMNS)}

# attribute / group of the row that counts every comparison of a deployment x algorithm x mode
OVERALL = "*"
# joins attribute names and labels of an intersection: attribute "sex&race", group "F&Black"
INTERSECTION_SEP = "&"


class GroupKey(NamedTuple):
    deployment: str
    algorithm: str
    mode: str
    attribute: str
    group: str
