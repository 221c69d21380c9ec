"""A report's content as format-neutral blocks (headings, paragraphs, tables, images) that every renderer draws the same way."""

from __future__ import annotations

from typing import Any

from fairwatch.audit.maturity import describe
from fairwatch.audit.suppression import SUPPRESSED

POLICY_THRESHOLDS = ("target_fmr", "target_fnmr", "policy_ratio", "ratio_floor", "reference", "band",
                     "baseline_confidence", "min_evidence", "false_alarms_per_day")


def format_number(value: Any, digits: int = 4) -> str:
    """A number for a table: ``digits`` significant digits for floats, "-" for a missing one."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(row: dict, name: str) -> str:
    if row.get(name) is None:
        return SUPPRESSED if row.get("status") == SUPPRESSED else "-"
    return f"{format_number(row[name])} [{format_number(row[name + '_low'] if name + '_low' in row else row['low'])}, " \
           f"{format_number(row[name + '_high'] if name + '_high' in row else row['high'])}]"


def differential_value(row: dict) -> str:
    """Value [interval]; a ratio without upper bound (a rate may be 0, no floor) by its lower bound alone."""
    if row.get("value") is None and row.get("low") is not None and row.get("high") is None:
        return f"at least {format_number(row['low'])} (no upper bound)"
    floors = [f"{rate.upper()} floor {format_number(row[rate + '_floor'])}" for rate in ("fmr", "fnmr")
              if row.get(rate + "_floor") is not None]
    return _interval(row, "value") + (f" ({', '.join(floors)})" if floors else "")


def report_blocks(doc: dict, figures: list[tuple[bytes, str]]) -> list[tuple]:
    scope, prov, methods, repro = doc["scope"], doc["provenance"], doc["methods"], doc["reproducibility"]
    w = scope["window"]
    b: list[tuple] = [("h1", "fairwatch audit report")]
    b.append(("table", ["", ""], [
        ["window (event time)", f"[{w['from']}, {w['to']})"],
        ["requested", f"[{scope['requested']['from']}, {scope['requested']['to']})"],
        ["deployment", scope["deployment"] or "all"], ["algorithm", scope["algorithm"] or "all"],
        ["attribute", scope["attribute"] or "all"], ["generated at", doc["generated_at"]],
        ["fairwatch", methods["fairwatch_version"]],
    ]))
    b.append(("h2", "1. Scope and data provenance"))
    b.append(("table", ["match events", "verified outcomes", "weighted outcomes", "dead letters"], [[
        str(prov["events"]), str(prov["verified_outcomes"]), format_number(prov["weighted_outcomes"]),
        str(sum(d["messages"] for d in prov["dead_letters_by_reason"]))]]))
    b.append(("p", "Verification coverage by group (events of the window with a verified outcome):"))
    b.append(("table", ["deployment", "mode", "attribute", "group", "events", "verified", "coverage"], [
        [c["deployment"], c["mode"], c["attribute"], c["group"], format_number(c["events"]),
         format_number(c["verified"]), SUPPRESSED if c["status"] == SUPPRESSED else f"{c['coverage']:.1%}"]
        for c in prov["coverage_by_group"]]))
    delay = prov["label_delay"]
    b.append(("p", f"Label delay (verified_at - occurred_at) of {delay['outcomes']} outcomes: median "
                   f"{format_number(delay['p50_hours'], 3)} h, 90th percentile {format_number(delay['p90_hours'], 3)} h, 99th "
                   f"{format_number(delay['p99_hours'], 3)} h, longest {format_number(delay['max_hours'], 3)} h."))
    b.append(("table", [h["bin"] for h in delay["histogram"]], [[str(h["outcomes"]) for h in delay["histogram"]]]))
    dead = prov["dead_letters_by_reason"]
    b.append(("p", "Dead letters by reason (by rejection time): " + (
        ", ".join(f"{d['reason_code']} {d['messages']}" for d in dead) if dead else "none") + "."))
    b.append(("h2", "2. Error rates by group"))
    b.append(("p", describe(doc["labels"])))
    b.append(("table", ["deployment", "algorithm", "mode", "attribute", "group", "impostor", "FM", "FMR [CI]",
                        "genuine", "FNM", "FNMR [CI]", "status"], [
        [g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"], format_number(g["impostor"]),
         format_number(g["false_match"]), _interval(g, "fmr"), format_number(g["genuine"]), format_number(g["false_non_match"]),
         _interval(g, "fnmr"), g["status"]] for g in doc["groups"]]))
    b.append(("p", doc["privacy"]["rule"].capitalize() + f"; {doc['privacy']['suppressed_groups']} suppressed."))
    if doc["corrected"]:
        b.append(("p", "Rates corrected for reviewer error (from the independent reviews; the error is taken"
                       " as the same in every group of a deployment, algorithm and mode):"))
        b.append(("table", ["deployment", "algorithm", "mode", "attribute", "group", "FMR [CI]", "FNMR [CI]",
                            "reviewer error, matches", "non-matches"], [
            [c["deployment"], c["algorithm"], c["mode"], c["attribute"], c["group"], _interval(c, "fmr"),
             _interval(c, "fnmr"), format_number(c["error_matches"], 3), format_number(c["error_non_matches"], 3)]
            for c in doc["corrected"]]))
    b.append(("h2", "3. Differentials"))
    b.append(("table", ["deployment", "algorithm", "mode", "attribute", "metric", "rate", "value [CI]", "status",
                        "vs policy"], [
        [d["deployment"], d["algorithm"], d["mode"], d["attribute"], d["metric"], d["rate"], differential_value(d),
         d["status"], (d.get("vs_policy") or "-").replace("_", " ")] for d in doc["differentials"]]))
    b.append(("p", "Any difference at all between the groups (homogeneity test; method in section 6):"))
    b.append(("table", ["deployment", "algorithm", "mode", "attribute", "rate", "groups", "p-value", "test", "verdict"], [
        [t["deployment"], t["algorithm"], t["mode"], t["attribute"], t["rate"], str(t["groups"]),
         format_number(t["p_value"], 3), t["method"], t["verdict"].replace("_", " ")] for t in doc["homogeneity"]]))
    b.append(("h2", "4. Plots"))
    for png, caption in figures:
        b.append(("img", png, caption))
    b.append(("h2", "5. Alert history"))
    if doc["alerts"]:
        b.append(("table", ["opened", "resolved", "type", "severity", "deployment", "group", "metric", "value [CI]",
                            "state"], [
            [a["opened_at"], a["resolved_at"] or "-", a["type"], a["severity"], a["deployment"], a["group"],
             a["metric"], _interval(a, "value"), a["state"]] for a in doc["alerts"]]))
    else:
        b.append(("p", "No alert is recorded for this window. Alerts exist only where a detection policy ran"
                       " over this deployment (fairwatch replay --policy, or workers with FAIRWATCH_POLICIES);"
                       " the store does not show whether one did, so this is not evidence of no drift."))
    b.append(("h2", "6. Methods"))
    b.append(("table", ["term", "definition"], [[k, v] for k, v in methods["definitions"].items()]))
    b.append(("table", ["intervals", "method"], [[k, v] for k, v in methods["intervals"].items()]))
    b.append(("table", ["threshold", "value"], [[k, format_number(v)] for k, v in methods["thresholds"].items()]))
    b.append(("p", "Status: " + methods["status"] + "."))
    b.append(("table", ["deployment", "algorithm", "mode", "rates judged together (m)"],
              [[f["deployment"], f["algorithm"], f["mode"], str(f["rates_judged"])] for f in methods["status_families"]]))
    policy = methods["policy"]
    if policy:
        b.append(("p", f"Policy file: {policy['path']} (sha256 {policy['sha256']}), deployment {policy['deployment']}:"))
        b.append(("table", ["policy", "value"], [[k, format_number(policy[k]) if not isinstance(policy[k], dict) else
                                                  ", ".join(f"{a}={g}" for a, g in policy[k].items()) or "-"]
                                                 for k in POLICY_THRESHOLDS]))
    else:
        b.append(("p", "Policy file: none given; thresholds as listed."))
    b.append(("p", f"fairwatch {methods['fairwatch_version']}, ClickHouse {methods['server_version']}."))
    b.append(("h2", "7. Reproducibility"))
    b.append(("p", "Rerun the numbers with:"))
    b.append(("code", repro["command"]))
    b.append(("p", f"sha256 of that command's output: {repro['metrics_sha256']}"))
    b.append(("p", f"sha256 of the exported numbers (after suppression): {repro['exported_sha256']}"))
    b.append(("p", "Query the numbers were read with:"))
    for sql in repro["sql"]:
        b.append(("code", sql))
    return b
