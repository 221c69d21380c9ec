"""``fairwatch audit verify-report``: is a report's every number what the signed evidence says?

A report names, per deployment, the signed checkpoint of its evidence log that was newest when it
was made (:mod:`fairwatch.audit.report_evidence`). Verifying a report:

1. each checkpoint the report names opens with the operator's public key, and states the origin,
   size and root the report gives (a deployment without one is "not sealed": a failure);
2. the evidence logs of those deployments verify (:func:`fairwatch.audit.evidence_verify.verify`,
   with the report's notes among the checkpoints): every leaf recomputed from its row, and each
   signed root, the report's included, the root of the recomputed leaves at its size. So the
   report's checkpoint is a prefix of the verified log;
3. the report is recomputed (:func:`fairwatch.audit.report.build_report`, the code that made it)
   with the report's own parameters, from the rows sealed up to those checkpoints only
   (:func:`fairwatch.store.sealed_evidence.sealed_tables`: match events, every verdict revision,
   independent reviews whose leaf index is below the checkpoint's size; the labelled outcomes and
   per-group counts derived from them as the join and the sink derive them), so rows stored or
   sealed after the report (late outcomes, corrections, new events) change nothing;
4. every number of the sections :data:`COMPARED` is compared with the report's: equal within a
   relative 1e-9 (the counts are sums of floats, summed in another order here), every other value
   exactly. Each difference is given by its path in the JSON, the report's value and the
   recomputed one.

The recomputation reads the rows as they are in the store now; they are those sealed only where
step 2 found nothing, which is why any finding there fails the report as well. Not compared: what
is not computed from the deployments' evidence (the alert history, dead letters, which are in a
log of their own, the policy file's path and hash), what describes the run rather than the numbers
(the SQL, the rerun command, the hashes of ``fairwatch metrics``' stdout, the time it was made), and
the label-delay quantiles, which ClickHouse's ``quantiles`` estimates by sampling.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fairwatch.audit.evidence_log import EvidenceError, origin_of
from fairwatch.audit.evidence_verify import Verification, verify
from fairwatch.audit.report import EmptyWindow, build_report
from fairwatch.audit.report_evidence import note_checkpoint
from fairwatch.audit.window import resolve_window
from fairwatch.contracts.keys import VerifierKey
from fairwatch.contracts.records import parse_timestamp
from fairwatch.contracts.signed_note import NoteError, open_note
from fairwatch.core.config import CoreConfig
from fairwatch.store.clickhouse import Store
from fairwatch.store.sealed_evidence import sealed_tables

# the report's sections compared, and the paths in them that are not (see the module docstring)
COMPARED = ("scope", "provenance", "groups", "differentials", "homogeneity", "corrected", "labels", "weighting",
            "comparisons", "findings", "privacy", "methods", "scores", "impostor_pairs")
NOT_COMPARED = {
    "scope.requested", "provenance.dead_letters_by_reason", "provenance.label_delay.p50_hours",
    "provenance.label_delay.p90_hours", "provenance.label_delay.p99_hours", "methods.policy",
    "methods.fairwatch_version", "methods.server_version", "findings.alerts", "findings.policy_file",
}
RELATIVE, ABSOLUTE = 1e-9, 1e-12
# the fields that name a row of a list, in the order they are said
IDENTITY = ("deployment", "algorithm", "mode", "attribute", "group", "metric", "rate", "bin", "kind")


class ReportError(ValueError):
    """The file is not a report that names its evidence; the message says what is missing."""


@dataclass(frozen=True)
class Difference:
    path: str  # in the report's JSON, e.g. groups[3].fmr
    report: Any
    recomputed: Any
    row: str = ""  # the row named, e.g. "gate-a / algo-v1 / verification / race / Black"

    def text(self) -> str:
        named = f" ({self.row})" if self.row else ""
        return f"DIFFERS {self.path}{named}: report {self.report!r}, recomputed {self.recomputed!r}"


@dataclass
class LogCheck:
    deployment: str
    origin: str
    sealed: bool
    tree_size: int | None = None
    signed_by: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass
class ReportVerification:
    logs: list[LogCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    evidence: Verification | None = None
    differences: list[Difference] = field(default_factory=list)
    compared: int = 0
    recomputed: bool = False

    @property
    def ok(self) -> bool:
        return (not self.problems and self.evidence is not None and self.evidence.ok and self.recomputed
                and not self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "logs": [asdict(log) for log in self.logs], "problems": self.problems,
                "evidence": self.evidence.to_dict() if self.evidence is not None else None,
                "recomputed": self.recomputed, "numbers_compared": self.compared,
                "differences": [asdict(d) for d in self.differences]}


# ------------------------------------------------------------------------------ parameters


def _get(document: dict, *path: str) -> Any:
    value: Any = document
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise ReportError(f"the report has no {'.'.join(path)}: it is not a fairwatch report that names its"
                              " evidence (made before reports were bound to evidence, or edited)")
        value = value[name]
    return value


def report_parameters(document: dict) -> dict[str, Any]:
    """What the report was made with, from where the report states it: the window and scope
    (``scope``, with ``bucket_seconds`` and the counted ``intersections``), the thresholds
    (``methods.thresholds``), the suppression (``privacy.min_group_size``), the label maturity
    (``labels``: a policy's is used again, an observed one is observed again) and the clock
    (``generated_at``). Keyword arguments of :func:`fairwatch.audit.report.build_report`."""
    scope, labels = _get(document, "scope"), _get(document, "labels")
    try:
        bucket = int(_get(document, "scope", "bucket_seconds"))
        config = CoreConfig(
            bucket_seconds=bucket, intersections=tuple(tuple(i) for i in _get(document, "scope", "intersections")),
            **{name: _get(document, "methods", "thresholds", name) for name in (
                "confidence", "target_fmr", "target_fnmr", "min_comparisons", "fdr_alpha", "ir_alpha", "garbe_alpha",
                "policy_ratio", "ratio_floor_fmr", "ratio_floor_fnmr")})
        window = _get(document, "scope", "window")
        return {
            "window": resolve_window(None, window["from"], window["to"], bucket), "config": config,
            "deployment": scope.get("deployment"), "algorithm": scope.get("algorithm"),
            "attribute": scope.get("attribute"), "min_group_size": int(_get(document, "privacy", "min_group_size")),
            "requested": scope.get("requested"),
            "label_maturity_seconds": (labels.get("maturity_seconds") if labels.get("maturity_source") == "policy"
                                       else None),
            "now": parse_timestamp(_get(document, "generated_at"), "generated_at"),
        }
    except ReportError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ReportError(f"the report's parameters cannot be read back: {exc}") from None


# ------------------------------------------------------------------------------ comparing


def _row_name(row: dict) -> str:
    return " / ".join(str(row[f]) for f in IDENTITY if isinstance(row.get(f), str))


def _identity(row: Any) -> tuple | None:
    if not isinstance(row, dict):
        return None
    named = tuple((f, row[f]) for f in IDENTITY if isinstance(row.get(f), str))
    return named or None


def _equal_numbers(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= max(ABSOLUTE, RELATIVE * max(abs(a), abs(b)))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Comparison:
    def __init__(self) -> None:
        self.differences: list[Difference] = []
        self.compared = 0

    def walk(self, path: str, schema: str, report: Any, recomputed: Any, row: str) -> None:
        if schema in NOT_COMPARED:
            return
        if _number(report) and _number(recomputed):
            self.compared += 1
            if not _equal_numbers(float(report), float(recomputed)):
                self.differences.append(Difference(path, report, recomputed, row))
        elif isinstance(report, dict) and isinstance(recomputed, dict):
            for key in sorted(set(report) | set(recomputed)):
                child, child_schema = f"{path}.{key}", f"{schema}.{key}"
                if child_schema in NOT_COMPARED:
                    continue
                if key not in report or key not in recomputed:
                    self.differences.append(Difference(child, report.get(key, "(absent)"),
                                                       recomputed.get(key, "(absent)"), row))
                else:
                    self.walk(child, child_schema, report[key], recomputed[key], row)
        elif isinstance(report, list) and isinstance(recomputed, list):
            self._rows(path, schema, report, recomputed)
        else:
            self.compared += _number(report)
            if report != recomputed:
                self.differences.append(Difference(path, report, recomputed, row))

    def _rows(self, path: str, schema: str, report: list, recomputed: list) -> None:
        """Rows matched by what names them (deployment, ..., group, metric, rate) where that is
        unique on both sides, else by position."""
        ids, again = [_identity(r) for r in report], [_identity(r) for r in recomputed]
        if None not in ids and None not in again and len(set(ids)) == len(ids) and len(set(again)) == len(again):
            found = dict(zip(again, recomputed))
            for i, (identity, row) in enumerate(zip(ids, report)):
                if identity in found:
                    self.walk(f"{path}[{i}]", schema, row, found[identity], _row_name(row))
                else:
                    self.differences.append(Difference(f"{path}[{i}]", "(a row)", "(no such row)", _row_name(row)))
            for identity in [i for i in again if i not in set(ids)]:
                self.differences.append(Difference(path, "(no such row)", "(a row)", _row_name(found[identity])))
            return
        for i, (a, b) in enumerate(zip(report, recomputed)):
            self.walk(f"{path}[{i}]", schema, a, b, _row_name(a) if isinstance(a, dict) else "")
        if len(report) != len(recomputed):
            self.differences.append(Difference(f"{path} (rows)", len(report), len(recomputed)))


def compare(report: dict, recomputed: dict) -> tuple[int, list[Difference]]:
    """How many numbers were compared, and every difference, over the sections :data:`COMPARED`."""
    comparison = _Comparison()
    for section in COMPARED:
        comparison.walk(section, section, report.get(section, "(absent)"), recomputed.get(section, "(absent)"), "")
    return comparison.compared, comparison.differences


# ------------------------------------------------------------------------------ verifying


def _check_logs(document: dict, verifiers: Sequence[VerifierKey], result: ReportVerification) -> dict[str, int]:
    """Each log the report names: sealed, its note signed by a known key and saying what the report
    says. Returns origin -> size of the checkpoints that are."""
    evidence = _get(document, "evidence")
    base = evidence.get("base_origin")
    logs = evidence.get("logs")
    if not isinstance(base, str) or not isinstance(logs, list) or not logs:
        raise ReportError("the report's evidence section names no log")
    sizes: dict[str, int] = {}
    for log in logs:
        if not isinstance(log, dict):
            raise ReportError("the report's evidence section holds a log that is not an object")
        check = LogCheck(str(log.get("deployment")), str(log.get("origin")), bool(log.get("sealed")))
        result.logs.append(check)
        if check.origin != origin_of(base, check.deployment):
            check.problem = f"the origin {check.origin} is not that of deployment {check.deployment} under {base}"
        elif not check.sealed:
            check.problem = log.get("statement") or "not sealed: the numbers are not bound to signed evidence"
        else:
            try:
                opened = open_note(str(log.get("note", "")), verifiers)
                checkpoint = note_checkpoint(str(log["note"]))
            except NoteError as exc:
                check.problem = f"the report's checkpoint does not verify with the key given: {exc}"
            else:
                check.signed_by, check.tree_size = opened.verified, checkpoint.size
                stated = (log.get("origin"), log.get("tree_size"), log.get("root_hash"))
                signed = (checkpoint.origin, checkpoint.size, base64.b64encode(checkpoint.root_hash).decode())
                if stated != signed:
                    check.problem = (f"the report says origin, size, root {stated}; its signed note says {signed}")
                else:
                    sizes[checkpoint.origin] = checkpoint.size
        if check.problem:
            result.problems.append(f"{check.origin}: {check.problem}")
    return sizes


def verify_report(store: Store, document: dict, verifiers: Sequence[VerifierKey], *,
                  outside: Sequence[Path] = ()) -> ReportVerification:
    """Verify a report's evidence and recompute its numbers as of its checkpoints (module docstring)."""
    result = ReportVerification()
    sizes = _check_logs(document, verifiers, result)
    parameters = report_parameters(document)
    evidence = document["evidence"]
    notes = [(log["note"], "the report") for log in evidence["logs"] if log.get("sealed") and log.get("note")]
    origins = sorted({log.origin for log in result.logs if log.sealed})
    if origins:
        try:
            result.evidence = verify(store, verifiers, base=evidence["base_origin"], outside=outside,
                                     origins=origins, notes=notes)
        except EvidenceError as exc:
            result.problems.append(str(exc))
    if not sizes:
        result.problems.append("no checkpoint of the report verifies: nothing to recompute the numbers from")
        return result
    try:
        recomputed = build_report(store, tables=sealed_tables(sizes, parameters["config"].bucket_seconds),
                                  evidence_origin=None, plots=False, **parameters).document
    except EmptyWindow as exc:
        result.problems.append(f"recomputed from the rows sealed up to the report's checkpoints: {exc}")
        return result
    result.recomputed = True
    result.compared, result.differences = compare(document, recomputed)
    return result
