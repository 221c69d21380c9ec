"""The report's answer, first: which groups differ, by how much, how sure, against which policy and
target, what had too little evidence, which alerts fired; and the first page that says it.

Nothing here computes a rate or an interval: every number is read from the document's own rows
(the group and differential rows of ``fairwatch metrics``, the homogeneity tests, the pairwise
comparisons of :mod:`fairwatch.audit.report_comparisons`, the alerts of the store), so the
first page and the tables cannot disagree.
"""

from __future__ import annotations

from typing import Any

from fairwatch.audit.report_comparisons import higher_pairs
from fairwatch.audit.report_fields import ALERT_FIELDS, RATES, SET_SCOPE
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.core.estimates import rate_labels
from fairwatch.core.groupframe import GroupFrame

# the order the first page tells them in: a breach first, what is least known last
VERDICTS = ("above_policy", "not_distinguishable", "differ", "within_policy", "no_difference_shown", "insufficient",
            SUPPRESSED)
COMPARISONS = {"fmr": "impostor", "fnmr": "genuine"}  # the group rows' count of each rate's comparisons
MAX_LISTED = 8  # items of a list the first page names before "and N more"
MAX_REASONS = 4  # groups a reason names before "and N more groups"


def _scope(row: dict) -> tuple:
    return tuple(row[f] for f in SET_SCOPE)


def _verdict(row: dict, test: dict, policy_ratio: float | None) -> str:
    """The verdict a disparity is told by: against the policy ratio when one is declared (the
    differential's ``vs_policy``), otherwise the homogeneity test's, each with its own evidence
    rule (two groups measured, every group with ``min_comparisons``). Neither depends on the
    targets: a group's rate whose bounds hold its target is too little evidence about that rate
    and target, not about a difference between the groups."""
    if row["status"] == SUPPRESSED:
        return SUPPRESSED
    if policy_ratio is not None:
        return row["vs_policy"] or "insufficient"
    return test.get("verdict") or "insufficient"


def _lacking(rows: list[dict], rate: str, min_comparisons: int) -> str:
    """Why a set has no verdict, from its group rows: too few groups measured, or which groups have
    fewer than ``min_comparisons`` comparisons of the rate."""
    count = COMPARISONS[rate]
    if sum(1 for g in rows if g[count] > 0) < 2:
        return "fewer than two groups with comparisons"
    few = sorted((g[count], g["group"]) for g in rows if g[count] < min_comparisons)
    if not few:
        return "a group lacks evidence"
    named = ", ".join(f"{rows[0]['attribute']}={group} ({n})" for n, group in few[:MAX_REASONS])
    more = f" and {len(few) - MAX_REASONS} more groups" if len(few) > MAX_REASONS else ""
    return f"fewer than {min_comparisons} comparisons in {named}{more}"


def _rate_of(row: dict | None, rate: str, weighted: bool) -> dict | None:
    if row is None or row.get(rate) is None:
        return None
    return {"group": row["group"], "value": row[rate], "low": row[f"{rate}_low"], "high": row[f"{rate}_high"],
            "weighted": weighted}


def findings(doc: dict[str, Any], frame: GroupFrame, comparisons: list[dict], weighted: set[tuple]) -> dict[str, Any]:
    """The findings of a report document (JSON-ready; module docstring).

    ``frame`` names the highest and lowest group of each ratio (the groups its value is of);
    ``weighted`` holds ``(deployment, algorithm, mode, attribute, group, rate)`` of the weighted rates.
    """
    thresholds = doc["methods"]["thresholds"]
    policy_ratio = thresholds["policy_ratio"]
    groups = {(*_scope(g), g["group"]): g for g in doc["groups"]}
    sets: dict[tuple, list[dict]] = {}
    for g in doc["groups"]:
        sets.setdefault(_scope(g), []).append(g)
    extremes = {(tuple(d.scope), d.rate): (d.max_group, d.min_group) for d in frame.differentials
                if d.metric == "max_min_ratio"}
    tests = {(*_scope(t), t["rate"]): t for t in doc["homogeneity"]}
    pairs = {(*_scope(c), c["rate"]): higher_pairs(c) for c in comparisons}
    disparities = []
    for row in doc["differentials"]:
        if row["metric"] != "max_min_ratio":
            continue
        scope, rate = _scope(row), row["rate"]
        test = tests.get((*scope, rate), {})
        verdict = _verdict(row, test, policy_ratio)
        top, bottom = (None, None) if verdict == SUPPRESSED else extremes.get((scope, rate), (None, None))
        disparities.append({
            **dict(zip(SET_SCOPE, scope)), "rate": rate, "rate_label": rate_labels(row["mode"])[RATES.index(rate)],
            "verdict": verdict,
            "ratio": {k: row[k] for k in ("value", "low", "high", "status", "vs_policy")} | {
                "floor": row.get(f"{rate}_floor")},
            "homogeneity": {k: test.get(k) for k in ("verdict", "p_value", "method")},
            "highest": _rate_of(groups.get((*scope, top)), rate, (*scope, top, rate) in weighted),
            "lowest": _rate_of(groups.get((*scope, bottom)), rate, (*scope, bottom, rate) in weighted),
            "higher": [list(p) for p in pairs.get((*scope, rate), [])],
        })
    disparities.sort(key=lambda d: (VERDICTS.index(d["verdict"]) if d["verdict"] in VERDICTS else len(VERDICTS),
                                    -(d["ratio"]["value"] or d["ratio"]["low"] or 0.0)))
    above, insufficient = [], []
    for g in doc["groups"]:
        if g["status"] == SUPPRESSED:
            continue
        for rate in RATES:
            item = {**dict(zip(SET_SCOPE, _scope(g))), "group": g["group"], "rate": rate,
                    "rate_label": rate_labels(g["mode"])[RATES.index(rate)]}
            if g[f"{rate}_status"] == "above_target":
                above.append({**item, "value": g[rate], "low": g[f"{rate}_low"], "high": g[f"{rate}_high"],
                              "target": thresholds[f"target_{rate}"]})
            elif g[f"{rate}_status"] == "insufficient":
                n = g[COMPARISONS[rate]]
                found = {**item, "what": "rate", "comparisons": n}
                if n < thresholds["min_comparisons"] or n == 0:
                    found["reason"] = "fewer comparisons than min_comparisons"
                else:  # the status's own bounds, not the interval shown, hold the target: show them
                    found.update(reason="its anytime-valid bounds hold the target", value=g[rate],
                                 low=g[f"{rate}_low"], high=g[f"{rate}_high"],
                                 anytime_low=g[f"{rate}_anytime_low"], anytime_high=g[f"{rate}_anytime_high"],
                                 target=thresholds[f"target_{rate}"], family=g["status_family"],
                                 weighted=(*_scope(g), g["group"], rate) in weighted)
                insufficient.append(found)
    for d in disparities:
        if d["verdict"] == "insufficient":
            scope = tuple(d[k] for k in SET_SCOPE)
            insufficient.append({**dict(zip(SET_SCOPE, scope)), "rate": d["rate"], "rate_label": d["rate_label"],
                                 "what": "policy verdict" if policy_ratio is not None else "homogeneity verdict",
                                 "reason": _lacking(sets.get(scope, []), d["rate"], thresholds["min_comparisons"])})
    return {
        "confidence": thresholds["confidence"],
        "policy_ratio": policy_ratio,
        "policy_file": (doc["methods"]["policy"] or {}).get("path"),
        "targets": {"fmr": thresholds["target_fmr"], "fnmr": thresholds["target_fnmr"]},
        "min_comparisons": thresholds["min_comparisons"],
        "mature": doc["labels"].get("mature"),
        "disparities": disparities,
        "above_target": above,
        "insufficient": insufficient,
        "alerts": [{k: a[k] for k in ALERT_FIELDS} for a in doc["alerts"]],
        "suppressed_groups": doc["privacy"]["suppressed_groups"],
    }
