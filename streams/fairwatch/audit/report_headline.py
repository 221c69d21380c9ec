"""The report's first page: the findings (:mod:`fairwatch.audit.report_findings`) in words and one
table, then a page break. Every number is a row's number, printed as the tables print it."""

from __future__ import annotations

from fairwatch.audit.report_blocks import WEIGHTED_MARK, Cell, differential_value, format_number, threshold_text, words
from fairwatch.audit.report_findings import MAX_LISTED
from fairwatch.audit.suppression import SUPPRESSED

DIGITS = 3  # the first page rounds to 3 significant digits; the tables give 4


def _value(item: dict) -> str:
    """A rate with its own interval and the weighted mark: ``0.0349 [0.0316, 0.0386]†``."""
    mark = WEIGHTED_MARK if item["weighted"] else ""
    return (f"{format_number(item['value'], DIGITS)} [{format_number(item['low'], DIGITS)},"
            f" {format_number(item['high'], DIGITS)}]{mark}")


def _rate(item: dict | None, sep: str = " ") -> str:
    return "-" if item is None else f"{item['group']}{sep}{_value(item)}"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _where(d: dict, several: bool) -> str:
    return f"{d['deployment']} / {d['algorithm']} / {d['mode']}: " if several else ""


def _ratio(d: dict) -> str:
    return differential_value({**d["ratio"], "fmr_floor": None, "fnmr_floor": None}, DIGITS)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _who(item: dict) -> str:
    """A group as the page names it: ``race=Black``, or ``all`` for the overall row."""
    return "all" if item["attribute"] == "*" else f"{item['attribute']}={item['group']}"


def _estimate(d: dict) -> float | None:
    """The max/min ratio's point estimate without any floor, the one the policy verdict is judged
    on: the highest group's rate over the lowest's, from the group rows the page shows. None when
    it does not exist (the lowest group has no observed error): then only a lower bound is known."""
    top, bottom = d["highest"], d["lowest"]
    if top is None or bottom is None or top["value"] is None or not bottom["value"]:
        return None
    return top["value"] / bottom["value"]


def _above(d: dict, policy_ratio) -> bool:
    """A breach, a difference, or an estimate above the policy ratio that the interval cannot confirm."""
    if d["verdict"] in ("above_policy", "differ"):
        return True
    estimate = _estimate(d)
    return d["verdict"] == "not_distinguishable" and estimate is not None and estimate > policy_ratio


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
        estimate = _estimate(d)
        known = (f"the estimate is {'above' if estimate > policy_ratio else 'at or below'} it"
                 if estimate is not None else
                 "the ratio has no estimate (its lowest group has no observed error), only a lower bound,")
        head += (f": not distinguishable from the policy ratio {format_number(policy_ratio)}: {known} but the"
                 " interval holds it, so this evidence cannot tell whether the policy is broken.")
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


def _too_little(f: dict, rates: list[dict], verdicts: list[dict], several: bool) -> list[str]:
    """The sentences of what had too little evidence: rates with too few comparisons, rates whose
    status bounds hold their target (shown with those bounds), sets without a verdict."""
    said = []
    if rates:
        said.append(f"Too little evidence for {len(rates)} rates, shown as insufficient, never as fair.")
    few = [i for i in rates if "anytime_low" not in i]
    if few:
        said.append(f"Fewer than {f['min_comparisons']} comparisons: " + _listed(
            [f"{_where(i, several)}{_who(i)} {i['rate_label']} ({_count(i['comparisons'], 'comparison')})"
             for i in few]) + ".")
    held = [i for i in rates if "anytime_low" in i]
    if held:
        said.append("Enough comparisons, but the bounds the status is judged on hold the target: " + _listed(
            [f"{_where(i, several)}{_who(i)} {i['rate_label']} {_value(i)}, anytime-valid bounds"
             f" [{format_number(i['anytime_low'], DIGITS)}, {format_number(i['anytime_high'], DIGITS)}] hold target"
             f" {format_number(i['target'])}" for i in held]) +
            ". Those bounds hold at every look at a growing window and for all m rates of a deployment, algorithm"
            f" and mode together (level 1 - {1 - f['confidence']:.2g}/m; m = " +
            ", ".join(sorted({str(i["family"]) for i in held})) + "; section 9), so they are wider than the"
            " interval shown, which is one look at one rate.")
    for what, name in (("policy verdict", "No policy verdict"), ("homogeneity verdict", "No homogeneity verdict")):
        lacking = [i for i in verdicts if i["what"] == what]
        if lacking:
            said.append(f"{name} for {len(lacking)} attribute rates: " + _listed(
                [f"{_where(i, several)}{i['attribute']} {i['rate_label']} ({i['reason']})" for i in lacking]) + ".")
    return said


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
        if policy_ratio is not None else "no policy ratio declared, so ratios are measured, not judged, and each"
        " attribute's groups are compared by a homogeneity test") + "; " + (
        ", ".join(targets) if targets else "no target FMR or FNMR declared, so rates are measured, not judged") +
        f". Intervals at {level}: a group's rate with its own interval; a max/min ratio with one that holds for"
        " every group of its attribute at once (each group's rate at the Bonferroni level)."))
    several = len({(d["deployment"], d["algorithm"], d["mode"]) for d in f["disparities"]}) > 1
    loud = [d for d in f["disparities"] if _above(d, policy_ratio)]
    for d in loud[:MAX_LISTED]:
        b.append(("li", _disparity(d, policy_ratio, several)))
    if len(loud) > MAX_LISTED:
        b.append(("li", f"And {len(loud) - MAX_LISTED} more attribute rates like these (the table below lists them"
                        " all)."))
    unsure = [d for d in f["disparities"] if d["verdict"] == "not_distinguishable" and not _above(d, policy_ratio)]
    below = [d for d in unsure if _estimate(d) is not None]
    if below:
        b.append(("li", f"Not distinguishable from the policy ratio {format_number(policy_ratio)} with the estimate at"
                        " or below it (too little evidence to call them within): " + _listed(
                            [f"{_where(d, several)}{d['attribute']} {d['rate_label']} {_ratio(d)}" for d in below])
                  + "."))
    unknown = [d for d in unsure if _estimate(d) is None]
    if unknown:
        b.append(("li", f"Not distinguishable from the policy ratio {format_number(policy_ratio)}, with no estimate of"
                        " the ratio: its lowest group has no observed error, so only a lower bound is known (too"
                        " little evidence to call them within): " + _listed(
                            [f"{_where(d, several)}{d['attribute']} {d['rate_label']} {_ratio(d)}" for d in unknown])
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
            [f"{_where(i, several)}{_who(i)} {i['rate_label']} {format_number(i['value'], DIGITS)}"
             f" [{format_number(i['low'], DIGITS)}, {format_number(i['high'], DIGITS)}] > {format_number(i['target'])}"
             for i in f["above_target"]]) + "."))
    rates = [i for i in f["insufficient"] if i["what"] == "rate"]
    verdicts = [i for i in f["insufficient"] if i["what"] != "rate"]
    if rates or verdicts:
        b.append(("li", " ".join(_too_little(f, rates, verdicts, several))))
    else:
        b.append(("li", "Too little evidence: nothing in this window; every rate of every group has at least"
                        f" {f['min_comparisons']} verified comparisons" +
                        (", bounds that decide its target" if any(f["targets"].values()) else "") +
                        ", and every attribute set a verdict."))
    if f["suppressed_groups"]:
        hidden = [d for d in f["disparities"] if d["verdict"] == SUPPRESSED]
        b.append(("li", f"{f['suppressed_groups']} groups suppressed (fewer than {doc['privacy']['min_group_size']}"
                        " verified outcomes), and the differentials of their attributes with them" +
                  (": " + _listed([f"{_where(d, several)}{d['attribute']} {d['rate_label']}" for d in hidden])
                   if hidden else "") + "."))
    if f["alerts"]:
        b.append(("li", f"Alerts open in the window ({len(f['alerts'])}): " + "; ".join(
            f"{a['type']} on {'all groups' if a['group'] == '*' else a['group']} {a['metric'].upper()}"
            f" ({a['severity']}), opened {a['opened_at']}, " +
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
                       " the plots of section 7; scores and thresholds per group in section 5, impostors by demographic pair in"
                       " section 6."))
    b.append(("pagebreak",))
    return b
