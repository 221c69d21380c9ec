"""The report's first page: the findings (:mod:`fairwatch.audit.report_findings`) in words and one
table, then a page break. Every number is a row's number, printed as the tables print it."""

from __future__ import annotations

from fairwatch.audit.report_blocks import WEIGHTED_MARK, Cell, differential_value, format_number, threshold_text, words
from fairwatch.audit.report_findings import MAX_LISTED
from fairwatch.audit.suppression import SUPPRESSED

DIGITS = 3  # the first page rounds to 3 significant digits; the tables give 4


def _rate(item: dict | None, sep: str = " ") -> str:
    if item is None:
        return "-"
    mark = WEIGHTED_MARK if item["weighted"] else ""
    return (f"{item['group']}{sep}{format_number(item['value'], DIGITS)} [{format_number(item['low'], DIGITS)},"
            f" {format_number(item['high'], DIGITS)}]{mark}")


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _where(d: dict, several: bool) -> str:
    return f"{d['deployment']} / {d['algorithm']} / {d['mode']}: " if several else ""


def _ratio(d: dict) -> str:
    return differential_value({**d["ratio"], "fmr_floor": None, "fnmr_floor": None}, DIGITS)


def _disparity(d: dict, policy_ratio, several: bool) -> str:
    attribute, label = d["attribute"], d["rate_label"]
    head = (f"{_where(d, several)}{attribute} {label}: highest {attribute}={_rate(d['highest'])},"
            f" lowest {attribute}={_rate(d['lowest'])}; max/min ratio {_ratio(d)}")
    if d["ratio"]["floor"] is not None:
        head += f" (with the ratio floor {format_number(d['ratio']['floor'])}; the policy verdict is on the ratio without it)"
    verdict = d["verdict"]
    if verdict == "above_policy":
        head += f": ABOVE the policy ratio {format_number(policy_ratio)}, the whole interval above it."
    elif verdict == "not_distinguishable":
        side = "above" if (d["ratio"]["value"] or d["ratio"]["low"] or 0) > policy_ratio else "at or below"
        head += (f": not distinguishable from the policy ratio {format_number(policy_ratio)}: the estimate is"
                 f" {side} it but the interval holds it, so this evidence cannot tell whether the policy is"
                 " broken.")
    elif verdict == "differ":
        head += f": the groups differ (homogeneity p = {format_number(d['homogeneity']['p_value'], DIGITS)})."
    else:
        head += f": {words(verdict)}."
    above: dict[str, list[str]] = {}
    for a, lower in d["higher"]:
        above.setdefault(a, []).append(lower)
    if above and verdict in ("above_policy", "not_distinguishable", "differ"):
        head += " At this level, " + "; ".join(f"{attribute}={a} is above {_listed(lower)}"
                                              for a, lower in above.items()) + "."
    return head


def first_page(doc: dict) -> list[tuple]:
    """The title, the answer in a few lines, the findings table and a page break."""
    f, prov, scope = doc["findings"], doc["provenance"], doc["scope"]
    w = scope["window"]
    b: list[tuple] = [("h1", "fairwatch audit report")]
    where = ", ".join(f"{k} {scope[k]}" for k in ("deployment", "algorithm", "attribute") if scope[k]) or "all deployments"
    b.append(("p", f"Window [{w['from']}, {w['to']}) of event time, {where}; generated {doc['generated_at']} by"
                   f" fairwatch {doc['methods']['fairwatch_version']}. {prov['events']} match events,"
                   f" {prov['verified_outcomes']} verified outcomes."))
    b.append(("h2", "Findings"))
    for m in prov["matchers"]:
        count = "all " if len(m["thresholds"]) == 1 else ""
        b.append(("li", f"Matcher: {m['deployment']} / algorithm {m['algorithm']} ({m['mode']}), decision"
                        f" threshold {threshold_text(m)} on {count}{m['events']} match events."))
    policy_ratio, level = f["policy_ratio"], f"{f['confidence']:.0%}"
    against = (f"policy {f['policy_file']}" if f["policy_file"] else "the command line")
    targets = [f"target {name.upper()} {format_number(t)}" for name, t in f["targets"].items() if t is not None]
    b.append(("li", f"Judged against {against}: " + (
        f"policy ratio {format_number(policy_ratio)} for each rate's max/min ratio across the groups of an attribute"
        if policy_ratio is not None else "no policy ratio declared, so ratios are measured, not judged") + "; " + (
        ", ".join(targets) if targets else "no target FMR or FNMR declared, so rates are measured, not judged") +
        f". Intervals: {level} for every group of an attribute at once."))
    several = len({(d["deployment"], d["algorithm"], d["mode"]) for d in f["disparities"]}) > 1
    def above(d: dict) -> bool:  # a breach, or an estimate above the policy ratio that the interval cannot confirm
        value = d["ratio"]["value"] if d["ratio"]["value"] is not None else d["ratio"]["low"] or 0.0
        return d["verdict"] in ("above_policy", "differ") or (d["verdict"] == "not_distinguishable"
                                                              and value > policy_ratio)

    loud = [d for d in f["disparities"] if above(d)]
    for d in loud[:MAX_LISTED]:
        b.append(("li", _disparity(d, policy_ratio, several)))
    if len(loud) > MAX_LISTED:
        b.append(("li", f"And {len(loud) - MAX_LISTED} more attribute rates like these (the table below lists them"
                        " all)."))
    unsure = [d for d in f["disparities"] if d["verdict"] == "not_distinguishable" and not above(d)]
    if unsure:
        b.append(("li", f"Not distinguishable from the policy ratio {format_number(policy_ratio)} with the estimate at"
                        " or below it (too little evidence to call them within): " + _listed(
                            [f"{_where(d, several)}{d['attribute']} {d['rate_label']} {_ratio(d)}" for d in unsure])
                  + "."))
    within = [d for d in f["disparities"] if d["verdict"] == "within_policy"]
    if within:
        b.append(("li", f"Within the policy ratio {format_number(policy_ratio)} (whole interval at or below it): " +
                  _listed([f"{_where(d, several)}{d['attribute']} {d['rate_label']} {_ratio(d)}" for d in within]) + "."))
    quiet = [d for d in f["disparities"] if d["verdict"] == "no_difference_shown"]
    if quiet:
        b.append(("li", "No difference shown between the groups (not evidence that they are equal): " + _listed(
            [f"{_where(d, several)}{d['attribute']} {d['rate_label']} (p = {format_number(d['homogeneity']['p_value'], DIGITS)})"
             for d in quiet]) + "."))
    if not f["disparities"]:
        b.append(("li", "No attribute has two groups with data: no differential exists in this window."))
    if f["above_target"]:
        b.append(("li", f"Above target ({len(f['above_target'])} rates): " + _listed(
            [f"{i['attribute']}={i['group']} {i['rate_label']} {format_number(i['value'], DIGITS)}"
             f" [{format_number(i['low'], DIGITS)}, {format_number(i['high'], DIGITS)}] > {format_number(i['target'])}"
             for i in f["above_target"]]) + "."))
    rates = [i for i in f["insufficient"] if i["what"] == "rate"]
    verdicts = [i for i in f["insufficient"] if i["what"] != "rate"]
    if rates or verdicts:
        said = []
        if rates:
            said.append(f"Too little evidence for {len(rates)} rates, shown as insufficient, never as fair: " + _listed(
                [f"{i['attribute']}={i['group']} {i['rate_label']} ({i['comparisons']} comparisons)"
                 if i["attribute"] != "*" else f"all {i['rate_label']} ({i['comparisons']} comparisons)" for i in rates]) +
                f" (fewer than {f['min_comparisons']} comparisons, or bounds that hold the target).")
        if verdicts:
            said.append(f"No policy verdict for {len(verdicts)} attribute rates, a group lacking evidence: " + _listed(
                [f"{i['attribute']} {i['rate_label']}" for i in verdicts]) + ".")
        b.append(("li", " ".join(said)))
    else:
        b.append(("li", "Too little evidence: nothing in this window; every rate of every group has at least"
                        f" {f['min_comparisons']} verified comparisons" +
                        (" and bounds that decide its target." if any(f["targets"].values()) else ".")))
    if f["suppressed_groups"]:
        b.append(("li", f"{f['suppressed_groups']} groups suppressed (fewer than {doc['privacy']['min_group_size']}"
                        " verified outcomes), and the differentials of their attributes with them."))
    if f["alerts"]:
        b.append(("li", f"Alerts open in the window ({len(f['alerts'])}): " + "; ".join(
            f"{a['type']} on {a['group']} {a['metric'].upper()} ({a['severity']}), opened {a['opened_at']}, " +
            (f"resolved {a['resolved_at']}" if a["resolved_at"] else "still firing") +
            (f", {format_number(a['value'], DIGITS)} [{format_number(a['low'], DIGITS)},"
             f" {format_number(a['high'], DIGITS)}] against baseline {format_number(a['baseline'], DIGITS)}"
             if a["value"] is not None and a["low"] is not None else "")
            for a in f["alerts"]) + "."))
    else:
        b.append(("li", "No alert recorded in the window; alerts exist only where a detection policy ran, so this is"
                        " not evidence of no drift."))
    if not f["mature"]:
        b.append(("li", "Labels NOT MATURE: verdicts of this window may still be corrected, so its statuses are"
                        " provisional (section 2)."))
    if f["disparities"]:
        head = ["attribute", "rate", "highest group", "lowest group", "max/min ratio [CI]",
                "vs policy" + (f" ratio {format_number(policy_ratio)}" if policy_ratio is not None else ""),
                "any difference (p)"]
        if several:
            head.insert(0, "scope")
        tones = {"above_policy": "worse", "not_distinguishable": "warn", "differ": "warn"}
        rows = []
        for d in f["disparities"]:
            suppressed = d["verdict"] == SUPPRESSED
            row = [d["attribute"], d["rate_label"], Cell(_rate(d["highest"], "\n"), tones.get(d["verdict"])),
                   _rate(d["lowest"], "\n"), SUPPRESSED if suppressed else _ratio(d),
                   Cell(words(d["ratio"]["vs_policy"] if not suppressed else SUPPRESSED), tones.get(d["verdict"])),
                   words(d["homogeneity"]["verdict"]) + (f" ({format_number(d['homogeneity']['p_value'], 2)})"
                                                         if d["homogeneity"]["p_value"] is not None and
                                                         d["homogeneity"]["verdict"] in ("differ", "no_difference_shown")
                                                         else "")]
            if several:
                row.insert(0, f"{d['deployment']} / {d['algorithm']} / {d['mode']}")
            rows.append(row)
        b.append(("table", head, rows))
        b.append(("p", "FMR: false matches / impostor comparisons; FNMR: false non-matches / genuine comparisons"
                       " (FPIR and FNIR in identification); max/min ratio: the highest group's rate over the lowest's"
                       f" (1 = equal). Rates with their {level} interval, ratios with their interval for every group"
                       f" at once; {WEIGHTED_MARK}: weighted estimate (section 2). The other metrics are defined in"
                       " section 3, the groups compared pair by pair in section 4; alerts and drift are marked on"
                       " the plots of section 5."))
    b.append(("pagebreak",))
    return b
