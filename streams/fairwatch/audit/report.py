"""Audit reports over any past window: the numbers `fairwatch metrics` gives, how they were made,
where they came from, and what left the system.

The per-group table and the differentials are the document of :func:`fairwatch.audit.estimates.window_metrics`
(the code behind ``fairwatch metrics --json``), so the report and the command agree exactly; the
report adds provenance, the alert history, plots, methods and a reproducibility section, and
applies the export rules: a group with fewer than ``min_group_size`` verified outcomes is shown as
``suppressed`` (never as zero), and no event id, reviewer id or other identifier is exported.

The first page answers first (:mod:`~fairwatch.audit.report_headline`): the findings
(:mod:`~fairwatch.audit.report_findings`) read from the document's own rows, the pairwise
comparisons of the groups (:mod:`~fairwatch.audit.report_comparisons`), the matchers' thresholds.

One :class:`Report` (JSON-ready ``document`` + a list of blocks with figures) renders to JSON,
CSV, HTML and PDF; HTML and PDF walk the same blocks, so they carry the same content.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from fairwatch import __version__
from fairwatch.audit.estimates import window_metrics
from fairwatch.audit.evidence_log import DEFAULT_ORIGIN
from fairwatch.audit.report_blocks import POLICY_THRESHOLDS, report_blocks, weighted_cells, worse_cells
from fairwatch.audit.report_comparisons import comparisons
from fairwatch.audit.report_fields import ALERT_FIELDS, RATES, SCOPE, SET_SCOPE
from fairwatch.audit.report_figures import report_figures
from fairwatch.audit.report_findings import findings
from fairwatch.audit.report_evidence import counted_intersections, evidence_section
from fairwatch.audit.report_headline import first_page
from fairwatch.audit.report_pairs import pair_section
from fairwatch.audit.report_scores import score_section
from fairwatch.audit.suppression import (
    DEFAULT_MIN_GROUP_SIZE,
    SUPPRESSED,
    suppress_small_groups,
)
from fairwatch.audit.window import Window
from fairwatch.contracts.records import format_timestamp
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.intervals import VARIES
from fairwatch.store.sums import exact_sum
from fairwatch.store.clickhouse import Store, bind, open_store, redacted_url
from fairwatch.store.group_counts import scope_filter
from fairwatch.store.sealed_evidence import STORED, EvidenceTables

DELAY_EDGES_H = (0, 1, 6, 24, 72, 168, 720)
MAX_THRESHOLDS = 6  # distinct decision thresholds listed per matcher; more are given as a range


class EmptyWindow(ValueError):
    """The window holds no verified outcome for the scope asked: there is nothing to report."""


def open_for_reading(url: str | None) -> Store:
    """Open a store without creating anything, so a read-only user (the auditor) can report; a
    store without fairwatch's tables is an error, not an empty report."""
    return open_store(url, create=False)


class _Recorder:
    """Passes queries to a store and keeps their bound SQL: the report quotes the query it ran."""

    def __init__(self, store: Store):
        self.store, self.sql = store, []

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        self.sql.append(bind(sql, params))
        return self.store.query(sql, params)


def _key(row: dict, fields: tuple[str, ...]) -> tuple:
    return tuple(row[f] for f in fields)


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def metrics_stdout(document: dict) -> str:
    """Exactly what ``fairwatch metrics --json`` prints for a document (its hash is the report's)."""
    return json.dumps(document, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------ the document


@dataclass
class Report:
    document: dict[str, Any]
    blocks: list[tuple] = field(default_factory=list)  # as fairwatch.audit.report_blocks describes them


def _provenance(store: Store, window: Window, deployment: str | None, algorithm: str | None,
                attribute: str | None, min_group_size: int, tables: EvidenceTables = STORED) -> dict[str, Any]:
    where, params = scope_filter(deployment, algorithm)
    params.update(tables.params, start=window.start, end=window.end)
    (events,), = store.query(
        f"SELECT count() FROM {tables.events} WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}",
        params)
    (labeled, weighted), = store.query(
        f"SELECT count(), {exact_sum('weight')} FROM {tables.labeled}"
        f" WHERE bucket >= %(start)s AND bucket < %(end)s{where}", params)
    # coverage per single attribute: events of the window that have a verified outcome
    attr = " AND attribute = %(attribute)s" if attribute else ""
    if attribute:
        params["attribute"] = attribute
    event_groups = {
        (d, m, a, g): n for d, m, a, g, n in store.query(
            f"SELECT deployment, toString(mode), attribute, group_label, count() FROM {tables.events}"
            " ARRAY JOIN subject_keys AS attribute, subject_values AS group_label"
            f" WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}{attr}"
            " GROUP BY deployment, mode, attribute, group_label", params)
    }
    labeled_groups = {
        (d, m, a, g): n for d, m, a, g, n in store.query(
            f"SELECT deployment, toString(mode), attribute, group_label, count() FROM {tables.labeled}"
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
        f" SELECT toInt64(verified_at) - toInt64(occurred_at) AS delay FROM {tables.labeled}"
        f" ANY INNER JOIN (SELECT event_id, revision, verified_at FROM {tables.verdicts}) AS v"
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
    matchers = _matchers(store, where, params, tables)
    dead = [{"reason_code": code, "messages": int(c)} for code, c in store.query(
        "SELECT reason_code, count() FROM dead_letters FINAL WHERE rejected_at >= %(start)s"
        " AND rejected_at < %(end)s GROUP BY reason_code ORDER BY reason_code", params)]
    return {"events": int(events), "verified_outcomes": int(labeled), "weighted_outcomes": float(weighted or 0.0),
            "matchers": matchers, "coverage_by_group": coverage, "label_delay": delay, "dead_letters_by_reason": dead}


def _matchers(store: Store, where: str, params: dict, tables: EvidenceTables) -> list[dict]:
    """Per deployment, algorithm and mode: the decision thresholds its match events carried (the
    rates are of the decisions at those thresholds), with their event counts."""
    found: dict[tuple, list[tuple[float, int]]] = {}
    for deployment, algorithm, mode, threshold, n in store.query(
            f"SELECT deployment, algorithm, toString(mode), threshold, count() FROM {tables.events}"
            f" WHERE occurred_at >= %(start)s AND occurred_at < %(end)s{where}"
            " GROUP BY deployment, algorithm, mode, threshold ORDER BY deployment, algorithm, mode, threshold", params):
        found.setdefault((deployment, algorithm, mode), []).append((float(threshold), int(n)))
    return [{"deployment": d, "algorithm": a, "mode": m, "events": sum(n for _, n in values),
             "distinct_thresholds": len(values), "min_threshold": values[0][0], "max_threshold": values[-1][0],
             "thresholds": [{"threshold": t, "events": n} for t, n in values][:MAX_THRESHOLDS]}
            for (d, a, m), values in found.items()]


def rerun_command(store_url: str, arguments: list[str]) -> tuple[str, str]:
    """The ``fairwatch metrics`` command that reprints the report's numbers, shell-quoted, and a note.

    With ``--store`` the store it read, when its URL has no password (an empty one, as the local
    stack's ``auditor:@``, hides nothing). A password is never printed: then the command leaves
    ``--store`` out, so that it runs as printed once ``FAIRWATCH_CLICKHOUSE`` holds the store, and
    the note says so, with the URL less its password."""
    shown = redacted_url(store_url)
    if shown == store_url or urlparse(store_url).password == "":
        return shlex.join(["fairwatch", "metrics", "--store", store_url, *arguments]), ""
    note = (f"The store's password is not printed, so the command below reads the store from FAIRWATCH_CLICKHOUSE:"
            f" set it to {shown} with the password added after the user name (user:password@host), then run the"
            " command as printed.")
    return shlex.join(["fairwatch", "metrics", *arguments]), note


def _weighting(frame: GroupFrame, hidden: set[tuple]) -> list[dict]:
    """Per group (suppressed ones left out): whether each rate is a weighted estimate, i.e. its
    verified outcomes carry unequal weights (Kish's effective count below the count), so that errors
    / verified comparisons is not the rate; and the inclusion probabilities of its matches and
    non-matches ("varies" within a decision, None without a verified one)."""

    def probability(value):
        if value is None or value != value:
            return None
        return "varies" if value == VARIES else float(value)

    rows = []
    for estimate in (*frame.overall.values(), *frame.by_group.values()):
        if tuple(estimate.key) in hidden:
            continue
        flags = {rate: bool(r.n > 0 and r.n_eff < r.n * (1 - 1e-9))
                 for rate, r in ((rate, getattr(estimate, rate)) for rate in RATES)}
        rows.append({**estimate.key._asdict(), **flags,
                     "match_inclusion": probability(estimate.fmr.error_inclusion),  # false matches are matches
                     "non_match_inclusion": probability(estimate.fmr.correct_inclusion)})
    return rows


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
    label_maturity_seconds: int | None = None,
    evidence_origin: str | None = DEFAULT_ORIGIN,
    tables: EvidenceTables = STORED,
) -> Report:
    """Read everything a report of ``window`` needs and build it (see the module docstring).

    Parameters
    ----------
    store
        Any store; only SELECTs are run, so a read-only user will do (:func:`open_for_reading`).
    window
        Whole buckets, as :func:`fairwatch.audit.window.resolve_window` gives them.
    config
        Targets, ``min_comparisons``, confidence: as for ``fairwatch metrics``.
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
    label_maturity_seconds
        How long after its event a verdict is final (a policy's ``label_maturity``); None: observed
        from the store (:mod:`fairwatch.audit.maturity`).
    evidence_origin
        The evidence logs' origin prefix (``fairwatch audit seal --origin``): the ``evidence``
        section names each deployment's newest signed checkpoint under it
        (:mod:`fairwatch.audit.report_evidence`). None leaves the section out (a recomputation).
    tables
        The tables the numbers are read from: the stored ones, or the evidence sealed up to the
        report's checkpoints (:func:`fairwatch.store.sealed_evidence.sealed_tables`), which is how
        ``fairwatch audit verify-report`` recomputes a report (the plots always read the stored counts).

    Raises
    ------
    EmptyWindow
        The window holds no verified outcome for the scope.

    Notes
    -----
    The tests (``tests/audit/test_report.py``) check the numbers against ``fairwatch metrics`` and
    a recount.
    """
    if min_group_size < 0:
        raise ValueError(f"min_group_size must be >= 0, got {min_group_size}")
    recorder = _Recorder(store)
    clock = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    progress("per-group estimates", 0, 1)
    frame, metrics_doc = window_metrics(recorder, window, config, deployment, algorithm,
                                        label_maturity_seconds=label_maturity_seconds, tables=tables, now=clock)
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
    tests = [t for t in metrics_doc["homogeneity"] if attribute in (None, t["attribute"])]
    corrected = [c for c in metrics_doc["corrected"] if c["attribute"] in ("*", attribute or c["attribute"])]
    groups, hidden = suppress_small_groups(groups, min_group_size)
    hidden_sets = {(d, a, m, attr) for d, a, m, attr, _ in hidden}
    differentials = [
        {**d, "value": None, "low": None, "high": None, "status": SUPPRESSED}
        if _key(d, SET_SCOPE) in hidden_sets else d
        for d in differentials
    ]
    corrected = [c for c in corrected if _key(c, (*SET_SCOPE, "group")) not in hidden]
    tests = [{**t, "p_value": None, "verdict": SUPPRESSED} if _key(t, SET_SCOPE) in hidden_sets else t for t in tests]
    progress("provenance", 0, 1)
    provenance = _provenance(store, window, deployment, algorithm, attribute, min_group_size, tables)
    alerts = _alerts(store, window, deployment, algorithm, hidden)
    policy_info = None
    if policy is not None:
        from fairwatch.detect.policy import load_policy

        raw = Path(policy).read_bytes()
        loaded = load_policy(policy)  # a PolicyError (a ValueError) says which line is wrong
        policy_info = {"path": str(policy), "sha256": _sha256(raw), "deployment": loaded.deployment,
                       **{name: getattr(loaded, name) for name in POLICY_THRESHOLDS}}
    # the labels describe the store when read (as_of moves with every outcome), not the numbers:
    # the hash is of the numbers, which `--without-labels` prints alone
    stdout = metrics_stdout({key: value for key, value in metrics_doc.items() if key != "labels"})
    arguments = ["--from", window.to_dict()["from"], "--to", window.to_dict()["to"]]
    for name, value in (("--deployment", deployment), ("--algorithm", algorithm),
                        ("--target-fmr", config.target_fmr), ("--target-fnmr", config.target_fnmr),
                        ("--policy-ratio", config.policy_ratio), ("--ratio-floor-fmr", config.ratio_floor_fmr),
                        ("--ratio-floor-fnmr", config.ratio_floor_fnmr)):
        if value is not None:
            arguments += [name, str(value)]
    if label_maturity_seconds is not None:
        arguments += ["--label-maturity", f"{label_maturity_seconds}s"]
    arguments += ["--min-comparisons", str(config.min_comparisons), "--bucket-seconds", str(config.bucket_seconds),
                  "--json", "--without-labels"]
    command, command_note = rerun_command(store.url, arguments)
    exported = {"window": metrics_doc["window"], "groups": groups, "differentials": differentials}
    document = {
        "report": "fairwatch audit report",
        "generated_at": format_timestamp(clock),
        "scope": {"window": metrics_doc["window"], "requested": requested or metrics_doc["window"], **scope,
                  "bucket_seconds": config.bucket_seconds, "intersections": counted_intersections(metrics_doc)},
        "provenance": provenance,
        "groups": groups,
        "differentials": differentials,
        "homogeneity": tests,
        "corrected": corrected,
        "labels": metrics_doc["labels"],
        "alerts": alerts,
        "privacy": {"min_group_size": min_group_size, "suppressed_groups": len(hidden),
                    "rule": f"groups with fewer than {min_group_size} verified outcomes are shown as '{SUPPRESSED}';"
                            " a differential of an attribute set with a suppressed group is suppressed too;"
                            " no event, reviewer or alert identifiers are exported"},
        "methods": _methods(config, policy_info, store, frame),
        "reproducibility": {
            "command": command,
            "command_note": command_note,
            "sql": recorder.sql,
            "metrics_sha256": _sha256(stdout),
            "metrics_sha256_of": "the exact stdout of the command above (fairwatch metrics --json)",
            "exported_sha256": _sha256(json.dumps(exported, sort_keys=True, allow_nan=False)),
        },
    }
    shown = {_key(g, (*SET_SCOPE, "group")) for g in groups}
    document["weighting"] = [w for w in _weighting(frame, hidden) if _key(w, (*SET_SCOPE, "group")) in shown]
    document["comparisons"] = [c for c in comparisons(frame, config, hidden_sets)
                               if attribute in (None, c["attribute"])]
    weighted = weighted_cells(document)
    document["findings"] = findings(document, frame, document["comparisons"], weighted)
    progress("scores", 0, 1)
    # the intersections the counts hold, so that the scores have the groups the rates have
    counted = replace(config, intersections=tuple(map(tuple, document["scope"]["intersections"])))
    document["scores"], _ = score_section(recorder, window, counted, deployment, algorithm, attribute, hidden, tables)
    progress("impostor pairs", 0, 1)
    document["impostor_pairs"] = pair_section(recorder, window, counted, frame, differentials, deployment, algorithm,
                                              attribute, hidden_sets, tables)
    if evidence_origin is not None:
        progress("evidence", 0, 1)
        document["evidence"] = evidence_section(store, sorted({g["deployment"] for g in groups}), evidence_origin,
                                                window, deployment, algorithm, config.bucket_seconds)
    report = Report(document)
    figures = report_figures(store, window, config, deployment, algorithm, attribute, frame, groups, min_group_size,
                             progress, alerts=alerts, marked=worse_cells(document), weighted=weighted) if plots else []
    report.blocks = first_page(document) + report_blocks(document, figures)
    return report


def _methods(config: CoreConfig, policy: dict | None, store: Store, frame: GroupFrame) -> dict[str, Any]:
    level = f"{config.confidence:.0%}"
    family = {g.key[:3]: g.fmr.family for g in (*frame.overall.values(), *frame.by_group.values())}
    families = [{**dict(zip(SCOPE, scope)), "rates_judged": n} for scope, n in sorted(family.items())]
    return {
        "definitions": {
            "FMR": "false matches / impostor comparisons (impostor truth, decision match); FPIR in identification",
            "FNMR": "false non-matches / genuine comparisons (genuine truth, decision non_match); FNIR in"
                    " identification",
            "FPIR": "identification (1:N): non-mated searches (impostor truth) that listed at least one candidate"
                    " at or above the threshold / non-mated searches (shown in the FMR columns of mode"
                    " identification)",
            "FNIR": "identification (1:N): mated searches (genuine truth) whose mate (the outcome's mate_rank) is"
                    " not listed at or above the threshold / mated searches, a search that listed someone else"
                    " counted as a miss; a search sent without its candidate list is judged by its decision"
                    " (shown in the FNMR columns of mode identification)",
            "weighting": "each verified outcome weighs 1 / inclusion_prob (inverse probability of verification)",
            "time": "event time: an outcome counts in the bucket of its event's occurred_at, whenever it was"
                    " verified; the latest revision of an outcome replaces earlier ones",
            "window": f"whole buckets of {config.bucket_seconds} s covering the requested window",
        },
        "intervals": {
            "groups": f"{level} Clopper-Pearson on the error share among verified outcomes, mapped to the rate"
                      " through the inclusion probabilities of the match and non-match strata (two-phase design:"
                      " one probability per decision and group); no upper bound below 1 when a stratum has no"
                      " verified outcome",
            "differentials": f"{level} for every group at once: each group's rates in Clopper-Pearson intervals"
                             " at the Bonferroni level of its attribute set, each differential's interval the"
                             " range of the differential over them (a ratio has no upper bound when a rate may"
                             " be 0, unless a ratio floor is declared: then rates and bounds below the floor"
                             " count as the floor, and the rows name it)",
            "homogeneity": "is there any difference between the groups' rates: per attribute set and rate, an exact"
                           " conditional test (likelihood-ratio G, Monte Carlo over tables with the same margins)"
                           " where every group was verified through the same design, else the intersection of the"
                           " groups' Bonferroni intervals; each a test at level"
                           f" {1 - config.confidence:.2g}, not corrected across attribute sets and rates;"
                           " no_difference_shown never means equal",
            "reviewer error": "where independent reviews exist: their disagreements with first verdicts give the"
                              " error of one blind verdict per deployment, algorithm, mode and decision (taken as"
                              " the same in every group); each group's rates are then given with the error of the"
                              " verdicts that count anywhere from 0 to that error's upper bound (Rogan-Gladen;"
                              " exact bounds of the labelled and disagreement shares, Bonferroni over four)",
        },
        "thresholds": {"target_fmr": config.target_fmr, "target_fnmr": config.target_fnmr,
                       "min_comparisons": config.min_comparisons, "confidence": config.confidence,
                       "fdr_alpha": config.fdr_alpha, "ir_alpha": config.ir_alpha, "garbe_alpha": config.garbe_alpha,
                       "policy_ratio": config.policy_ratio, "ratio_floor_fmr": config.ratio_floor_fmr,
                       "ratio_floor_fnmr": config.ratio_floor_fnmr},
        "status": "judged on anytime-valid bounds (a Beta-binomial mixture confidence sequence, Howard et al."
                  " 2021, on the verified error share, mapped to the rate as the intervals are) at level"
                  f" 1 - {1 - config.confidence:.2g}/m, m the rates with a target judged together in a deployment,"
                  " algorithm and mode (Bonferroni; m below), so that with probability at least"
                  f" {level} no status of a deployment, algorithm and mode is wrong, however often a window"
                  " growing from a fixed start is looked at, provided its labels are mature (otherwise the"
                  " statuses are provisional: section 2 says which):"
                  " insufficient below min_comparisons or when the bounds hold the target; above_target when"
                  " they lie above the declared target; ok when they lie within it; no_target when no target is"
                  " declared (measured, not judged). The fixed-sample intervals above can exclude a target"
                  " that the status still calls insufficient",
        "status_families": families,
        "policy": policy,
        "fairwatch_version": __version__,
        "server_version": ".".join(map(str, store.server_version())),
    }


