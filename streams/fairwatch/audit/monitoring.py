"""The post-market monitoring report (``fairwatch report --kind monitoring``): one section per
obligation a deployer or provider of remote biometric identification answers to (EU AI Act Arts.
12, 14(5), 26, 72 and 73; ISO/IEC 19795-10; docs/regulation.md maps each to its section).

Every number is read from the same store and computed by the same core as the other commands: the
per-group rates and differentials are the audit report's (:func:`fairwatch.audit.report.build_report`,
itself ``fairwatch metrics``), failure to acquire is ``fairwatch audit acquisition``'s, two-person
verification ``fairwatch audit two-person``'s. Each section says plainly when the window's data
cannot support a conclusion; the document is JSON-ready, the blocks are rendered to HTML and PDF by
:mod:`fairwatch.audit.report_render`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from fairwatch.audit.estimates import window_metrics
from fairwatch.audit.report import EmptyWindow, Report, build_report
from fairwatch.audit.report_evidence import evidence_section
from fairwatch.audit.window import Window
from fairwatch.contracts.records import format_timestamp
from fairwatch.core.acquisition import acquisition_estimates
from fairwatch.core.config import CoreConfig
from fairwatch.core.estimates import rate_labels
from fairwatch.core.two_person import two_person_compliance
from fairwatch.store.acquisitions import read_acquisition_counts, read_acquisition_moments
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.two_person import read_acted_verdicts, searched_deployments
from fairwatch.store.uses import read_uses, use_figures

__all__ = ["SECTIONS", "build_monitoring_report"]

# (key, title, the obligation it answers)
SECTIONS = (
    ("system", "System and versions", "Art. 72: the system monitored, its algorithms and thresholds"),
    ("period", "Period and uses", "Art. 12(3): the period of each use, the input that led to a match"),
    ("data", "Data collected and its verification design", "Art. 72(2): data collected on performance"),
    ("performance", "Per-group performance", "Art. 72, ISO/IEC 19795-10: error rates per group with uncertainty"),
    ("acquisition", "Failure to acquire", "ISO/IEC 19795-10: failure to acquire per group"),
    ("disparities", "Disparities against policy", "Art. 26(5), Art. 72: differentials against the policy"),
    ("incidents", "Incidents", "Art. 26(5), Art. 73: alerts raised and their course"),
    ("two_person", "Two-person verification", "Art. 14(5): acted-on identifications confirmed by two people"),
    ("changes", "Changes of algorithm or threshold", "Art. 72: performance before and after each change"),
    ("evidence", "Evidence checkpoint", "Art. 12, Art. 26(6): the logs the numbers were computed from"),
)
NOT_ENOUGH = "too little evidence to conclude"


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _interval(rate, low, high) -> str:
    return "-" if rate is None else f"{_number(rate)} [{_number(low)}, {_number(high)}]"


def _system(store: Store, window: Window, where: str, params: dict) -> dict[str, Any]:
    rows = store.query(
        "SELECT deployment, algorithm, toString(mode), threshold, count(), min(occurred_at), max(occurred_at)"
        " FROM match_events FINAL WHERE occurred_at >= %(start)s AND occurred_at < %(end)s" + where +
        " GROUP BY deployment, algorithm, mode, threshold ORDER BY deployment, min(occurred_at), algorithm, threshold",
        params)
    segments = [{"deployment": d, "algorithm": a, "mode": m, "threshold": t, "events": n,
                 "first": format_timestamp(first), "last": format_timestamp(last)}
                for d, a, m, t, n, first, last in rows]
    detectors = store.query(
        "SELECT deployment, algorithm, count() FROM acquisitions FINAL WHERE occurred_at >= %(start)s"
        " AND occurred_at < %(end)s" + where + " GROUP BY deployment, algorithm ORDER BY deployment, algorithm", params)
    return {"segments": segments,
            "acquisition_algorithms": [{"deployment": d, "algorithm": a, "attempts": n} for d, a, n in detectors]}


def _changes(store: Store, window: Window, config: CoreConfig, segments: list[dict]) -> list[dict]:
    """Consecutive (algorithm, threshold) segments of one deployment and mode, with the overall rates
    of each over its own span (whole buckets), and whether the intervals tell them apart."""
    changes = []
    by_scope: dict[tuple, list[dict]] = {}
    for s in segments:
        by_scope.setdefault((s["deployment"], s["mode"]), []).append(s)
    for (deployment, mode), runs in sorted(by_scope.items()):
        runs = sorted(runs, key=lambda s: s["first"])
        for before, after in zip(runs, runs[1:]):
            sides = [_segment_rates(store, config, deployment, mode, s) for s in (before, after)]
            compared = {}
            for rate in rate_labels(mode):
                b, a = sides[0].get(rate), sides[1].get(rate)
                if not b or not a or b["rate"] is None or a["rate"] is None:
                    verdict = f"{NOT_ENOUGH} (no verified outcome on one side)"
                elif a["low"] > b["high"]:
                    verdict = "higher after the change (the intervals do not overlap)"
                elif a["high"] < b["low"]:
                    verdict = "lower after the change (the intervals do not overlap)"
                else:
                    verdict = f"not distinguishable: {NOT_ENOUGH} of a change"
                compared[rate] = {"before": b, "after": a, "verdict": verdict}
            overlap = after["first"] <= before["last"]
            changes.append({"deployment": deployment, "mode": mode, "at": after["first"],
                            "from": {"algorithm": before["algorithm"], "threshold": before["threshold"]},
                            "to": {"algorithm": after["algorithm"], "threshold": after["threshold"]},
                            "overlapping": overlap, "rates": compared})
    return changes


def _segment_rates(store: Store, config: CoreConfig, deployment: str, mode: str, segment: dict) -> dict[str, dict]:
    start = _parse(segment["first"])
    end = _parse(segment["last"])
    width = config.bucket_seconds
    span = Window(datetime.fromtimestamp(int(start.timestamp()) // width * width, timezone.utc),
                  datetime.fromtimestamp((int(end.timestamp()) // width + 1) * width, timezone.utc))
    frame, _ = window_metrics(store, span, config, deployment, segment["algorithm"], with_labels=False,
                              with_reviews=False)
    overall = frame.overall.get((deployment, segment["algorithm"], mode))
    if overall is None:
        return {}
    labels = rate_labels(mode)
    return {label: {"rate": est.rate, "low": est.low, "high": est.high, "n": est.n}
            for label, est in zip(labels, (overall.fmr, overall.fnmr))}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


MAX_USES_LISTED = 200  # a longer window's uses are counted, and the first ones listed with their figures


def _uses(store: Store, window: Window, where: str, params: dict, deployment: str | None) -> dict[str, Any]:
    rows = store.query("SELECT uniqExactIf(use_id, use_id != ''), countIf(use_id != ''), count() FROM acquisitions"
                       " FINAL WHERE occurred_at >= %(start)s AND occurred_at < %(end)s" + where, params)
    named, keyed, attempts = rows[0] if rows else (0, 0, 0)
    uses = read_uses(store, window.start, window.end, deployment)
    listed = [{**u, **use_figures(store, u, window.end)} for u in uses[:MAX_USES_LISTED]]
    return {"uses": listed, "uses_in_window": len(uses), "uses_named_by_attempts": int(named),
            "attempts": int(attempts), "attempts_with_use": int(keyed)}


def _data(store: Store, where: str, params: dict, base: dict | None) -> dict[str, Any]:
    rows = store.query(
        "SELECT toString(mode), count(), countIf(length(candidate_ids) > 0) FROM match_events FINAL"
        " WHERE occurred_at >= %(start)s AND occurred_at < %(end)s" + where + " GROUP BY mode ORDER BY mode", params)
    verified = store.query(
        "SELECT toString(decision), count(), min(1 / weight), max(1 / weight) FROM labeled_outcomes FINAL"
        " WHERE bucket >= %(start)s AND bucket < %(end)s" + where + " GROUP BY decision ORDER BY decision", params)
    reviews = store.query("SELECT count() FROM independent_reviews FINAL WHERE verified_at >= %(start)s"
                          " AND verified_at < %(end)s", params)
    return {"events": [{"mode": m, "events": n, "with_candidate_lists": c} for m, n, c in rows],
            "verified": [{"decision": d, "verified": n, "inclusion_min": lo, "inclusion_max": hi}
                         for d, n, lo, hi in verified],
            "independent_reviews": int(reviews[0][0]) if reviews else 0,
            "labels": base["labels"] if base else None}


def build_monitoring_report(
    store: Store, window: Window, config: CoreConfig, *, deployment: str | None = None, algorithm: str | None = None,
    policy=None, label_maturity_seconds: int | None = None, evidence_origin: str | None = "fairwatch",
    now: datetime | None = None, progress: Callable[[str, int, int], None] = lambda what, done, total: None,
) -> Report:
    """The monitoring report of ``window`` (module docstring); never raises for an empty window:
    its sections say what is missing."""
    clock = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    where, params = scope_filter(deployment, algorithm)
    params.update(start=window.start, end=window.end)
    progress("audit report", 0, 1)
    try:
        base = build_report(store, window, config, deployment=deployment, algorithm=algorithm, policy=policy,
                            plots=False, label_maturity_seconds=label_maturity_seconds,
                            evidence_origin=evidence_origin, now=clock).document
    except EmptyWindow as exc:
        base, empty = None, str(exc)
    else:
        empty = None
    progress("system, uses, data", 0, 1)
    system = _system(store, window, where, params)
    deployments = sorted({s["deployment"] for s in system["segments"]}
                         | {a["deployment"] for a in system["acquisition_algorithms"]})
    document: dict[str, Any] = {
        "report": "fairwatch post-market monitoring report", "generated_at": format_timestamp(clock),
        "scope": {"window": window.to_dict(), "deployment": deployment, "algorithm": algorithm},
        "sections": [{"key": k, "title": t, "obligation": o} for k, t, o in SECTIONS],
        "system": system, "period": {"window": window.to_dict(), **_uses(store, window, where, params, deployment)},
        "data": _data(store, where, params, base)}
    performance = [g for g in (base or {}).get("groups", []) if "&" not in g["attribute"]]
    document["performance"] = {"groups": performance, "statement": empty or (
        "Every rate with its 95% interval; a status of insufficient says the evidence cannot show the rate"
        " within its target, never that it is.")}
    progress("failure to acquire", 0, 1)
    scope = (window.start, window.end, (), deployment, algorithm)
    counts = read_acquisition_counts(store, *scope)
    groups, differentials = acquisition_estimates(counts, config, read_acquisition_moments(store, *scope))
    ratios = [d.to_dict() for d in differentials if d.metric == "max_min_ratio"]
    document["acquisition"] = {
        "groups": [g.to_dict() for g in groups], "ratios": ratios,
        # the group with the highest rate, and whether the simultaneous intervals set it apart (low > 1)
        "highest": [{"deployment": r["deployment"], "algorithm": r["algorithm"], "attribute": r["attribute"],
                     "group": r["max_group"], "ratio": r["value"], "low": r["low"], "high": r["high"],
                     "status": r["status"], "distinguishable": r["status"] == "ok" and (r["low"] or 0) > 1}
                    for r in ratios if r["max_group"]],
        "statement": ("no acquisition attempt recorded in the window: failure to acquire cannot be judged"
                      if not groups else "per group, failures (no face, below the quality bar) over attempts,"
                      " exact intervals widened by the design effect of retries sharing a cluster_id")}
    document["disparities"] = {
        "differentials": [d for d in (base or {}).get("differentials", []) if d["metric"] == "max_min_ratio"],
        "policy_ratio": config.policy_ratio,
        "statement": empty or ("no policy ratio given: the ratios are shown, not judged" if config.policy_ratio is None
                               else f"judged against the policy's max/min ratio {config.policy_ratio}")}
    alerts = (base or {}).get("alerts", [])
    document["incidents"] = {"alerts": alerts, "statement": (
        f"{len(alerts)} incidents were open in the window; fairwatch records when each opened and resolved,"
        " what the operator did about it is recorded outside fairwatch" if alerts
        else "no incident was open in the window")}
    progress("two-person verification", 0, 1)
    searched = searched_deployments(store, window.start, window.end, deployment, algorithm)
    compliance = two_person_compliance(read_acted_verdicts(store, window.start, window.end, deployment, algorithm),
                                       searched)
    document["two_person"] = {
        "deployments": [{**c.to_dict(), "exceptions": [{"event_id": v.event_id, "verifiers": len(set(v.verifiers)),
                                                         "kind": v.kind} for v in c.exceptions]} for c in compliance],
        "statement": ("no identification search in the window: nothing to judge" if not searched else
                      "acted-on identifications and how many were confirmed by two distinct verifiers; a deployment"
                      " with no recorded action shows neither compliance nor its absence")}
    progress("changes", 0, 1)
    changes = _changes(store, window, config, system["segments"])
    document["changes"] = {"changes": changes, "statement": (
        "no change of algorithm or threshold in the window" if not changes else
        "each change with the overall rates of the segment before and after it")}
    document["evidence"] = (base or {}).get("evidence") or (
        evidence_section(store, deployments, evidence_origin, window, deployment, algorithm, config.bucket_seconds)
        if evidence_origin is not None and deployments else None)
    report = Report(document)
    report.blocks = monitoring_blocks(document)
    return report


def monitoring_blocks(document: dict[str, Any]) -> list[tuple]:
    """The report as blocks (h1/h2/p/li/table) for HTML and PDF."""
    w = document["scope"]["window"]
    blocks: list[tuple] = [("h1", "Post-market monitoring report"),
                           ("p", f"Window [{w['from']}, {w['to']}); generated {document['generated_at']}. "
                                 "One section per obligation; each says when the data cannot support a conclusion.")]
    titles = {k: (t, o) for k, t, o in SECTIONS}

    def section(key: str) -> None:
        title, obligation = titles[key]
        blocks.append(("h2", title))
        blocks.append(("p", f"Answers: {obligation}."))

    section("system")
    rows = [[s["deployment"], s["algorithm"], s["mode"], _number(s["threshold"]), str(s["events"]), s["first"], s["last"]]
            for s in document["system"]["segments"]]
    blocks.append(("table", ["deployment", "algorithm", "mode", "threshold", "events", "first", "last"], rows))
    if not rows:
        blocks.append(("p", "No match event in the window."))
    section("period")
    period = document["period"]
    if not period["uses_in_window"]:
        blocks.append(("p", "No use record ran in the window: this section cannot state the period, reference"
                            " database or operator of any use."))
    else:
        shown = len(period["uses"])
        blocks.append(("p", f"{period['uses_in_window']} uses ran in the window"
                            + (f" (the first {shown} listed)" if shown < period["uses_in_window"] else "") +
                            "; a use's events are its deployment's between its start and end."))
        rows = []
        for u in period["uses"]:
            tp = u["two_person"]
            rows.append([u["use_id"], u["deployment"], u["started_at"], u["ended_at"] or "running",
                         f"{u['reference_database']}" + (f" {u['reference_version']}" if u["reference_version"] else ""),
                         u["operator_role"] or "-", str(sum(u["events"].values())),
                         f"{tp['confirmed']} of {tp['acted']}" if tp["acted"] else "no action",
                         f"{u['acquisition_failures']} of {u['acquisition_attempts']}"])
        blocks.append(("table", ["use", "deployment", "start", "end", "reference database", "operator role",
                                 "events", "acted on, confirmed by two", "failed acquisitions"], rows))
    blocks.append(("p", f"{period['attempts_with_use']} of {period['attempts']} acquisition attempts name a use."))
    section("data")
    data = document["data"]
    for e in data["events"]:
        blocks.append(("li", f"{e['mode']}: {e['events']} events ({e['with_candidate_lists']} with candidate lists)"))
    for v in data["verified"]:
        blocks.append(("li", f"verified {v['decision']}: {v['verified']} (inclusion probability "
                             f"{_number(v['inclusion_min'])} to {_number(v['inclusion_max'])})"))
    blocks.append(("li", f"independent reviews: {data['independent_reviews']}"))
    section("performance")
    perf = document["performance"]
    blocks.append(("p", perf["statement"]))
    rows = []
    for g in perf["groups"]:
        first, second = rate_labels(g["mode"])
        rows.append([g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"],
                     _interval(g["fmr"], g["fmr_low"], g["fmr_high"]), _interval(g["fnmr"], g["fnmr_low"], g["fnmr_high"]),
                     g["status"], f"{first} / {second}"])
    if rows:
        blocks.append(("table", ["deployment", "algorithm", "mode", "attribute", "group", "false match rate",
                                 "false non-match rate", "status", "rates"], rows))
    section("acquisition")
    acq = document["acquisition"]
    blocks.append(("p", acq["statement"]))
    rows = [[g["deployment"], g["algorithm"], g["attribute"], g["group"], str(g["attempts"]), str(g["failures"]),
             _interval(g["fta"], g["fta_low"], g["fta_high"]),
             NOT_ENOUGH if g["fta_status"] == "insufficient" else g["fta_status"]] for g in acq["groups"]]
    if rows:
        blocks.append(("table", ["deployment", "algorithm", "attribute", "group", "attempts", "failures",
                                 "FTA [95% interval]", "status"], rows))
    for h in acq["highest"]:
        ratio = f"max/min ratio {_number(h['ratio'], 3)} [{_number(h['low'], 3)}, {_number(h['high'], 3)}]"
        where = f"{h['deployment']} {h['algorithm']} {h['attribute']}"
        if h["status"] == "insufficient":
            blocks.append(("li", f"{where}: {NOT_ENOUGH} ({ratio})"))
        elif h["distinguishable"]:
            blocks.append(("li", f"{where}: highest failure to acquire in group {h['group']}, set apart from the"
                                 f" lowest by the intervals; {ratio}"))
        else:
            blocks.append(("li", f"{where}: no group set apart by the intervals ({ratio}, highest {h['group']})"))
    section("disparities")
    disp = document["disparities"]
    blocks.append(("p", disp["statement"]))
    for d in disp["differentials"]:
        verdict = d.get("vs_policy") or (NOT_ENOUGH if d["status"] == "insufficient" else "not judged: no policy ratio")
        rate = dict(zip(("fmr", "fnmr"), rate_labels(d["mode"]))).get(d["rate"], d["rate"])
        blocks.append(("li", f"{d['deployment']} {d['algorithm']} {d['attribute']} {rate} max/min "
                             f"{_interval(d['value'], d['low'], d['high'])}: {verdict}"))
    section("incidents")
    inc = document["incidents"]
    blocks.append(("p", inc["statement"]))
    for a in inc["alerts"]:
        blocks.append(("li", f"{a['opened_at']}: {a['type']} {a['deployment']} {a['group']} {a['metric']}, "
                             f"{a['state']}{', resolved ' + a['resolved_at'] if a['resolved_at'] else ''}"))
    section("two_person")
    tp = document["two_person"]
    blocks.append(("p", tp["statement"]))
    for c in tp["deployments"]:
        share = "" if c["share"] is None else f", share {_interval(c['share'], c['share_low'], c['share_high'])}"
        blocks.append(("li", f"{c['deployment']}: {c['acted']} acted on, {c['confirmed']} confirmed by two, "
                             f"{c['single']} by one, {c['unrecorded']} with no verifier recorded{share}"))
        for x in c["exceptions"]:
            blocks.append(("li", f"not confirmed by two people: {c['deployment']} {x['event_id']} "
                                 f"({x['verifiers']} verifier{'s' if x['verifiers'] != 1 else ''})"))
    section("changes")
    ch = document["changes"]
    blocks.append(("p", ch["statement"]))
    for c in ch["changes"]:
        blocks.append(("li", f"{c['at']} {c['deployment']} {c['mode']}: {c['from']['algorithm']} at "
                             f"{_number(c['from']['threshold'])} -> {c['to']['algorithm']} at "
                             f"{_number(c['to']['threshold'])}" + (" (segments overlap in time)" if c["overlapping"] else "")))
        for rate, r in c["rates"].items():
            b, a = r["before"] or {}, r["after"] or {}
            blocks.append(("li", f"  {rate}: {_interval(b.get('rate'), b.get('low'), b.get('high'))} before, "
                                 f"{_interval(a.get('rate'), a.get('low'), a.get('high'))} after: {r['verdict']}"))
    section("evidence")
    evidence = document["evidence"]
    if evidence is None:
        blocks.append(("p", "No evidence origin given: the numbers are not bound to a signed checkpoint."))
    else:
        blocks.append(("p", evidence["statement"]))
        for log in evidence["logs"]:
            blocks.append(("li", f"{log['deployment']}: " + (
                f"checkpoint of {log['origin']} at tree size {log['tree_size']}" if log["sealed"] else log["statement"])))
    return blocks
