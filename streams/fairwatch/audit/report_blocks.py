"""A report's content as format-neutral blocks (headings, paragraphs, tables, images) that every renderer draws the same way.

Blocks: ``("h1"|"h2"|"h3"|"p"|"li"|"code", text)``, ``("table", head, rows)``, ``("img", png, caption)``
and ``("pagebreak",)``. A table cell is a ``str`` or a :class:`Cell`, whose ``tone`` the renderers
show (``worse``, ``warn``, ``better``, ``muted``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fairwatch.audit.maturity import describe
from fairwatch.audit.report_fields import RATES, SCOPE
from fairwatch.audit.report_scores import score_blocks
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.core.estimates import rate_labels

POLICY_THRESHOLDS = ("target_fmr", "target_fnmr", "policy_ratio", "ratio_floor", "reference", "band",
                     "baseline_confidence", "min_evidence", "false_alarms_per_day")
WEIGHTED_MARK = "\u2020"  # dagger: a rate estimated with weights, so errors / verified is not the rate
TONES = ("worse", "warn", "better", "muted")
METRIC_NAMES = {"max_min_ratio": "max/min ratio", "max_geomean": "max/geomean", "garbe": "GARBE", "fdr": "FDR",
                "ir": "IR"}


# a matrix verdict as its cell shows it (the document keeps the words)
MATRIX_CELLS = {"higher": ("higher", "worse"), "lower": ("lower", "better"), "not distinguishable": ("\u2248", None),
                "-": ("", "muted")}


class Cell(str):
    """A table cell's text with a ``tone`` (one of :data:`TONES`, or None)."""

    tone: str | None

    def __new__(cls, text: str, tone: str | None = None) -> Cell:
        cell = super().__new__(cls, text)
        cell.tone = tone
        return cell


def format_number(value: Any, digits: int = 4) -> str:
    """A number for a table: ``digits`` significant digits for floats, "-" for a missing one."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(row: dict, name: str, digits: int = 4) -> str:
    if row.get(name) is None:
        return SUPPRESSED if row.get("status") == SUPPRESSED else "-"
    low = row[name + "_low"] if name + "_low" in row else row["low"]
    high = row[name + "_high"] if name + "_high" in row else row["high"]
    return f"{format_number(row[name], digits)} [{format_number(low, digits)}, {format_number(high, digits)}]"


def rate_interval(row: dict, rate: str, digits: int = 4) -> str:
    """A group row's rate with its interval, e.g. ``0.0349 [0.0316, 0.0386]``."""
    return _interval(row, rate, digits)


def differential_value(row: dict, digits: int = 4) -> str:
    """Value [interval]; a ratio without upper bound (a rate may be 0, no floor) by its lower bound alone."""
    if row.get("value") is None and row.get("low") is not None and row.get("high") is None:
        return f"at least {format_number(row['low'], digits)} (no upper bound)"
    floors = [f"{rate.upper()} floor {format_number(row[rate + '_floor'])}" for rate in ("fmr", "fnmr")
              if row.get(rate + "_floor") is not None]
    return _interval(row, "value", digits) + (f" ({', '.join(floors)})" if floors else "")


def words(status: str | None) -> str:
    """A status as tables print it: ``not_distinguishable`` -> ``not distinguishable``."""
    return (status or "-").replace("_", " ")


def by_scope(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows per deployment x algorithm x mode, in first-seen order (one table each, under a heading)."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        out[tuple(row[f] for f in SCOPE)].append(row)
    return out


def scope_heading(scope: tuple) -> tuple:
    return ("h3", " / ".join(scope))


def rate_definitions(thresholds: dict) -> list[tuple]:
    """FMR and FNMR, defined where the group tables use them."""
    return [("p", "FMR: false matches / impostor comparisons (FPIR in identification): how often the matcher"
                  " accepts two different people. FNMR: false non-matches / genuine comparisons (FNIR in"
                  " identification): how often it rejects the same person. In identification (1:N) with candidate"
                  " lists, FPIR counts non-mated searches that listed anyone at or above the threshold, and FNIR"
                  " mated searches whose mate was not listed at or above it (someone else listed is a miss)."
                  " Counts are of verified comparisons;"
                  f" [a, b] is the {thresholds['confidence']:.0%} interval of one rate (Clopper-Pearson on the"
                  " verified outcomes, through the verification design). Status: ok (within its target),"
                  " above target, insufficient (fewer than"
                  f" {thresholds['min_comparisons']} comparisons, or anytime-valid bounds that hold the target),"
                  " no target (measured, not judged). The status is judged on anytime-valid bounds, wider than"
                  " the interval shown: they hold at every look and for all the rates of a deployment, algorithm"
                  " and mode at once (section 9), so an interval that excludes the target can still be insufficient.")]


def metric_definitions(thresholds: dict) -> list[tuple]:
    """Each differential the tables show, with the weights used: defined where it is used."""
    level = f"{thresholds['confidence']:.0%}"
    policy = thresholds["policy_ratio"]
    return [
        ("p", f"Each interval holds for every group of the attribute at once ({level}: each group's rate at the"
              " Bonferroni level, the metric's range over those intervals). The metrics, per attribute:"),
        ("li", "max/min ratio: the highest group's rate over the lowest's (NIST FRVT Part 3); 1 = equal. A rate"
               " of 0 leaves it without upper bound unless a ratio floor is declared."),
        ("li", "max/geomean: the highest group's rate over the geometric mean of all the groups' rates (NIST"
               " FRTE); 1 = equal."),
        ("li", "GARBE: Gini Aggregation Rate for Biometric Equitability (Howard et al. 2023): per rate the Gini"
               " coefficient of the groups' rates, n/(n-1) x sum |r_i - r_j| / (2 n^2 mean r), 0 = equal, 1 = all"
               f" errors in one group; combined: alpha x Gini(FMR) + (1 - alpha) x Gini(FNMR), alpha ="
               f" {format_number(thresholds['garbe_alpha'])}."),
        ("li", "FDR: Fairness Discrepancy Rate (de Freitas Pereira and Marcel 2022): 1 - (alpha x A + (1 - alpha)"
               " x B), A and B the max - min differences of FMR and of FNMR across the groups, alpha ="
               f" {format_number(thresholds['fdr_alpha'])}; 1 = fair."),
        ("li", "IR: Inequity Rate (Howard et al. 2023): (max FMR / min FMR)^alpha x (max FNMR / min FNMR)^(1 -"
               f" alpha), alpha = {format_number(thresholds['ir_alpha'])}; 1 = fair."),
        ("li", "evidence: sufficient when every group's rates are resolved, insufficient when a group lacks"
               " evidence (the value is still shown), undefined when the value does not exist (a rate of 0"
               " under a ratio)."),
        ("li", "vs policy: the max/min ratio's interval against the policy ratio" +
               (f" {format_number(policy)}" if policy is not None else " (none declared here)") +
               ": above policy (the whole interval above it), within policy (at or below it), not"
               " distinguishable (the interval holds it), insufficient (a group lacks evidence)."),
    ]


def _group_rows(rows: list[dict], worse: set[tuple], weighted: set[tuple]) -> list[list]:
    table = []
    for g in rows:
        key = tuple(g[f] for f in (*SCOPE, "attribute", "group"))
        cells = []
        for rate in ("fmr", "fnmr"):
            text = rate_interval(g, rate) + (WEIGHTED_MARK if (*key, rate) in weighted else "")
            tone = "worse" if (*key, rate) in worse else "muted" if g[f"{rate}_status"] in ("insufficient",
                                                                                              SUPPRESSED) else None
            cells.append(Cell(text, tone))
        status = Cell(words(g["status"]), "worse" if g["status"] == "above_target" else
                      "muted" if g["status"] in ("insufficient", SUPPRESSED) else None)
        table.append([g["attribute"], g["group"], format_number(g["impostor"]), format_number(g["false_match"]),
                      cells[0], format_number(g["genuine"]), format_number(g["false_non_match"]), cells[1], status])
    return table


def _weighting_note(doc: dict, scope: tuple) -> str | None:
    shown = [w for w in doc["weighting"] if tuple(w[f] for f in SCOPE) == scope and (w["fmr"] or w["fnmr"])]
    if not shown:
        return None
    designs = sorted({(w["match_inclusion"], w["non_match_inclusion"]) for w in shown}, key=str)
    said = "; ".join("probabilities that vary within a decision (interval on Kish's effective counts)"
                     if "varies" in (m, n) else f"matches verified with probability {format_number(m)},"
                     f" non-matches {format_number(n)}" for m, n in designs)
    return (f"{WEIGHTED_MARK} weighted: only a sample of comparisons was verified ({said}); each verified outcome"
            " weighs 1 / inclusion_prob, so the rate is not errors / verified comparisons, and its interval"
            " carries the sampling.")


def report_blocks(doc: dict, figures: list[tuple[bytes, str]]) -> list[tuple]:
    """Every section after the first page (:mod:`fairwatch.audit.report_headline`)."""
    scope, prov, methods, repro = doc["scope"], doc["provenance"], doc["methods"], doc["reproducibility"]
    thresholds = methods["thresholds"]
    w = scope["window"]
    b: list[tuple] = [("h2", "1. Scope and data provenance")]
    b.append(("table", ["", ""], [
        ["window (event time)", f"[{w['from']}, {w['to']})"],
        ["requested", f"[{scope['requested']['from']}, {scope['requested']['to']})"],
        ["deployment", scope["deployment"] or "all"], ["algorithm", scope["algorithm"] or "all"],
        ["attribute", scope["attribute"] or "all"], ["generated at", doc["generated_at"]],
        ["fairwatch", methods["fairwatch_version"]], ["ClickHouse", methods["server_version"]],
    ]))
    b += evidence_blocks(doc.get("evidence"))
    b.append(("p", "The matchers (algorithm as the site names it, its version included) and their decision"
                   " thresholds, from the match events of the window:"))
    b.append(("table", ["deployment", "algorithm", "mode", "decision threshold", "match events"], [
        [m["deployment"], m["algorithm"], m["mode"], threshold_text(m), str(m["events"])] for m in prov["matchers"]]))
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
    b += rate_definitions(thresholds)
    b.append(("p", describe(doc["labels"])))
    weighted = weighted_cells(doc)
    worse = worse_cells(doc)
    for key, rows in by_scope(doc["groups"]).items():
        fmr, fnmr = rate_labels(key[2])
        b.append(scope_heading(key))
        b.append(("table", ["attribute", "group", "verified impostor", "FM", f"{fmr} [CI]", "verified genuine",
                            "FNM", f"{fnmr} [CI]", "status"], _group_rows(rows, worse, weighted)))
        note = _weighting_note(doc, key)
        if note:
            b.append(("p", note))
    b.append(("p", "Marked cells: a group's rate above another group's of its attribute at the level of the"
                   " differentials' intervals (section 4 says which), or above its target."))
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
    b += metric_definitions(thresholds)
    for key, rows in by_scope(doc["differentials"]).items():
        b.append(scope_heading(key))
        b.append(("table", ["attribute", "metric", "rate", "value [CI]", "evidence", "vs policy"], [
            [d["attribute"], METRIC_NAMES.get(d["metric"], d["metric"]), d["rate"], differential_value(d),
             Cell(words({"ok": "sufficient"}.get(d["status"], d["status"])),
                  "muted" if d["status"] in ("insufficient", "undefined", SUPPRESSED) else None),
             Cell(words(d.get("vs_policy")), {"above_policy": "worse", "not_distinguishable": "warn"}.get(
                 d.get("vs_policy")))] for d in rows]))
    b.append(("p", "Any difference at all between the groups (homogeneity test, one test at level"
                   f" {1 - thresholds['confidence']:.2g} per attribute and rate; method in section 9):"))
    b.append(("table", ["deployment", "algorithm", "mode", "attribute", "rate", "groups", "p-value", "test", "verdict"], [
        [t["deployment"], t["algorithm"], t["mode"], t["attribute"], t["rate"], str(t["groups"]),
         format_number(t["p_value"], 3), t["method"], Cell(words(t["verdict"]), "warn" if t["verdict"] == "differ"
                                                                  else None)] for t in doc["homogeneity"]]))

    b.append(("h2", "4. Which groups differ from which"))
    b.append(("p", "Each matrix reads along its rows: the row group's rate is higher than, lower than or not"
                   " distinguishable (\u2248) from the column group's, judged on the intervals the differentials'"
                   f" intervals are made of (each group's rate at level 1 - {1 - thresholds['confidence']:.2g}/m,"
                   " m the groups of the attribute; all verdicts of a matrix hold together). Groups from the"
                   " highest rate down; suppressed attributes are left out."))
    for key, rows in by_scope(doc["comparisons"]).items():
        b.append(scope_heading(key))
        for c in rows:
            label = rate_labels(c["mode"])[RATES.index(c["rate"])]
            b.append(("table", [f"{c['attribute']}: {label}", *c["groups"]], [
                [name, *(Cell(*MATRIX_CELLS[v]) for v in row)] for name, row in zip(c["groups"], c["matrix"])]))

    if "scores" in doc:
        b += score_blocks(doc["scores"], 5)
    if "impostor_pairs" in doc:
        from fairwatch.audit.report_pairs import pair_blocks  # it builds on this module's cells

        b += pair_blocks(doc["impostor_pairs"], 6)

    b.append(("h2", "7. Plots"))
    for png, caption in figures:
        b.append(("img", png, caption))
    if not figures:
        b.append(("p", "No plot: none was asked for (JSON and CSV carry none) or no group had data to draw."))

    b.append(("h2", "8. Alert history"))
    if doc["alerts"]:
        b.append(("table", ["opened", "resolved", "type", "severity", "deployment", "group", "metric", "value [CI]",
                            "baseline", "state"], [
            [a["opened_at"], a["resolved_at"] or "-", a["type"], a["severity"], a["deployment"], a["group"],
             a["metric"], _interval(a, "value"), format_number(a["baseline"]), a["state"]] for a in doc["alerts"]]))
    else:
        b.append(("p", "No alert is recorded for this window. Alerts exist only where a detection policy ran"
                       " over this deployment (fairwatch replay --policy, or workers with FAIRWATCH_POLICIES);"
                       " the store does not show whether one did, so this is not evidence of no drift."))

    b.append(("h2", "9. Methods"))
    b.append(("table", ["term", "definition"], [[k, v] for k, v in methods["definitions"].items()]))
    b.append(("table", ["intervals", "method"], [[k, v] for k, v in methods["intervals"].items()]))
    b.append(("table", ["threshold", "value"], [[k, format_number(v)] for k, v in thresholds.items()]))
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

    b.append(("h2", "10. Reproducibility"))
    if repro.get("command_note"):  # what to set before the command runs as printed
        b.append(("p", repro["command_note"]))
    b.append(("p", "Rerun the numbers with:"))
    b.append(("code", repro["command"]))
    b.append(("p", f"sha256 of that command's output: {repro['metrics_sha256']}"))
    b.append(("p", f"sha256 of the exported numbers (after suppression): {repro['exported_sha256']}"))
    b.append(("p", "Query the numbers were read with:"))
    for sql in repro["sql"]:
        b.append(("code", sql))
    return b


def evidence_blocks(evidence: dict | None) -> list[tuple]:
    """The checkpoints the numbers were computed from: one line per deployment (origin, size, root),
    or that it is not sealed (:mod:`fairwatch.audit.report_evidence`)."""
    if evidence is None:
        return []
    b: list[tuple] = [("p", "Evidence: the signed checkpoint of each deployment's evidence log when the report was"
                            f" made (origins under {evidence['base_origin']}):")]
    for log in evidence["logs"]:
        if log["sealed"]:
            b.append(("li", f"{log['origin']}: size {log['tree_size']}, root {log['root_hash']}"))
        else:
            b.append(("li", f"{log['origin']}: {log['statement']}"))
    b.append(("p", evidence["statement"]))
    return b


def weighted_cells(doc: dict) -> set[tuple]:
    """``(deployment, algorithm, mode, attribute, group, rate)`` of the weighted rates (the ``weighting``
    rows: verified outcomes of unequal weights), which the tables, plots and first page mark."""
    return {(*(w[f] for f in (*SCOPE, "attribute", "group")), rate) for w in doc["weighting"] for rate in RATES
            if w[rate]}


def worse_cells(doc: dict) -> set[tuple]:
    """``(deployment, algorithm, mode, attribute, group, rate)`` of the rates the tables mark: above
    another group's of the attribute (the comparisons), or above the target."""
    worse = {(*(c[f] for f in (*SCOPE, "attribute")), c["groups"][i], c["rate"])
             for c in doc["comparisons"] for i, row in enumerate(c["matrix"]) if "higher" in row}
    worse |= {(*(g[f] for f in (*SCOPE, "attribute", "group")), rate) for g in doc["groups"]
              for rate in RATES if g[f"{rate}_status"] == "above_target"}
    return worse


def threshold_text(matcher: dict) -> str:
    """A matcher's decision thresholds: one value, a few with their events, or the range of many."""
    thresholds = matcher["thresholds"]
    if len(thresholds) == 1:
        return format_number(thresholds[0]["threshold"], 6)
    if matcher["distinct_thresholds"] > len(thresholds):
        return (f"{matcher['distinct_thresholds']} values from {format_number(matcher['min_threshold'], 6)} to"
                f" {format_number(matcher['max_threshold'], 6)}")
    return ", ".join(f"{format_number(t['threshold'], 6)} ({t['events']} events)" for t in thresholds)
