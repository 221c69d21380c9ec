"""Audit reports over any past window: the numbers `fairwatch metrics` gives, how they were made,
where they came from, and what left the system.

The per-group table and the differentials are the document of :func:`fairwatch.audit.estimates.window_metrics`
(the code behind ``fairwatch metrics --json``), so the report and the command agree exactly; the
report adds provenance, the alert history, plots, methods and a reproducibility section, and
applies the export rules: a group with fewer than ``min_group_size`` verified outcomes is shown as
``suppressed`` (never as zero), and no event id, reviewer id or other identifier is exported.

One :class:`Report` (JSON-ready ``document`` + a list of blocks with figures) renders to JSON,
CSV, HTML and PDF; HTML and PDF walk the same blocks, so they carry the same content.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import html
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from fairwatch import __version__
from fairwatch.audit.window import Window
from fairwatch.audit.estimates import DIFFERENTIAL_FIELDS, GROUP_FIELDS, window_metrics
from fairwatch.store.group_counts import scope_filter
from fairwatch.contracts.records import format_timestamp
from fairwatch.core.config import CoreConfig
from fairwatch.store.clickhouse import Store, bind, open_store

FORMATS = ("html", "pdf", "json", "csv")
SUPPRESSED = "suppressed"
DEFAULT_MIN_GROUP_SIZE = 10
MAX_STEPS = 24  # points of the over-time plots
MAX_FIGURES = 24
PNG_DPI = 120  # 7.2 in wide: about 110 dpi across an A4 page, legible at 8 pt
PLOT_BOOTSTRAP_DRAWS = 400  # differentials over time are for the eye; the tables use the config's draws
DELAY_EDGES_H = (0, 1, 6, 24, 72, 168, 720)
NUMBER_FIELDS = tuple(f for f in GROUP_FIELDS if f not in ("deployment", "algorithm", "mode", "attribute", "group",
                                                           "status"))


POLICY_THRESHOLDS = ("target_fmr", "target_fnmr", "policy_ratio", "reference", "band", "baseline_confidence",
                     "min_evidence", "false_alarms_per_day")


class EmptyWindow(ValueError):
    """The window holds no verified outcome for the scope asked: there is nothing to report."""


def open_for_reading(url: str | None) -> Store:
    """Open a store without creating anything, so a read-only user (the auditor) can report."""
    from fairwatch.store.clickhouse import ServerStore

    if url and urlparse(url).scheme == "clickhouse":
        return ServerStore(url, create_database=False)
    return open_store(url)


class _Recorder:
    """Passes queries to a store and keeps their bound SQL: the report quotes the query it ran."""

    def __init__(self, store: Store):
        self.store, self.sql = store, []

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        self.sql.append(bind(sql, params))
        return self.store.query(sql, params)


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def metrics_stdout(document: dict) -> str:
    """Exactly what ``fairwatch metrics --json`` prints for a document (its hash is the report's)."""
    return json.dumps(document, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------ the document


@dataclass
class Report:
    document: dict[str, Any]
    blocks: list[tuple] = field(default_factory=list)  # ("h1"|"h2"|"p", text) | ("table", head, rows) | ("img", png, caption)


def _suppress(groups: list[dict], min_group_size: int) -> tuple[list[dict], set[tuple]]:
    """Rows with fewer than ``min_group_size`` verified outcomes lose their numbers; returns their keys."""
    out, hidden = [], set()
    for g in groups:
        if g["impostor"] + g["genuine"] < min_group_size:
            hidden.add((g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"]))
            g = {**g, **{f: None for f in NUMBER_FIELDS}, "status": SUPPRESSED}
        out.append(g)
    return out, hidden


def _provenance(store: Store, window: Window, deployment: str | None, algorithm: str | None,
                attribute: str | None, min_group_size: int) -> dict[str, Any]:
    where, params = scope_filter(deployment, algorithm)
    params.update(start=window.start, end=window.end)
    (events,), = store.query(
        f"SELECT count() FROM match_events FINAL WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}",
        params)
    (labeled, weighted), = store.query(
        "SELECT count(), sum(weight) FROM labeled_outcomes FINAL"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}", params)
    # coverage per single attribute: events of the window that have a verified outcome
    attr = " AND attribute = %(attribute)s" if attribute else ""
    if attribute:
        params["attribute"] = attribute
    event_groups = {
        (d, m, a, g): n for d, m, a, g, n in store.query(
            "SELECT deployment, toString(mode), attribute, group_label, count() FROM match_events FINAL"
            " ARRAY JOIN subject_keys AS attribute, subject_values AS group_label"
            f" WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}{attr}"
            " GROUP BY deployment, mode, attribute, group_label", params)
    }
    labeled_groups = {
        (d, m, a, g): n for d, m, a, g, n in store.query(
            "SELECT deployment, toString(mode), attribute, group_label, count() FROM labeled_outcomes FINAL"
            " ARRAY JOIN subject_keys AS attribute, subject_values AS group_label"
            f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}{attr}"
            " GROUP BY deployment, mode, attribute, group_label", params)
    }
    coverage = []
    for key in sorted(set(event_groups) | set(labeled_groups)):
        n_events, n_labeled = event_groups.get(key, 0), labeled_groups.get(key, 0)
        row = dict(zip(("deployment", "mode", "attribute", "group"), key), events=n_events, verified=n_labeled,
                   coverage=n_labeled / n_events if n_events else None)
        if n_labeled < min_group_size:
            row.update(events=None, verified=None, coverage=None, status=SUPPRESSED)
        else:
            row["status"] = "ok"
        coverage.append(row)
    # label delay: verified_at of the revision that counts minus occurred_at, in hours
    bins = ", ".join(
        f"sum(delay >= {lo * 3600} AND delay < {hi * 3600})" for lo, hi in zip(DELAY_EDGES_H, DELAY_EDGES_H[1:]))
    delay_rows = store.query(
        f"SELECT count(), sum(delay < 0), {bins}, sum(delay >= {DELAY_EDGES_H[-1] * 3600}),"
        " quantiles(0.5, 0.9, 0.99)(delay), max(delay) FROM ("
        " SELECT toInt64(verified_at) - toInt64(occurred_at) AS delay FROM labeled_outcomes FINAL"
        " ANY INNER JOIN (SELECT event_id, revision, verified_at FROM verified_outcomes FINAL) AS v"
        f" USING (event_id, revision) WHERE bucket >= %(start)s AND bucket < %(end)s{where})", params)
    n, negative, *histogram = delay_rows[0]
    quantiles, longest = histogram[-2], histogram[-1]
    histogram = histogram[:-2]
    labels = ["< 0 h"] + [f"{lo}-{hi} h" for lo, hi in zip(DELAY_EDGES_H, DELAY_EDGES_H[1:])] + [
        f">= {DELAY_EDGES_H[-1]} h"]
    delay = {
        "outcomes": int(n),
        "p50_hours": quantiles[0] / 3600 if n else None,
        "p90_hours": quantiles[1] / 3600 if n else None,
        "p99_hours": quantiles[2] / 3600 if n else None,
        "max_hours": longest / 3600 if n else None,
        "histogram": [{"bin": label, "outcomes": int(c)} for label, c in zip(labels, [negative, *histogram])],
    }
    dead = [{"reason_code": code, "messages": int(c)} for code, c in store.query(
        "SELECT reason_code, count() FROM dead_letters FINAL WHERE rejected_at >= %(start)s"
        " AND rejected_at < %(end)s GROUP BY reason_code ORDER BY reason_code", params)]
    return {"events": int(events), "verified_outcomes": int(labeled), "weighted_outcomes": float(weighted or 0.0),
            "coverage_by_group": coverage, "label_delay": delay, "dead_letters_by_reason": dead}


ALERT_FIELDS = ("type", "severity", "deployment", "algorithm", "group", "metric", "value", "low", "high", "baseline",
                "detector", "state", "opened_at", "resolved_at")


def _alerts(store: Store, window: Window, deployment: str | None, algorithm: str | None,
            hidden: set[tuple]) -> list[dict]:
    """Alerts open at any time in the window; no alert ids or links leave the system."""
    where, params = scope_filter(deployment, algorithm)
    rows = store.query(
        "SELECT toString(type), toString(severity), deployment, algorithm, group_label, metric, value_estimate,"
        " value_low, value_high, baseline, detector, toString(state), opened_at, resolved_at FROM alerts FINAL"
        " WHERE opened_at < %(end)s AND (resolved_at IS NULL OR resolved_at >= %(start)s)" + where +
        " ORDER BY opened_at, deployment, algorithm, group_label, metric",
        dict(params, start=window.start, end=window.end))
    small = {(d, g) for d, _, _, _, g in hidden}
    alerts = []
    for row in rows:
        alert = dict(zip(ALERT_FIELDS, row))
        for name in ("opened_at", "resolved_at"):
            alert[name] = format_timestamp(alert[name]) if alert[name] else None
        if (alert["deployment"], alert["group"]) in small:
            alert.update(value=None, low=None, high=None, baseline=None, state=f"{alert['state']} ({SUPPRESSED})")
        alerts.append(alert)
    return alerts


def _steps(window: Window, bucket_seconds: int, max_steps: int = MAX_STEPS) -> list[Window]:
    buckets = int((window.end - window.start).total_seconds()) // bucket_seconds
    per_step = max(1, math.ceil(buckets / max_steps))
    width = timedelta(seconds=per_step * bucket_seconds)
    steps, start = [], window.start
    while start < window.end:
        steps.append(Window(start, min(start + width, window.end)))
        start += width
    return steps


def build_report(
    store: Store,
    window: Window,
    config: CoreConfig,
    *,
    deployment: str | None = None,
    algorithm: str | None = None,
    attribute: str | None = None,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    policy: Path | None = None,
    requested: dict[str, str] | None = None,
    progress: Callable[[str, int, int], None] = lambda what, done, total: None,
    now: datetime | None = None,
    plots: bool = True,
) -> Report:
    """Read everything a report of ``window`` needs and build it (see the module docstring).

    Parameters
    ----------
    store
        Any store; only SELECTs are run, so a read-only user will do (:func:`open_for_reading`).
    window
        Whole buckets, as :func:`fairwatch.audit.window.resolve_window` gives them.
    config
        Targets, ``min_comparisons``, confidence, bootstrap: as for ``fairwatch metrics``.
    deployment, algorithm, attribute
        Narrow the scope; ``attribute`` keeps that attribute's groups and the overall rows.
    min_group_size
        Groups with fewer verified outcomes are exported as ``suppressed`` (0: no suppression).
    policy
        A policy file (:mod:`fairwatch.detect.policy`): its path, SHA-256 and thresholds are reported.
    progress
        ``progress(what, done, total)``, called as the long parts go.
    plots
        False skips the figures (JSON and CSV do not carry them).

    Raises :class:`EmptyWindow` when the window holds no verified outcome for the scope. The
    tests (``tests/test_report.py``) check the numbers against ``fairwatch metrics`` and a recount.
    """
    if min_group_size < 0:
        raise ValueError(f"min_group_size must be >= 0, got {min_group_size}")
    recorder = _Recorder(store)
    progress("per-group estimates", 0, 1)
    frame, metrics_doc = window_metrics(recorder, window, config, deployment, algorithm)
    scope = {"deployment": deployment, "algorithm": algorithm, "attribute": attribute}
    described = ", ".join(f"{k} {v}" for k, v in scope.items() if v) or "all deployments"
    w = window.to_dict()
    if not metrics_doc["groups"]:
        raise EmptyWindow(f"no verified outcomes in [{w['from']}, {w['to']}) for {described}: nothing to report")
    if attribute and not any(g["attribute"] == attribute for g in metrics_doc["groups"]):
        known = sorted({g["attribute"] for g in metrics_doc["groups"]} - {"*"})
        raise EmptyWindow(f"no group of attribute {attribute!r} in [{w['from']}, {w['to']});"
                          f" attributes with data: {', '.join(known)}")
    groups = [g for g in metrics_doc["groups"] if g["attribute"] in ("*", attribute or g["attribute"])]
    differentials = [d for d in metrics_doc["differentials"] if attribute in (None, d["attribute"])]
    groups, hidden = _suppress(groups, min_group_size)
    hidden_sets = {(d, a, m, attr) for d, a, m, attr, _ in hidden}
    differentials = [
        {**d, "value": None, "low": None, "high": None, "status": SUPPRESSED}
        if (d["deployment"], d["algorithm"], d["mode"], d["attribute"]) in hidden_sets else d
        for d in differentials
    ]
    progress("provenance", 0, 1)
    provenance = _provenance(store, window, deployment, algorithm, attribute, min_group_size)
    alerts = _alerts(store, window, deployment, algorithm, hidden)
    policy_info = None
    if policy is not None:
        from fairwatch.detect.policy import load_policy

        raw = Path(policy).read_bytes()
        loaded = load_policy(policy)  # a PolicyError (a ValueError) says which line is wrong
        policy_info = {"path": str(policy), "sha256": _sha256(raw), "deployment": loaded.deployment,
                       **{name: getattr(loaded, name) for name in POLICY_THRESHOLDS}}
    stdout = metrics_stdout(metrics_doc)
    command = ["fairwatch", "metrics", "--from", window.to_dict()["from"], "--to", window.to_dict()["to"]]
    for name, value in (("--deployment", deployment), ("--algorithm", algorithm),
                        ("--target-fmr", config.target_fmr), ("--target-fnmr", config.target_fnmr)):
        if value is not None:
            command += [name, str(value)]
    command += ["--min-comparisons", str(config.min_comparisons), "--bucket-seconds", str(config.bucket_seconds),
                "--json"]
    exported = {"window": metrics_doc["window"], "groups": groups, "differentials": differentials}
    document = {
        "report": "fairwatch audit report",
        "generated_at": format_timestamp((now or datetime.now(timezone.utc)).replace(microsecond=0)),
        "scope": {"window": metrics_doc["window"], "requested": requested or metrics_doc["window"], **scope},
        "provenance": provenance,
        "groups": groups,
        "differentials": differentials,
        "alerts": alerts,
        "privacy": {"min_group_size": min_group_size, "suppressed_groups": len(hidden),
                    "rule": f"groups with fewer than {min_group_size} verified outcomes are shown as '{SUPPRESSED}';"
                            " a differential of an attribute set with a suppressed group is suppressed too;"
                            " no event, reviewer or alert identifiers are exported"},
        "methods": _methods(config, policy_info, store),
        "reproducibility": {
            "command": " ".join(command),
            "sql": recorder.sql,
            "metrics_sha256": _sha256(stdout),
            "metrics_sha256_of": "the exact stdout of the command above (fairwatch metrics --json)",
            "exported_sha256": _sha256(json.dumps(exported, sort_keys=True, allow_nan=False)),
        },
    }
    report = Report(document)
    figures = _figures(store, window, config, deployment, algorithm, attribute, frame, groups, min_group_size,
                       progress) if plots else []
    report.blocks = _blocks(document, figures)
    return report


def _methods(config: CoreConfig, policy: dict | None, store: Store) -> dict[str, Any]:
    level = f"{config.confidence:.0%}"
    return {
        "definitions": {
            "FMR": "false matches / impostor comparisons (impostor truth, decision match); FPIR in identification",
            "FNMR": "false non-matches / genuine comparisons (genuine truth, decision non_match); FNIR in"
                    " identification",
            "weighting": "each verified outcome weighs 1 / inclusion_prob (inverse probability of verification)",
            "time": "event time: an outcome counts in the bucket of its event's occurred_at, whenever it was"
                    " verified; the latest revision of an outcome replaces earlier ones",
            "window": f"whole buckets of {config.bucket_seconds} s covering the requested window",
        },
        "intervals": {
            "groups": f"{level} Clopper-Pearson on effective counts (Kish) when weighted",
            "differentials": f"{level} percentile interval of {config.bootstrap_draws} parametric bootstrap draws"
                             f" from each group's Jeffreys posterior, seed {config.seed}",
            "plots_over_time": f"differentials over time use {PLOT_BOOTSTRAP_DRAWS} draws (display only)",
        },
        "thresholds": {"target_fmr": config.target_fmr, "target_fnmr": config.target_fnmr,
                       "min_comparisons": config.min_comparisons, "confidence": config.confidence,
                       "fdr_alpha": config.fdr_alpha, "ir_alpha": config.ir_alpha, "garbe_alpha": config.garbe_alpha},
        "status": "insufficient below min_comparisons or when the interval cannot decide against the target;"
                  " above_target when the interval lies above the declared target",
        "policy": policy,
        "fairwatch_version": __version__,
        "server_version": ".".join(map(str, store.server_version())),
    }


# ----------------------------------------------------------------------------------- figures


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _time_axis(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)


def _figures(store, window, config, deployment, algorithm, attribute, frame, groups, min_group_size,
             progress) -> list[tuple[bytes, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7})
    steps = _steps(window, config.bucket_seconds)
    plot_config = dataclasses.replace(config, bootstrap_draws=PLOT_BOOTSTRAP_DRAWS)
    series = []  # per step: metrics document
    for i, step in enumerate(steps):
        progress("plots over time", i, len(steps))
        series.append(window_metrics(store, step, plot_config, deployment, algorithm)[1])
    progress("plots over time", len(steps), len(steps))
    mids = [s.start + (s.end - s.start) / 2 for s in steps]
    scopes = sorted({(g["deployment"], g["algorithm"], g["mode"], g["attribute"]) for g in groups
                     if g["attribute"] != "*"})
    figures: list[tuple[bytes, str]] = []
    for scope in scopes[:MAX_FIGURES]:
        fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.6), sharex=True, layout="constrained")
        labels = sorted({g["group"] for g in groups if (g["deployment"], g["algorithm"], g["mode"],
                                                        g["attribute"]) == scope})
        for label in labels:
            for ax, rate in zip(axes, ("fmr", "fnmr")):
                xs, ys, lo, hi = [], [], [], []
                for mid, doc in zip(mids, series):
                    for g in doc["groups"]:
                        if (g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"]) == (*scope, label):
                            if g["impostor"] + g["genuine"] >= min_group_size and g[rate] is not None:
                                xs.append(mid), ys.append(g[rate]), lo.append(g[f"{rate}_low"]), hi.append(
                                    g[f"{rate}_high"])
                line, = ax.plot(xs, ys, marker=".", label=label)
                ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
        for ax, rate in zip(axes, ("FMR", "FNMR")):
            ax.set_title(f"{rate} by {scope[3]}")
            ax.set_ylabel(rate)
            _time_axis(ax)
        axes[1].legend(loc="upper right", frameon=False)
        fig.suptitle(f"{scope[0]} / {scope[1]} / {scope[2]}", fontsize=9)
        figures.append((_png(fig), f"Per-group FMR and FNMR over the window ({scope[0]}, {scope[1]}, {scope[2]},"
                                   f" {scope[3]}), {config.confidence:.0%} interval bands; points of a step with"
                                   f" fewer than {min_group_size} verified outcomes are not drawn."))
    # realized vs intended FMR, per deployment x algorithm x mode
    for key in sorted({s[:3] for s in scopes})[:MAX_FIGURES]:
        shown = [g for g in groups if tuple(g[f] for f in ("deployment", "algorithm", "mode")) == key
                 and g["status"] != SUPPRESSED and g["fmr"] is not None]
        if not shown:
            continue
        fig, ax = plt.subplots(figsize=(7.2, 0.8 + 0.22 * len(shown)), layout="constrained")
        names = ["all" if g["attribute"] == "*" else f"{g['attribute']}={g['group']}" for g in shown]
        ys = range(len(shown))
        ax.errorbar([g["fmr"] for g in shown], ys,
                    xerr=[[g["fmr"] - g["fmr_low"] for g in shown], [g["fmr_high"] - g["fmr"] for g in shown]],
                    fmt="o", markersize=3, capsize=2, label="realized FMR")
        if config.target_fmr is not None:
            ax.axvline(config.target_fmr, color="red", linestyle="--", label=f"intended FMR {config.target_fmr:g}")
        else:
            ax.set_title("no intended FMR declared (--target-fmr or the policy)", fontsize=8)
        ax.set_yticks(list(ys), names)
        ax.invert_yaxis()
        ax.set_xlabel("FMR")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", frameon=False)
        fig.suptitle(f"Realized vs intended FMR: {key[0]} / {key[1]} / {key[2]}", fontsize=9)
        figures.append((_png(fig), f"Realized FMR per group over the whole window with {config.confidence:.0%}"
                                   " intervals against the intended FMR."))
    # differentials over time: FDR (1 = fair) and max/min FMR ratio per attribute
    hidden_sets = {(d["deployment"], d["algorithm"], d["mode"], d["attribute"])
                   for d in groups if d["status"] == SUPPRESSED}
    for key in sorted({s[:3] for s in scopes})[:MAX_FIGURES]:
        fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.6), sharex=True, layout="constrained")
        attributes = sorted({s[3] for s in scopes if s[:3] == key})
        drawn = [False, False]
        for attr in attributes:
            if (*key, attr) in hidden_sets:
                continue
            for ax, (metric, rate) in zip(axes, (("fdr", "combined"), ("max_min_ratio", "fmr"))):
                xs, ys, lo, hi = [], [], [], []
                for mid, doc in zip(mids, series):
                    for d in doc["differentials"]:
                        if (d["deployment"], d["algorithm"], d["mode"], d["attribute"], d["metric"]) == (
                                *key, attr, metric) and d["rate"] == rate and d["value"] is not None:
                            xs.append(mid), ys.append(d["value"]), lo.append(d["low"]), hi.append(d["high"])
                line, = ax.plot(xs, ys, marker=".", label=attr)
                ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
                drawn[ax is axes[1]] |= bool(xs)
        if not any(drawn):  # every attribute set suppressed or without a value
            plt.close(fig)
            continue
        axes[0].set_title("FDR (1 = fair)")
        axes[1].set_title("max/min FMR ratio (1 = equal)")
        if drawn[1]:
            axes[1].set_yscale("log")
        for ax in axes:
            _time_axis(ax)
        axes[1].legend(loc="upper right", frameon=False)
        fig.suptitle(f"Differentials over time: {key[0]} / {key[1]} / {key[2]}", fontsize=9)
        figures.append((_png(fig), "Differentials across the groups of each attribute over the window, with"
                                   " bootstrap interval bands; suppressed attribute sets are not drawn."))
    return figures


# ------------------------------------------------------------------------------------ blocks


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


def _blocks(doc: dict, figures: list[tuple[bytes, str]]) -> list[tuple]:
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
    b.append(("table", ["deployment", "algorithm", "mode", "attribute", "group", "impostor", "FM", "FMR [CI]",
                        "genuine", "FNM", "FNMR [CI]", "status"], [
        [g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"], format_number(g["impostor"]),
         format_number(g["false_match"]), _interval(g, "fmr"), format_number(g["genuine"]), format_number(g["false_non_match"]),
         _interval(g, "fnmr"), g["status"]] for g in doc["groups"]]))
    b.append(("p", doc["privacy"]["rule"].capitalize() + f"; {doc['privacy']['suppressed_groups']} suppressed."))
    b.append(("h2", "3. Differentials"))
    b.append(("table", ["deployment", "algorithm", "mode", "attribute", "metric", "rate", "value [CI]", "status"], [
        [d["deployment"], d["algorithm"], d["mode"], d["attribute"], d["metric"], d["rate"], _interval(d, "value"),
         d["status"]] for d in doc["differentials"]]))
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
        b.append(("p", "No alert was open in the window."))
    b.append(("h2", "6. Methods"))
    b.append(("table", ["term", "definition"], [[k, v] for k, v in methods["definitions"].items()]))
    b.append(("table", ["intervals", "method"], [[k, v] for k, v in methods["intervals"].items()]))
    b.append(("table", ["threshold", "value"], [[k, format_number(v)] for k, v in methods["thresholds"].items()]))
    b.append(("p", "Status: " + methods["status"] + "."))
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


# --------------------------------------------------------------------------------- renderers


def to_json(report: Report) -> str:
    return json.dumps(report.document, indent=1, allow_nan=False) + "\n"


CSV_FIELDS = ("section", *GROUP_FIELDS, *(f for f in DIFFERENTIAL_FIELDS if f not in GROUP_FIELDS),
              "window_from", "window_to", "metrics_sha256")


def to_csv(report: Report) -> str:
    """The per-group rows then the differential rows, one header, a ``section`` column."""
    doc = report.document
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    common = {"window_from": doc["scope"]["window"]["from"], "window_to": doc["scope"]["window"]["to"],
              "metrics_sha256": doc["reproducibility"]["metrics_sha256"]}
    for g in doc["groups"]:
        writer.writerow({"section": "group", **{f: g[f] for f in GROUP_FIELDS}, **common})
    for d in doc["differentials"]:
        writer.writerow({"section": "differential", **{f: d[f] for f in DIFFERENTIAL_FIELDS}, **common})
    return out.getvalue()


_CSS = """body{font-family:sans-serif;font-size:12px;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}
th{background:#eee}pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;word-break:break-all}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:11px;color:#555}"""


def to_html(report: Report) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>fairwatch audit report</title>", f"<style>{_CSS}</style></head><body>"]
    for block in report.blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(block[1])}</p>")
        elif kind == "code":
            parts.append(f"<pre>{e(block[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in block[1]) if any(block[1]) else ""
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in block[2])
            parts.append(f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(block[1]).decode()
            parts.append(f'<figure><img alt="{e(block[2])}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(block[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def to_pdf(report: Report) -> bytes:
    """A4 PDF of the same blocks as the HTML (fpdf2, with matplotlib's DejaVu fonts for any label)."""
    import matplotlib
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.add_font("dejavu", "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font("dejavu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.add_font("dejavumono", "", str(fonts / "DejaVuSansMono.ttf"))
    pdf.set_auto_page_break(True, margin=12)
    pdf.set_margins(12, 12, 12)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for block in report.blocks:
        kind = block[0]
        if kind == "h1":
            pdf.set_font("dejavu", "B", 15)
            pdf.multi_cell(width, 8, block[1], new_x="LMARGIN", new_y="NEXT")
        elif kind == "h2":
            pdf.ln(2)
            pdf.set_font("dejavu", "B", 11)
            pdf.multi_cell(width, 6, block[1], new_x="LMARGIN", new_y="NEXT")
        elif kind == "p":
            pdf.set_font("dejavu", "", 8)
            pdf.multi_cell(width, 4, block[1], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind == "code":
            pdf.set_font("dejavumono", "", 6)
            pdf.multi_cell(width, 3, block[1], new_x="LMARGIN", new_y="NEXT", fill=False)
            pdf.ln(1)
        elif kind == "table":
            head, rows = block[1], block[2]
            if not rows:
                continue
            pdf.set_font("dejavu", "", 6.5 if len(head) > 8 else 7.5)
            with pdf.table(width=width, line_height=3.4, first_row_as_headings=any(head),
                           headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235))) as table:
                if any(head):
                    table.row([str(h) for h in head])
                for r in rows:
                    table.row([str(c) for c in r])
            pdf.ln(2)
        elif kind == "img":
            from PIL import Image

            image = Image.open(io.BytesIO(block[1]))
            w_mm = min(width, image.width / PNG_DPI * 25.4)
            h_mm = w_mm * image.height / image.width
            if pdf.get_y() + h_mm + 10 > pdf.h - pdf.b_margin:
                pdf.add_page()
            pdf.image(io.BytesIO(block[1]), w=w_mm, h=h_mm)
            pdf.set_font("dejavu", "", 7)
            pdf.multi_cell(width, 3.5, block[2], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    return bytes(pdf.output())


def render(report: Report, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "pdf":
        return to_pdf(report)
    return {"html": to_html, "json": to_json, "csv": to_csv}[fmt](report).encode()
