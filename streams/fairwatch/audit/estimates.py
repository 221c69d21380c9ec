"""Per-group estimates for a window, recomputed from the stored bucket counts with the core's math (what ``fairwatch metrics`` prints)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from fairwatch.audit.maturity import label_maturity
from fairwatch.audit.window import Window
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.store.clickhouse import Store
from fairwatch.store.cluster_moments import read_cluster_moments
from fairwatch.store.group_counts import counted_intersections, read_counts
from fairwatch.store.independent_reviews import read_review_agreement
from fairwatch.store.sealed_evidence import STORED, EvidenceTables, labeled_counts

GROUP_FIELDS = (
    "deployment", "algorithm", "mode", "attribute", "group", "impostor", "false_match", "genuine", "false_non_match",
    "fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low", "fnmr_high", "status",
    # the bounds the statuses are judged on, and how many rates are judged together
    "fmr_anytime_low", "fmr_anytime_high", "fnmr_anytime_low", "fnmr_anytime_high", "fmr_status", "fnmr_status",
    "status_family",
    # the effective comparisons each interval was taken on, and the clustering's design effect (1: none)
    "fmr_n_eff", "fnmr_n_eff", "fmr_design_effect", "fnmr_design_effect",
)


DIFFERENTIAL_FIELDS = ("deployment", "algorithm", "mode", "attribute", "metric", "rate", "value", "low", "high", "status",
                       "vs_policy", "fmr_floor", "fnmr_floor")


DIFFERENTIAL_METRICS = ("max_min_ratio", "max_geomean", "fdr", "ir", "garbe")

CORRECTED_FIELDS = ("deployment", "algorithm", "mode", "attribute", "group", "fmr", "fmr_low", "fmr_high", "fnmr",
                    "fnmr_low", "fnmr_high", "error_matches", "error_non_matches")

HOMOGENEITY_FIELDS = ("deployment", "algorithm", "mode", "attribute", "rate", "p_value", "method", "groups", "verdict")


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_document(frame: GroupFrame, window: Window, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `fairwatch metrics --json` document: window, group rows, differential rows, homogeneity tests,
    and the window's label maturity when given (:mod:`fairwatch.audit.maturity`)."""
    groups = [{f: _json_number(row[f]) for f in GROUP_FIELDS} for row in frame.to_records()]
    differentials = [
        {f: _json_number(row[f]) for f in DIFFERENTIAL_FIELDS}
        for row in frame.to_dict()["differentials"]
        if row["metric"] in DIFFERENTIAL_METRICS
    ]
    homogeneity = [{f: _json_number(row[f]) for f in HOMOGENEITY_FIELDS} for row in frame.homogeneity_records()]
    corrected = [{f: _json_number(row[f]) for f in CORRECTED_FIELDS} for row in frame.corrected_records()]
    document = {"window": window.to_dict(), "groups": groups, "differentials": differentials,
                "homogeneity": homogeneity, "corrected": corrected}
    if labels is not None:
        document["labels"] = labels
    return document


def window_metrics(
    store: Store, window: Window, config: CoreConfig, deployment: str | None = None, algorithm: str | None = None,
    *, label_maturity_seconds: int | None = None, with_labels: bool = True, with_reviews: bool = True,
    tables: EvidenceTables = STORED, now: datetime | None = None,
) -> tuple[GroupFrame, dict[str, Any]]:
    """The frame and the document of ``fairwatch metrics``; ``with_labels`` adds the label maturity
    (``label_maturity_seconds`` from a policy, else observed); ``with_reviews`` corrects the rates
    for reviewer error where independent reviews exist (:mod:`fairwatch.store.independent_reviews`).

    ``tables``: the stored counts, or the evidence as of a checkpoint
    (:func:`fairwatch.store.sealed_evidence.sealed_tables`), counted here per group with
    ``config.intersections``; ``now``: the clock of the label maturity (default: the system's)."""
    if tables.sealed:
        keys, rows = labeled_counts(store, tables, config.intersections, window.start, window.end, deployment,
                                    algorithm)
    else:
        keys, rows = read_counts(store, window.start, window.end, deployment, algorithm)
    reviews = read_review_agreement(store, window.start, window.end, deployment, algorithm,
                                    tables=tables) if with_reviews else {}
    # the stored counts' intersections are the sink's, which the clustering sums must match
    intersections = config.intersections if tables.sealed else counted_intersections(
        store, window.start, window.end, deployment, algorithm)
    clustering = read_cluster_moments(store, window.start, window.end, intersections, deployment, algorithm,
                                      tables=tables)
    frame = GroupFrame.from_counts(keys, rows, config, reviews=reviews, clustering=clustering)
    labels = None
    if with_labels:
        maturity = label_maturity(store, window, deployment, algorithm, label_maturity_seconds, now, tables=tables)
        labels = maturity.to_dict(window, reviews.values())
    return frame, metrics_document(frame, window, labels)
