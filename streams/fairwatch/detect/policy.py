"""Alerting policy files: one YAML file per deployment, checked against ``schemas/policy.schema.json``.

A file that breaks the schema, or a rule the schema cannot state (a baseline that ends before it
starts, an intersection of unwatched attributes), is refused with :class:`PolicyError`, which
names the file, the line and the reason. ``schemas/examples/policy/gate-a.yaml`` shows every key but
``algorithms`` (default: every algorithm the deployment runs).

Examples
--------
>>> policy = parse_policy('''
... deployment: gate-a
... attributes: [sex, race]
... baseline: {duration: 1h}
... policy_ratio: 2
... ''')
>>> policy.deployment, policy.band, policy.resolve_after, policy.false_alarms_per_day
('gate-a', 1.0, 3600, 0.1)
>>> parse_policy('deployment: gate-a\\nattributes: [sex]\\nbaseline: {duration: 1h}\\nband: 0.5\\n')
Traceback (most recent call last):
...
fairwatch.detect.policy.PolicyError: <policy>:4: band: 0.5 is less than the minimum of 1
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource

from fairwatch.contracts.records import ContractError, parse_timestamp
from fairwatch.core.layout import INTERSECTION_SEP
from fairwatch.store.clickhouse import SCHEMAS_DIR

__all__ = ["Policy", "LabelBacklog", "PolicyError", "parse_policy", "load_policy", "load_policies", "parse_seconds"]

ALERT_TYPES = ("error_rate_drift", "disparity_breach", "score_drift", "insufficient_evidence", "label_backlog")
DEFAULT_SEVERITY = {"error_rate_drift": "critical", "disparity_breach": "critical", "score_drift": "warning",
                    "insufficient_evidence": "info", "label_backlog": "warning"}
_DURATION = re.compile(r"^([0-9]+)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PolicyError(ValueError):
    """An invalid policy file: ``source``, ``line`` (1-based, or None) and ``reason``."""

    def __init__(self, source: str, line: int | None, reason: str):
        super().__init__(f"{source}:{line}: {reason}" if line else f"{source}: {reason}")
        self.source, self.line, self.reason = source, line, reason


def parse_seconds(text: str) -> int:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` -> seconds (``"0s"`` is allowed).

    >>> parse_seconds("15m"), parse_seconds("0s")
    (900, 0)
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 1h or 7d")
    return int(m.group(1)) * _UNIT[m.group(2)]


@dataclass(frozen=True)
class LabelBacklog:
    """The ``label_backlog`` key: too many returned matches still unverified after a while.

    Parameters
    ----------
    after
        Seconds after ``occurred_at`` from which a match without a verified outcome is backlog.
    max_share
        The alert fires when the backlog is more than this share of the matches of
        ``[t - lookback, t - after]``.
    min_matches
        Matches the window needs before it can fire.

    Examples
    --------
    >>> parse_policy('deployment: gate-a\\nattributes: [sex]\\nbaseline: {duration: 1h}\\n'
    ...              'label_backlog: {after: 6h, max_share: 0.05}\\n').label_backlog
    LabelBacklog(after=21600, max_share=0.05, min_matches=50)
    """

    after: int
    max_share: float
    min_matches: int = 50


@dataclass(frozen=True)
class Policy:
    """One deployment's alerting policy (keys documented in ``schemas/policy.schema.json``)."""

    deployment: str
    attributes: tuple[str, ...]
    baseline_from: datetime | None = None
    baseline_to: datetime | None = None
    baseline_seconds: int | None = None
    algorithms: tuple[str, ...] | None = None
    intersections: tuple[tuple[str, ...], ...] = ()
    metrics: tuple[str, ...] = ("fmr", "fnmr")
    target_fmr: float | None = None
    target_fnmr: float | None = None
    policy_ratio: float | None = None
    reference: dict[str, str] = field(default_factory=dict)
    band: float = 1.0
    baseline_confidence: float = 0.99
    min_evidence: int = 1000
    false_alarms_per_day: float = 0.1
    resolve_after: int = 3600
    lookback: int = 86400
    label_delay: int = 0
    label_maturity: int | None = None
    ratio_floor: dict[str, float] = field(default_factory=dict)
    score_quantile: float | None = 0.99
    cluster_unit: str | None = None  # subject | session: what match events' cluster_id keys
    label_backlog: LabelBacklog | None = None
    severity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY))
    routing: dict[str, str] = field(default_factory=dict)
    runbook_url: str = ""  # "": none configured, no link is sent (a placeholder host would mislead)
    dashboard_url: str = ""
    source: str = "<policy>"

    @property
    def attribute_sets(self) -> tuple[str, ...]:
        """Attribute names as stored in group_counts: single attributes, then ``a&b`` intersections."""
        return self.attributes + tuple(INTERSECTION_SEP.join(c) for c in self.intersections)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    def load(name: str) -> dict:
        return json.loads((SCHEMAS_DIR / name).read_text())

    policy, common = load("policy.schema.json"), load("common.schema.json")
    registry = Registry().with_resources(
        [(s["$id"], Resource.from_contents(s)) for s in (policy, common)]
        + [("common.schema.json", Resource.from_contents(common))]
    )
    return jsonschema.Draft202012Validator(policy, registry=registry,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _line_of(node: yaml.Node | None, path: list) -> int | None:
    """Line (1-based) of the YAML node at ``path`` (keys and indexes), or of its deepest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == step), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(path: list) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "(top level)"


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and check one policy document; raise :class:`PolicyError` with the line and reason."""
    try:
        node = yaml.compose(text)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(source, mark.line + 1 if mark else None, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(document, dict):
        raise PolicyError(source, 1, "a policy is a mapping of keys such as deployment, attributes, baseline")
    # timestamps stay strings for the schema (YAML would turn unquoted ones into datetimes)
    document = json.loads(json.dumps(document, default=str))
    errors = sorted(_validator().iter_errors(document), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            if unknown:
                path.append(unknown[0])
                raise PolicyError(source, _line_of(node, path), f"{_dotted(path)}: unknown key")
        message = error.message
        if error.validator == "oneOf" and path == ["baseline"]:
            message = "give either from and to, or duration"
        raise PolicyError(source, _line_of(node, path), f"{_dotted(path)}: {message}")

    def fail(path: list, reason: str):
        raise PolicyError(source, _line_of(node, path), f"{_dotted(path)}: {reason}")

    baseline = document["baseline"]
    start = end = None
    if "from" in baseline:
        try:
            start, end = parse_timestamp(baseline["from"], "from"), parse_timestamp(baseline["to"], "to")
        except ContractError as exc:
            fail(["baseline"], exc.rejection.message)
        if start >= end:
            fail(["baseline", "to"], f"{baseline['to']} is not after {baseline['from']}")
    attributes = tuple(document["attributes"])
    for i, combo in enumerate(document.get("intersections", [])):
        missing = [a for a in combo if a not in attributes]
        if missing:
            fail(["intersections", i], f"{', '.join(missing)} not in attributes")
    intersections = tuple(tuple(c) for c in document.get("intersections", []))
    known_sets = attributes + tuple(INTERSECTION_SEP.join(c) for c in intersections)
    for name in document.get("reference", {}):
        if name not in known_sets:
            fail(["reference", name], f"not a watched attribute set ({', '.join(known_sets)})")
    if "reference" in document and "policy_ratio" not in document:
        fail(["reference"], "a reference group needs policy_ratio")
    score = document.get("score_drift", {})
    lookback = max(parse_seconds(document.get("lookback", "1d")), 1)
    backlog = None
    if "label_backlog" in document:
        spec = document["label_backlog"]
        backlog = LabelBacklog(parse_seconds(spec["after"]), float(spec["max_share"]), int(spec.get("min_matches", 50)))
        if backlog.after >= lookback:  # the window [t - lookback, t - after] would hold no match
            fail(["label_backlog", "after"], f"{spec['after']} is not shorter than lookback "
                                              f"({document.get('lookback', '1d')})")
    return Policy(
        deployment=document["deployment"],
        attributes=attributes,
        baseline_from=start,
        baseline_to=end,
        baseline_seconds=parse_seconds(baseline["duration"]) if "duration" in baseline else None,
        algorithms=tuple(document["algorithms"]) if "algorithms" in document else None,
        intersections=intersections,
        metrics=tuple(document.get("metrics", ("fmr", "fnmr"))),
        target_fmr=document.get("target_fmr"),
        target_fnmr=document.get("target_fnmr"),
        policy_ratio=document.get("policy_ratio"),
        reference=dict(document.get("reference", {})),
        band=float(document.get("band", 1.0)),
        baseline_confidence=float(document.get("baseline_confidence", 0.99)),
        min_evidence=int(document.get("min_evidence", 1000)),
        false_alarms_per_day=float(document.get("false_alarms_per_day", 0.1)),
        resolve_after=parse_seconds(document.get("resolve_after", "1h")),
        lookback=lookback,
        label_delay=parse_seconds(document.get("label_delay", "0s")),
        label_maturity=parse_seconds(document["label_maturity"]) if "label_maturity" in document else None,
        ratio_floor={rate: float(value) for rate, value in document.get("ratio_floor", {}).items()},
        score_quantile=None if score is False else float(score.get("quantile", 0.99)),
        cluster_unit=document.get("cluster_unit"),
        label_backlog=backlog,
        severity={**DEFAULT_SEVERITY, **document.get("severity", {})},
        routing=dict(document.get("routing", {})),
        runbook_url=_link(document, "runbook_url", fail),
        dashboard_url=_link(document, "dashboard_url", fail),
        source=source,
    )


LINK_FIELDS = ("deployment", "algorithm", "group", "metric", "type", "from_ms", "to_ms")


def _link(document: dict, key: str, fail) -> str:
    """A runbook or dashboard URL template; its placeholders must be :data:`LINK_FIELDS`."""
    template = document.get(key, "")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        fail([key], f"not a URL template: {exc}")
    unknown = sorted(names - set(LINK_FIELDS))
    if unknown:
        fail([key], f"unknown placeholder {{{unknown[0]}}}; known: {', '.join('{' + f + '}' for f in LINK_FIELDS)}")
    return template


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(str(path), None, f"cannot read: {exc.strerror}") from None
    return parse_policy(text, str(path))


def load_policies(path: str | Path) -> dict[str, Policy]:
    """One file, or every ``*.yaml`` / ``*.yml`` of a directory; deployment -> policy (one each)."""
    path = Path(path)
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    if not files:
        raise PolicyError(str(path), None, "no policy files (*.yaml) here")
    policies: dict[str, Policy] = {}
    for file in files:
        policy = load_policy(file)
        if policy.deployment in policies:
            raise PolicyError(str(file), _line_of(yaml.compose(file.read_text()), ["deployment"]),
                              f"deployment {policy.deployment} already has a policy in {policies[policy.deployment].source}")
        policies[policy.deployment] = policy
    return policies
