"""Suppression of small groups: a group with fewer verified outcomes than the report's minimum loses its
numbers in tables and figures and is marked ``suppressed``."""

from __future__ import annotations

from fairwatch.audit.estimates import GROUP_FIELDS

SUPPRESSED = "suppressed"
DEFAULT_MIN_GROUP_SIZE = 10
STATUS_FIELDS = ("status", "fmr_status", "fnmr_status")
NUMBER_FIELDS = tuple(f for f in GROUP_FIELDS if f not in ("deployment", "algorithm", "mode", "attribute", "group",
                                                           *STATUS_FIELDS))


def suppress_small_groups(groups: list[dict], min_group_size: int) -> tuple[list[dict], set[tuple]]:
    """Rows with fewer than ``min_group_size`` verified outcomes lose their numbers; returns their keys."""
    out, hidden = [], set()
    for g in groups:
        if g["impostor"] + g["genuine"] < min_group_size:
            hidden.add((g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"]))
            g = {**g, **{f: None for f in NUMBER_FIELDS}, **{f: SUPPRESSED for f in STATUS_FIELDS}}
        out.append(g)
    return out, hidden
