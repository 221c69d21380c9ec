"""The demo's results: the stored per-group rates and alerts of a run, set against the scenario's truth."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from fairwatch.contracts.records import format_timestamp, parse_timestamp
from fairwatch.core.config import CoreConfig
from fairwatch.core.layout import COLUMNS, GENUINE, IMPOSTOR

PLOT_STEP_SECONDS = 900  # the over-time plot: one point per 15 minutes of event time
# acquisition attempts come seconds before their event: their window opens this much earlier
ACQUISITION_LEAD = timedelta(hours=1)


SHOWN_DIFFERENTIALS = ("max_min_ratio", "max_geomean")
# a rate's name in the demo's rows: in identification the words are FPIR and FNIR
RATE_NAMES = {("verification", "fmr"): "fmr", ("verification", "fnmr"): "fnmr",
              ("identification", "fmr"): "fpir", ("identification", "fnmr"): "fnir"}
BASE_RATE = {"fmr": "fmr", "fnmr": "fnmr", "fpir": "fmr", "fnir": "fnmr"}


def truth_rows(truth: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    return {(r["segment"], r["deployment"], r["algorithm"], r["mode"], r["attribute"], r["label"]): r
            for r in truth["groups"]}


def per_group_results(store, truth: dict[str, Any], config: CoreConfig) -> tuple[list[dict], list[dict]]:
    """Per segment of the truth (before / after each drift): every group's rates with intervals,
    next to the true rate, and the differentials; both from :func:`fairwatch.audit.estimates.window_metrics`."""
    from fairwatch.audit.estimates import window_metrics
    from fairwatch.audit.window import Window

    targets = truth_rows(truth)
    groups, differentials = [], []
    for seg in truth["segments"]:
        window = Window(parse_time(seg["start"]), parse_time(seg["end"]))
        _, document = window_metrics(store, window, config)
        for g in document["groups"]:
            t = targets.get((seg["index"], g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"]))
            for metric, n_field, e_field in (("fmr", "impostor", "false_match"), ("fnmr", "genuine", "false_non_match")):
                true_rate = None if t is None else t[f"target_{metric}"]
                low, high = g[f"{metric}_low"], g[f"{metric}_high"]
                groups.append({
                    "segment": seg["index"], "window": window.to_dict(), "deployment": g["deployment"],
                    "algorithm": g["algorithm"], "mode": g["mode"], "attribute": g["attribute"], "group": g["group"],
                    "metric": RATE_NAMES.get((g["mode"], metric), metric), "n": g[n_field], "errors": g[e_field], "rate": g[metric], "low": low,
                    "high": high, "status": g[f"{metric}_status"] if f"{metric}_status" in g else g["status"],
                    "truth": true_rate,
                    "covered": None if true_rate is None or low is None else bool(low <= true_rate <= high),
                })
        for d in document["differentials"]:
            d = {**d, "rate": RATE_NAMES.get((d["mode"], d["rate"]), d["rate"])}
            differentials.append({"segment": seg["index"], **d, "truth": true_differential(targets, seg["index"], d)})
    return groups, differentials


def pair_results(store, truth: dict[str, Any], config: CoreConfig) -> list[dict]:
    """FMR (FPIR) by impostor pair over the whole run, per single attribute: the matrices of the
    report's section "Impostor pairs" (:mod:`fairwatch.core.impostor_pairs`), cells with intervals."""
    from fairwatch.audit.estimates import window_metrics
    from fairwatch.audit.window import Window
    from fairwatch.core.impostor_pairs import pair_matrices
    from fairwatch.store.impostor_pairs import read_pair_sums

    window = Window(parse_time(truth["start"]), parse_time(truth["end"]))
    frame, _ = window_metrics(store, window, config, with_labels=False, with_reviews=False)
    rows = read_pair_sums(store, window.start, window.end)
    return [m.to_dict() for m in pair_matrices(rows, config, frame.by_group)]


def true_differential(targets: dict[tuple, dict[str, Any]], segment: int, d: dict[str, Any]) -> float | None:
    """The differential the simulator's true rates give (max/min, max/geometric mean), or None
    where the truth has no rate for every group of the attribute (intersections, a zero rate)."""
    if d["metric"] not in SHOWN_DIFFERENTIALS or d["rate"] not in BASE_RATE:
        return None
    rates = [r[f"target_{BASE_RATE[d['rate']]}"] for (seg, dep, alg, mode, attribute, _), r in targets.items()
             if (seg, dep, alg, mode, attribute) == (segment, d["deployment"], d["algorithm"], d["mode"], d["attribute"])]
    if len(rates) < 2 or min(rates) <= 0:
        return None
    if d["metric"] == "max_min_ratio":
        return max(rates) / min(rates)
    return max(rates) / math.exp(sum(math.log(r) for r in rates) / len(rates))


def alert_results(store, truth: dict[str, Any]) -> list[dict[str, Any]]:
    from fairwatch.detect.reads import read_alerts

    out = []
    for a in read_alerts(store):
        verdict, drift = classify_alert(a.deployment, a.algorithm, a.group, a.metric, truth["drifts"])
        if a.type == "insufficient_evidence":  # "this group was not tested", not a claim that it drifted
            verdict, drift = "notice", None
        delay = None
        if drift is not None:
            delay = (a.opened_at - parse_time(drift["at"])).total_seconds()
        out.append({"id": a.id, "type": a.type, "severity": a.severity, "deployment": a.deployment,
                    "algorithm": a.algorithm, "group": a.group, "metric": a.metric, "state": a.state,
                    "opened_at": format_timestamp(a.opened_at),
                    "resolved_at": format_timestamp(a.resolved_at) if a.resolved_at else None,
                    "estimate": a.estimate, "low": a.low, "high": a.high, "baseline": a.baseline,
                    "verdict": verdict, "drift": drift["name"] if drift else None, "delay_seconds": delay})
    return sorted(out, key=lambda a: (a["opened_at"], a["group"], a["type"]))


def step_series(store, deployment: str, attributes: tuple[str, ...], start: datetime, end: datetime,
                config: CoreConfig, step: int = PLOT_STEP_SECONDS) -> dict[str, Any]:
    """FMR / FNMR per group per ``step`` of event time, with intervals (for the plots): verification
    only (identification searches have their own rates, FPIR and FNIR)."""
    from fairwatch.core.estimates import RateEstimator
    from fairwatch.core.groupframe import population_strata
    from fairwatch.store.group_counts import bucket_counts

    rows = bucket_counts(store, deployment, start, end, attributes, by_algorithm=True)
    n_steps = max(1, math.ceil((end - start).total_seconds() / step))
    acc: dict[tuple[str, str], np.ndarray] = {}
    for _algorithm, mode, attribute, label, bucket, *values in rows:
        if mode != "verification":
            continue
        i = min(n_steps - 1, int((bucket - start.timestamp()) // step))
        acc.setdefault((attribute, label), np.zeros((n_steps, len(COLUMNS))))[i] += values
    estimator = RateEstimator(config)
    series = {}
    for key, counts in sorted(acc.items()):
        entry = {}
        strata = population_strata(counts)
        for metric, block in (("fmr", IMPOSTOR), ("fnmr", GENUINE)):
            est = estimator.estimate(counts[:, block], None, *strata[metric])
            entry[metric] = [(e.rate, e.low, e.high) if e.n else (None, None, None) for e in est]
        series[key] = entry
    times = [start + timedelta(seconds=step * (i + 0.5)) for i in range(n_steps)]
    return {"times": times, "series": series}


def parse_time(text: str) -> datetime:
    return parse_timestamp(text, "time")


def _split_group(text: str) -> tuple[str, str]:
    return ("*", "*") if text == "*" else tuple(text.split("=", 1))  # type: ignore[return-value]


def classify_alert(deployment: str, algorithm: str, group: str, metric: str,
                   drifts: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """``("injected" | "affected" | "unaffected", drift)`` for an alert, from ``truth.json`` drifts.

    ``injected``: the drift's own group and metric; ``affected``: a group whose true rate the
    drift changed (it holds drifted subjects, e.g. sex=F when race=Black drifts); anything else
    is ``unaffected`` (a false alarm). A score-tail alert belongs to the FMR side (impostor scores).
    """
    attribute, label = _split_group(group)
    side = {"fmr": "fmr", "fpir": "fmr", "score": "fmr", "fnmr": "fnmr", "fnir": "fnmr"}.get(metric, metric)
    for drift in drifts:
        if drift.get("metric") != side:
            continue
        own = drift.get("group") or {}
        if len(own) == 1 and own.get(attribute) == label:
            return "injected", drift
        for e in drift.get("effects", []):
            if (e["deployment"], e["algorithm"], e["attribute"], e["label"]) == (deployment, algorithm, attribute, label) \
                    and abs(e["ratio"] - 1) > 1e-9:
                return "affected", drift
    return "unaffected", None


def disparity_statements(result: dict[str, Any]) -> list[str]:
    """For each attribute and rate whose true max/min ratio is above the policy's in a segment: the
    truth, the estimate with its interval, what that interval can tell, and whether a disparity
    alert was raised; the words say "cannot tell" when the interval holds the policy ratio."""
    ratio = result.get("policy_ratio")
    if ratio is None:
        return []
    names = {s["index"]: ("before the drift" if s["index"] == 0 else "after the drift")
             for s in result["truth"]["segments"]}
    raised = {(a["group"].split("=")[0], a["metric"]) for a in result["alerts"] if a["type"] == "disparity_breach"}
    lines = []
    for d in result["differentials"]:
        if d["metric"] != "max_min_ratio" or d.get("truth") is None or d["truth"] <= ratio:
            continue
        if d["low"] is not None and d["low"] > ratio:
            verdict = "the interval shows it"
        elif d["high"] is None or d["high"] >= ratio:
            verdict = f"this much data cannot tell (the interval holds {ratio:g})"
        else:
            verdict = "the interval is below it: a miss"
        high = "no upper bound" if d["high"] is None else f"{d['high']:.3g}"
        alert = ("a disparity alert was raised" if (d["attribute"], d["rate"]) in raised
                 else "no disparity alert was raised")
        lines.append(f"{d['attribute']} {d['rate'].upper()} max/min is truly {d['truth']:.3g}x "
                     f"{names.get(d['segment'], 'in segment ' + str(d['segment']))}, above the policy ratio "
                     f"{ratio:g}: estimated {d['value']:.3g} [{d['low']:.3g}, {high}], {verdict}; {alert}.")
    return lines


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def acquisition_results(store, truth: dict[str, Any], config: CoreConfig, present: bool = True) -> dict | None:
    """Failure to acquire per group over the whole run, from the store's attempts through
    :func:`fairwatch.core.acquisition.acquisition_estimates`, next to the true FTA (``truth.json``);
    per attribute its max/min ratio with the highest and lowest group, and whether the interval
    shows a difference (its lower end above 1). None when the scenario has no acquisition block."""
    if not present:
        return None
    from fairwatch.core.acquisition import acquisition_estimates
    from fairwatch.store.acquisitions import read_acquisition_counts, read_acquisition_moments

    start, end = parse_time(truth["start"]) - ACQUISITION_LEAD, parse_time(truth["end"])
    counts = read_acquisition_counts(store, start, end)
    groups, differentials = acquisition_estimates(counts, config, read_acquisition_moments(store, start, end))
    true = {(r["attribute"], r["group"]): r["fta"] for r in truth.get("acquisition", [])}
    rows = []
    for g in groups:
        d = {k: _finite(v) for k, v in g.to_dict().items()}
        t = true.get((d["attribute"], d["group"]))
        covered = None if t is None or d["fta_low"] is None else bool(d["fta_low"] <= t <= d["fta_high"])
        rows.append({**d, "truth": t, "covered": covered})
    by_group = {(r["attribute"], r["group"]): r for r in rows}
    ratios = []
    for diff in differentials:
        if diff.metric != "max_min_ratio" or diff.value is None:
            continue
        attribute = diff.scope.attribute
        ratios.append({"attribute": attribute, "highest": diff.max_group, "lowest": diff.min_group,
                       "fta": by_group[(attribute, diff.max_group)]["fta"],
                       "ratio": _finite(diff.value), "low": _finite(diff.low), "high": _finite(diff.high),
                       "shown": diff.low is not None and diff.low > 1})
    return {"window": {"from": format_timestamp(start), "to": format_timestamp(end)}, "groups": rows,
            "ratios": ratios, "differentials": [{k: _finite(v) for k, v in d.to_dict().items()} for d in differentials]}


def two_person_results(store, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Per deployment with identification searches in the run: its acted-on identifications, how
    many two distinct verifiers confirmed, and every exception (:mod:`fairwatch.core.two_person`)."""
    from fairwatch.core.two_person import two_person_compliance
    from fairwatch.store.two_person import read_acted_verdicts, searched_deployments

    start, end = parse_time(truth["start"]), parse_time(truth["end"])
    acted = read_acted_verdicts(store, start, end)
    return [c.to_dict() for c in two_person_compliance(acted, searched_deployments(store, start, end))]


def acquisition_statements(acquisition: dict[str, Any] | None) -> list[str]:
    """Per attribute, the group with the highest FTA and its max/min ratio, and what the interval shows."""
    lines = []
    for r in (acquisition or {}).get("ratios", []):
        low = "-" if r["low"] is None else f"{r['low']:.3g}"
        high = "no upper bound" if r["high"] is None else f"{r['high']:.3g}"
        interval = f"{r['ratio']:.3g}x [{low}, {high}]"
        if r["shown"]:
            lines.append(f"Failure to acquire by {r['attribute']}: highest {r['attribute']}={r['highest']} "
                         f"(FTA {r['fta']:.3g}); max/min {interval} (lowest {r['attribute']}={r['lowest']}).")
        else:
            lines.append(f"Failure to acquire by {r['attribute']}: max/min {interval}: the interval holds 1, "
                         "no difference shown.")
    return lines


def two_person_statements(two_person: list[dict[str, Any]]) -> list[str]:
    """Per deployment: acted-on identifications, confirmed by two, and the exceptions by event id."""
    lines = []
    for c in two_person:
        if c["status"] == "no_actions":
            lines.append(f"{c['deployment']}: no acted-on identification recorded, nothing to judge.")
            continue
        lines.append(f"{c['deployment']}: {c['acted']} identifications acted on, {c['confirmed']} confirmed by two "
                     f"verifiers (share {c['share']:.3f} [{c['share_low']:.3f}, {c['share_high']:.3f}]), "
                     f"{c['single']} by one only, {c['unrecorded']} without verifiers recorded.")
        for v in c["exceptions"]:
            who = ", ".join(v["verifiers"]) or "no verifier recorded"
            lines.append(f"  not confirmed by two people: {v['event_id']} ({v['truth']}; {who})")
    return lines
