"""How a stored row's subject labels expand into the (attribute, group) pairs it counts in, as ClickHouse SQL: shared by the sink's recompute and the detection cycle's score reads."""

from __future__ import annotations

from typing import Sequence

from fairwatch.core.layout import INTERSECTION_SEP, OVERALL


def group_expansion_sql(intersections: Sequence[Sequence[str]]) -> str:
    """An array of (attribute, group) pairs per labeled row: overall, each attribute, intersections.

    Written with functions ClickHouse 18.16 has; an intersection whose attributes the subject
    lacks gets an empty label and is filtered out (labels are never empty by contract).
    """
    parts = [f"('{OVERALL}', '{OVERALL}')"]
    for combo in intersections:
        present = " AND ".join(f"has(subject_keys, '{a}')" for a in combo)
        labels = f", '{INTERSECTION_SEP}', ".join(f"subject_values[indexOf(subject_keys, '{a}')]" for a in combo)
        parts.append(f"('{INTERSECTION_SEP.join(combo)}', if({present}, concat({labels}), ''))")
    pairs = f"arrayConcat([{', '.join(parts)}], arrayMap((k, v) -> (k, v), subject_keys, subject_values))"
    return f"arrayFilter(p -> tupleElement(p, 2) != '', {pairs})"
