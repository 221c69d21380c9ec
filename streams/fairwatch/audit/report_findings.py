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
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.core.estimates import rate_labels
from fairwatch.core.groupframe import GroupFrame

SCOPE = ("deployment", "algorithm", "mode", "attribute")
RATES = ("fmr", "fnmr")
# the order the first page tells them in: a breach first, what is least known last
VERDICTS = ("above_policy", "not_distinguishable", "differ", "within_policy", "no_difference_shown", "insufficient",
            "undefined", SUPPRESSED)
ALERT_FIELDS = ("type", "severity", "deployment", "algorithm", "group", "metric", "value", "low", "high", "baseline",
                "state", "opened_at", "resolved_at")
MAX_LISTED = 8  # items of a list the first page names before "and N more"


def _scope(row: dict) -> tuple:
    return tuple(row[f] for f in SCOPE)


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
        if row["status"] == SUPPRESSED:
            verdict = SUPPRESSED
        elif policy_ratio is not None:
            verdict = row["vs_policy"]
        elif row["status"] == "insufficient" or test.get("verdict") == "insufficient":
            verdict = "insufficient"
        else:
            verdict = test.get("verdict") or "insufficient"
        top, bottom = (None, None) if verdict == SUPPRESSED else extremes.get((scope, rate), (None, None))
        disparities.append({
            **dict(zip(SCOPE, scope)), "rate": rate, "rate_label": rate_labels(row["mode"])[RATES.index(rate)],
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
        for rate, n_field in (("fmr", "impostor"), ("fnmr", "genuine")):
            item = {**dict(zip(SCOPE, _scope(g))), "group": g["group"], "rate": rate,
                    "rate_label": rate_labels(g["mode"])[RATES.index(rate)]}
            if g[f"{rate}_status"] == "above_target":
                above.append({**item, "value": g[rate], "low": g[f"{rate}_low"], "high": g[f"{rate}_high"],
                              "target": thresholds[f"target_{rate}"]})
            elif g[f"{rate}_status"] == "insufficient":
                few = g[n_field] < thresholds["min_comparisons"]
                insufficient.append({**item, "what": "rate", "comparisons": g[n_field],
                                     "reason": "fewer comparisons than min_comparisons" if few else
                                     "its bounds hold the target"})
    for d in disparities:
        if policy_ratio is not None and d["verdict"] == "insufficient":
            insufficient.append({**{k: d[k] for k in SCOPE}, "rate": d["rate"], "rate_label": d["rate_label"],
                                 "what": "policy verdict", "reason": "a group lacks evidence for the max/min ratio"})
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
