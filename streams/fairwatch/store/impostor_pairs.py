"""Reads of the verified impostor comparisons by demographic pair: per deployment x algorithm x mode x
attribute, subject label and pair label, the six sums of :mod:`fairwatch.core.layout` (errors: the
decision ``match``), for :func:`fairwatch.core.impostor_pairs.pair_matrices`.

``labeled_outcomes`` holds one row per verified event with the revision that counts (its truth
``impostor``: an impostor comparison, or a non-mated search), its decision and weight
``1 / inclusion_prob``; the other side's labels are the event's, from ``match_events``: the
``reference`` of a 1:1 comparison, and for a search the groups of its rank-1 candidate
(``candidate_groups[1]``, sorted-key JSON), which is listed at or above the threshold exactly when
the search's decision is ``match`` (the contract checks it). Rows are those whose event-time bucket
is in ``[start, end)``; the tables may be the stored ones or those sealed up to checkpoints
(:mod:`fairwatch.store.sealed_evidence`), as :mod:`fairwatch.store.verified_scores` reads them.

The pair label (:mod:`fairwatch.core.impostor_pairs`): verification, the reference's label or
``=unlabeled``; identification, ``=none`` when the search listed no one at or above the threshold,
else ``=unlisted`` when it was sent without its list, else the rank-1 candidate's label or
``=unlabeled``. The subject label is ``''`` when the subject has no label for the attribute.

The attributes are those of the window's verified impostor subjects (one read), each intersection
of ``intersections`` too, labels joined as the sink joins them (``sex&race`` -> ``F&Black``); every
attribute name reaches the SQL as a bound parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from fairwatch.core.impostor_pairs import NOT_LISTED, UNLABELED, UNLISTED
from fairwatch.core.layout import INTERSECTION_SEP
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.sealed_evidence import STORED, EvidenceTables
from fairwatch.store.sink import population_sums

__all__ = ["read_pair_sums", "pair_attributes"]

# the events' columns a pair needs, read beside event_id
PAIR_COLUMNS = "reference_keys, reference_values, candidates_listed, candidate_groups"
_SEP = f", '{INTERSECTION_SEP}', "  # between the parts of an intersection's label
LABELED_READ = "deployment, algorithm, toString(mode) AS mode_name, subject_keys, subject_values, decision, truth, weight"


def _window(tables: EvidenceTables, where: str) -> str:
    """The window's verified impostor comparisons with their events' pair columns."""
    return (f"SELECT {LABELED_READ}, {PAIR_COLUMNS} FROM {tables.labeled} ANY INNER JOIN"
            f" (SELECT event_id, {PAIR_COLUMNS} FROM {tables.events}"
            f"  WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}) AS paired USING (event_id)"
            f" WHERE bucket >= %(start)s AND bucket < %(end)s AND truth = 'impostor'{where}")


def _label(values: str, keys: str, parts: Sequence[str]) -> str:
    """The label of attribute set ``parts`` (parameter names) in parallel arrays, '' when one lacks."""
    one = [f"{values}[indexOf({keys}, %({p})s)]" for p in parts]
    if len(one) == 1:
        return one[0]
    present = " AND ".join(f"has({keys}, %({p})s)" for p in parts)
    return f"if({present}, concat({_SEP.join(one)}), '')"


def _candidate_label(parts: Sequence[str]) -> str:
    """The rank-1 candidate's label of ``parts`` from its sorted-key JSON ('' when it has none).

    visitParamExtractString reads compact JSON only; the stored text separates a key from its value
    by ``": "``, which no label holds (labels have no quotes), so it is compacted first."""
    groups = "replaceAll(candidate_groups[1], '\": \"', '\":\"')"
    one = [f"visitParamExtractString({groups}, %({p})s)" for p in parts]
    if len(one) == 1:
        return one[0]
    present = " AND ".join(f"{x} != ''" for x in one)
    return f"if({present}, concat({_SEP.join(one)}), '')"


def _expansion(sets: Sequence[Sequence[str]]) -> str:
    """Per row, one (attribute, subject label, pair label) per attribute set: the set's name is
    parameter ``s<j>``, its parts ``a<k>`` numbered over all the sets' parts in order."""
    tuples, k = [], 0
    for j, parts in enumerate(sets):
        names = [f"a{k + i}" for i in range(len(parts))]
        k += len(parts)
        reference = _label("reference_values", "reference_keys", names)
        candidate = _candidate_label(names)
        pair = (f"multiIf(mode_name = 'verification', if({reference} != '', {reference}, '{UNLABELED}'),"
                f" decision != 'match', '{NOT_LISTED}', candidates_listed = 0, '{UNLISTED}',"
                f" if({candidate} != '', {candidate}, '{UNLABELED}'))")
        tuples.append(f"(%(s{j})s, {_label('subject_values', 'subject_keys', names)}, {pair})")
    return f"[{', '.join(tuples)}]"


def pair_attributes(store: Store, start: datetime, end: datetime, deployment: str | None = None,
                    algorithm: str | None = None, tables: EvidenceTables = STORED) -> list[str]:
    """The attributes the window's verified impostor subjects are labelled with, sorted."""
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    rows = store.query(
        f"SELECT DISTINCT arrayJoin(subject_keys) AS attribute FROM {tables.labeled}"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s AND truth = 'impostor'{where} ORDER BY attribute", params)
    return [a for a, in rows]


def read_pair_sums(store: Store, start: datetime, end: datetime, intersections: Sequence[Sequence[str]] = (),
                   deployment: str | None = None, algorithm: str | None = None,
                   tables: EvidenceTables = STORED) -> list[tuple]:
    """Rows ``(deployment, algorithm, mode, attribute, subject label, pair label, n, errors, w, w_err,
    w2, w2_err)`` of the window's verified impostor comparisons, for every attribute of its subjects
    and each of ``intersections`` (module docstring). ``[start, end)`` is in whole buckets."""
    attributes = pair_attributes(store, start, end, deployment, algorithm, tables)
    if not attributes:
        return []
    known = set(attributes)
    sets = [(a,) for a in attributes] + [tuple(c) for c in intersections if c and set(c) <= known]
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=start, end=end)
    params.update({f"a{k}": name for k, name in enumerate(name for parts in sets for name in parts)})
    params.update({f"s{j}": INTERSECTION_SEP.join(parts) for j, parts in enumerate(sets)})
    sums = ", ".join(population_sums("impostor"))
    return store.query(
        "SELECT deployment, algorithm, mode_name, tupleElement(pair, 1) AS attribute,"
        f" tupleElement(pair, 2) AS subject_label, tupleElement(pair, 3) AS pair_label, {sums}"
        f" FROM ({_window(tables, where)}) ARRAY JOIN {_expansion(sets)} AS pair"
        " GROUP BY deployment, algorithm, mode_name, attribute, subject_label, pair_label"
        " ORDER BY deployment, algorithm, mode_name, attribute, subject_label, pair_label", params)
