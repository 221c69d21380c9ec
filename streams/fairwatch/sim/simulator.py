"""A deterministic deployment simulator: match events, verified outcomes and their ground truth.

A scenario (YAML) describes deployments, the algorithms they run, who is compared (demographic
attributes and their proportions) and how often each group is misjudged. Scores are drawn from
per-group normal distributions *calibrated* so that, at the deployment's threshold, the chance of
a false match (or false non-match) is exactly the configured rate:

* impostor scores ~ Normal(t - isf(FMR), 1), so P(score >= t) = FMR;
* genuine scores ~ Normal(t + isf(FNMR), 1), so P(score < t) = FNMR.

A cell (one label of every attribute, e.g. ``F & Black & 30-49``) has the rate
``base * product of the factors of its labels``; a group such as ``race=Black`` has the mixture of
its cells' rates, weighted by their proportions, which :func:`simulate` reports as its target.
In identification mode the same words mean FPIR and FNIR.

Everything is drawn from one seeded ``numpy.random.Generator`` in a fixed order, vectorized, so
the same scenario and seed give byte-identical files and a million events take seconds.

The scenario keys are documented one by one in ``fairwatch/scenarios/default.yaml``; the shape
of ``truth.json`` in :meth:`Simulation.truth`. Outputs: :func:`write_jsonl` (files) or
:func:`publish` (Kafka, through the small :func:`open_kafka_writer` seam).

Examples
--------
>>> scenario = parse_scenario('''
... start: "2026-11-25T06:00:00Z"
... duration_hours: 1
... events: 2000
... attributes: {race: {Black: 0.5, White: 0.5}}
... algorithms:
...   algo-1:
...     fmr: {base: 0.01, factors: {race: {Black: 3}}}
...     fnmr: 0.02
... deployments: [{name: gate-a, algorithm: algo-1, threshold: 3.0, impostor_share: 0.5}]
... drifts: [{name: lighting, kind: rate, at: 0.5, metric: fmr, factor: 3, group: {race: Black}}]
... ''')
>>> sim = simulate(scenario, seed=7)
>>> sim.n_events, sim.event_ids[:2]
(2000, ['sim-7-0000', 'sim-7-0001'])
>>> truth = sim.truth()
>>> [(r["label"], r["segment"], r["target_fmr"]) for r in truth["groups"] if r["attribute"] == "race"]
[('Black', 0, 0.03), ('White', 0, 0.01), ('Black', 1, 0.09), ('White', 1, 0.01)]
>>> line = sim.event_lines(range(1))[0]
>>> from fairwatch.contracts.records import decode_match_event
>>> decode_match_event(line).event_id
'sim-7-0000'
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence

import numpy as np
import typer
import yaml
from scipy.stats import norm

from fairwatch.contracts.records import (
    ATTRIBUTE_PATTERN,
    ID_PATTERN,
    LABEL_PATTERN,
    MAX_ID_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    ContractError,
    format_timestamp,
    parse_timestamp,
)
from fairwatch.contracts.topics import DEFAULT_PREFIX

MODES = ("verification", "identification")
METRICS = ("fmr", "fnmr")
MAX_EVENTS = 20_000_000  # everything is generated in memory (peak ~200 bytes per event)
SCORE_DECIMALS = 6  # the decision is taken on the written (rounded) score, so the two agree
OVERALL = "*"  # attribute and label of the whole population in truth rows (not a valid attribute name)
_US_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_ID_RE = re.compile(ID_PATTERN)
_ATTRIBUTE_RE = re.compile(ATTRIBUTE_PATTERN)
_LABEL_RE = re.compile(LABEL_PATTERN)


# ---- scenario ------------------------------------------------------------------------------------


class ScenarioError(ValueError):
    """An invalid scenario: ``key`` is the dotted path of the offending entry (``deployments[1].threshold``)."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class RateSpec:
    """Error rate of a cell = ``base`` times the factor of each of its labels (missing factors are 1)."""

    base: float
    factors: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Algorithm:
    """Per-group error rates of one algorithm version at the deployment threshold.

    ``fmr`` / ``fnmr`` hold in verification mode; ``fpir`` / ``fnir`` in identification mode
    (defaulting to ``fmr`` / ``fnmr``).
    """

    name: str
    fmr: RateSpec
    fnmr: RateSpec
    fpir: RateSpec
    fnir: RateSpec


@dataclass(frozen=True)
class Deployment:
    """A site: its share of the traffic, algorithm, threshold, mode mix and impostor share."""

    name: str
    algorithm: str
    threshold: float
    share: float = 1.0
    identification_share: float = 0.0
    impostor_share: float = 0.5


@dataclass(frozen=True)
class LogNormal:
    """A lognormal duration in hours: ``median * exp(sigma * Z)``."""

    median: float
    sigma: float


@dataclass(frozen=True)
class Verification:
    """Which events reviewers verify, how late, and how often they first get it wrong."""

    match_prob: float = 1.0
    non_match_prob: float = 0.05
    delay_hours: LogNormal = LogNormal(6.0, 1.0)
    reviewers: int = 20
    error_prob: float = 0.0
    correction_delay_hours: LogNormal = LogNormal(24.0, 0.5)


@dataclass(frozen=True)
class RateDrift:
    """From ``at`` (until ``until``) the ``metric`` of the cells in ``group`` is multiplied by ``factor``.

    ``deployments`` / ``algorithms`` / ``modes`` restrict it (``None`` = all).
    """

    name: str
    at: datetime
    metric: str
    factor: float
    group: dict[str, str]
    until: datetime | None = None
    deployments: tuple[str, ...] | None = None
    algorithms: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    kind: str = "rate"


@dataclass(frozen=True)
class Rollout:
    """From ``at`` the deployments running ``source`` switch to ``target``, linearly over ``ramp_hours``.

    ``deployments`` is resolved when parsing to those (listed, or all) that run ``source`` then.
    """

    name: str
    at: datetime
    source: str
    target: str
    ramp_hours: float = 0.0
    deployments: tuple[str, ...] | None = None
    kind: str = "rollout"

    @property
    def until(self) -> datetime:
        return self.at + timedelta(hours=self.ramp_hours)


@dataclass(frozen=True)
class Scenario:
    """A parsed, validated scenario (see ``scenarios/default.yaml`` for every key, commented)."""

    start: datetime
    duration_hours: float
    events_per_second: float
    attributes: dict[str, dict[str, float]]
    algorithms: dict[str, Algorithm]
    deployments: tuple[Deployment, ...]
    name: str = "scenario"
    seed: int = 0
    events: int | None = None
    impostor_same_demographics: float = 0.8
    verification: Verification = Verification()
    drifts: tuple[RateDrift | Rollout, ...] = ()

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.duration_hours)

    @property
    def n_events(self) -> int:
        if self.events is not None:
            return self.events
        return max(1, round(self.events_per_second * self.duration_hours * 3600))

    def to_dict(self) -> dict[str, Any]:
        """The scenario in its input format, JSON-ready, as ``truth.json`` records it (``parse_scenario`` reads it back)."""
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return format_timestamp(value)
            if isinstance(value, tuple):
                return list(value)
            return value

        def drift(d: RateDrift | Rollout) -> dict[str, Any]:
            raw = {k: plain(v) for k, v in asdict(d).items() if v is not None}
            if isinstance(d, Rollout):
                raw["from"], raw["to"] = raw.pop("source"), raw.pop("target")
            return raw

        return {
            "name": self.name, "seed": self.seed, "start": format_timestamp(self.start),
            "duration_hours": self.duration_hours, "events": self.n_events,
            "impostor_same_demographics": self.impostor_same_demographics,
            "attributes": self.attributes,
            "algorithms": {name: {k: asdict(getattr(a, k)) for k in ("fmr", "fnmr", "fpir", "fnir")}
                           for name, a in self.algorithms.items()},
            "deployments": [asdict(d) for d in self.deployments],
            "verification": asdict(self.verification),
            "drifts": [drift(d) for d in self.drifts],
        }


def _suggest(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _mapping(value: Any, path: str, required: Sequence[str] = (), optional: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(path, f"must be a mapping, got {type(value).__name__}")
    allowed = (*required, *optional)
    for key in value:
        if not isinstance(key, str):
            raise ScenarioError(path, f"key {key!r} must be a string (quote it in YAML)")
        if allowed and key not in allowed:
            raise ScenarioError(_join(path, key), f"unknown key{_suggest(key, allowed)}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in value:
            raise ScenarioError(_join(path, key), "is required")
    return value


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _number(value: Any, path: str, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
        try:
            value = float(value)
        except ValueError:
            raise ScenarioError(path, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(path, f"must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ScenarioError(path, f"must be finite, got {value!r}")
    if lo is not None and (number < lo or (lo_open and number == lo)):
        raise ScenarioError(path, f"must be {'>' if lo_open else '>='} {lo:g}, got {value!r}")
    if hi is not None and (number > hi or (hi_open and number == hi)):
        raise ScenarioError(path, f"must be {'<' if hi_open else '<='} {hi:g}, got {value!r}")
    return number


def _integer(value: Any, path: str, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(path, f"must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise ScenarioError(path, f"must be between {lo} and {hi}, got {value}")
    return value


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or not _ID_RE.fullmatch(value):
        raise ScenarioError(path, f"must be 1-{MAX_ID_LENGTH} printable ASCII characters without spaces, got {value!r}")
    return value


def _timestamp(value: Any, path: str, start: datetime | None = None) -> datetime:
    """An aware datetime, an RFC 3339 string, or (when ``start`` is given) hours after the start."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ScenarioError(path, f"{value.isoformat()} has no UTC offset; add 'Z' or '+hh:mm'")
        return value.astimezone(timezone.utc)
    if start is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return start + timedelta(hours=_number(value, path))
    try:
        return parse_timestamp(value, path).astimezone(timezone.utc)
    except ContractError as exc:
        hint = " or a number of hours after start" if start is not None else ""
        raise ScenarioError(path, f"must be an RFC 3339 time with offset{hint}; {exc.rejection.message}") from None


def _proportions(value: Any, path: str, what: str) -> dict[str, float]:
    raw = _mapping(value, path)
    if not raw:
        raise ScenarioError(path, f"needs at least one {what}")
    out = {}
    for key, share in raw.items():
        out[key] = _number(share, _join(path, key), lo=0.0, lo_open=True, hi=1.0)
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ScenarioError(path, f"proportions must sum to 1, got {total:g}")
    return out


def _attributes(value: Any) -> dict[str, dict[str, float]]:
    raw = _mapping(value, "attributes")
    if not raw:
        raise ScenarioError("attributes", "needs at least one demographic attribute")
    if len(raw) > MAX_LABELS:
        raise ScenarioError("attributes", f"at most {MAX_LABELS} attributes, got {len(raw)}")
    out = {}
    for attribute, labels in raw.items():
        path = _join("attributes", attribute)
        if not _ATTRIBUTE_RE.fullmatch(attribute):
            raise ScenarioError(path, "attribute names start with a letter and hold letters, digits or '_' (max 64)")
        for label in _mapping(labels, path):
            if len(label) > MAX_LABEL_LENGTH or not _LABEL_RE.fullmatch(label):
                raise ScenarioError(_join(path, label), f"labels are 1-{MAX_LABEL_LENGTH} characters without '&'")
        out[attribute] = _proportions(labels, path, "label")
    return out


def _rate_spec(value: Any, path: str, attributes: Mapping[str, Mapping[str, float]]) -> RateSpec:
    if not isinstance(value, dict):
        return RateSpec(_number(value, path, lo=0.0, lo_open=True, hi=0.5, hi_open=True))
    raw = _mapping(value, path, required=("base",), optional=("factors",))
    base = _number(raw["base"], _join(path, "base"), lo=0.0, lo_open=True, hi=0.5, hi_open=True)
    factors: dict[str, dict[str, float]] = {}
    fpath = _join(path, "factors")
    for attribute, labels in _mapping(raw.get("factors") or {}, fpath).items():
        apath = _join(fpath, attribute)
        if attribute not in attributes:
            raise ScenarioError(apath, f"unknown attribute{_suggest(attribute, attributes)}; "
                                       f"defined: {', '.join(attributes)}")
        factors[attribute] = {}
        for label, factor in _mapping(labels, apath).items():
            if label not in attributes[attribute]:
                raise ScenarioError(_join(apath, label), f"unknown label{_suggest(label, attributes[attribute])}; "
                                                         f"defined: {', '.join(attributes[attribute])}")
            factors[attribute][label] = _number(factor, _join(apath, label), lo=0.0, lo_open=True)
    return RateSpec(base, factors)


def _names(value: Any, path: str, known: Iterable[str], what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ScenarioError(path, f"must be a non-empty list of {what} names")
    known = list(known)
    for i, item in enumerate(value):
        if item not in known:
            raise ScenarioError(_join(path, i), f"unknown {what} {item!r}{_suggest(str(item), known)}")
    return tuple(value)


def _lognormal(value: Any, path: str, default: LogNormal) -> LogNormal:
    if value is None:
        return default
    raw = _mapping(value, path, optional=("median", "sigma"))
    return LogNormal(
        median=_number(raw.get("median", default.median), _join(path, "median"), lo=0.0, lo_open=True),
        sigma=_number(raw.get("sigma", default.sigma), _join(path, "sigma"), lo=0.0, hi=5.0),
    )


def _verification(value: Any) -> Verification:
    d = Verification()
    if value is None:
        return d
    raw = _mapping(value, "verification", optional=(
        "match_prob", "non_match_prob", "delay_hours", "reviewers", "error_prob", "correction_delay_hours"))
    p = "verification"
    return Verification(
        match_prob=_number(raw.get("match_prob", d.match_prob), f"{p}.match_prob", lo=0.0, lo_open=True, hi=1.0),
        non_match_prob=_number(raw.get("non_match_prob", d.non_match_prob), f"{p}.non_match_prob",
                               lo=0.0, lo_open=True, hi=1.0),
        delay_hours=_lognormal(raw.get("delay_hours"), f"{p}.delay_hours", d.delay_hours),
        reviewers=_integer(raw.get("reviewers", d.reviewers), f"{p}.reviewers", lo=1, hi=1_000_000),
        error_prob=_number(raw.get("error_prob", d.error_prob), f"{p}.error_prob", lo=0.0, hi=0.5, hi_open=True),
        correction_delay_hours=_lognormal(raw.get("correction_delay_hours"), f"{p}.correction_delay_hours",
                                          d.correction_delay_hours),
    )


def parse_scenario(source: str | Mapping[str, Any]) -> Scenario:
    """Validate a scenario given as YAML text or an already-loaded mapping.

    Raises :class:`ScenarioError` naming the first offending key and why.

    Examples
    --------
    >>> parse_scenario("start: 2026-11-25T06:00:00Z\\nduration_hour: 2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fairwatch.sim.simulator.ScenarioError: duration_hour: unknown key (did you mean 'duration_hours'?); allowed: ...
    """
    if isinstance(source, str):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ScenarioError("", f"not valid YAML: {exc}") from None
    raw = _mapping(source, "", required=("start", "duration_hours", "attributes", "algorithms", "deployments"),
                   optional=("name", "seed", "events_per_second", "events", "impostor_same_demographics",
                             "verification", "drifts"))
    name = _name(raw.get("name", "scenario"), "name")
    seed = _integer(raw.get("seed", 0), "seed", lo=0, hi=2**63 - 1)
    start = _timestamp(raw["start"], "start")
    duration = _number(raw["duration_hours"], "duration_hours", lo=0.0, lo_open=True, hi=24 * 366 * 10)
    if "events" in raw and raw["events"] is not None:
        events = _integer(raw["events"], "events", lo=1, hi=MAX_EVENTS)
        rate = events / (duration * 3600)
    else:
        if "events_per_second" not in raw:
            raise ScenarioError("events_per_second", "is required (or give events)")
        events = None
        rate = _number(raw["events_per_second"], "events_per_second", lo=0.0, lo_open=True)
        if rate * duration * 3600 > MAX_EVENTS:
            raise ScenarioError("events_per_second", f"gives {rate * duration * 3600:.0f} events; at most {MAX_EVENTS}")
    attributes = _attributes(raw["attributes"])

    algorithms: dict[str, Algorithm] = {}
    for algo_name, spec in _mapping(raw["algorithms"], "algorithms").items():
        path = _join("algorithms", algo_name)
        _name(algo_name, path)
        spec = _mapping(spec, path, required=("fmr", "fnmr"), optional=("fpir", "fnir"))
        rates = {k: _rate_spec(spec[k], _join(path, k), attributes) for k in ("fmr", "fnmr", "fpir", "fnir") if k in spec}
        algorithms[algo_name] = Algorithm(algo_name, rates["fmr"], rates["fnmr"],
                                          rates.get("fpir", rates["fmr"]), rates.get("fnir", rates["fnmr"]))
    if not algorithms:
        raise ScenarioError("algorithms", "needs at least one algorithm")

    if not isinstance(raw["deployments"], list) or not raw["deployments"]:
        raise ScenarioError("deployments", "must be a non-empty list")
    deployments = []
    for i, spec in enumerate(raw["deployments"]):
        path = _join("deployments", i)
        spec = _mapping(spec, path, required=("name", "algorithm", "threshold"),
                        optional=("share", "identification_share", "impostor_share"))
        if spec["algorithm"] not in algorithms:
            raise ScenarioError(f"{path}.algorithm", f"unknown algorithm {spec['algorithm']!r}"
                                                     f"{_suggest(str(spec['algorithm']), algorithms)}")
        deployments.append(Deployment(
            name=_name(spec["name"], f"{path}.name"),
            algorithm=spec["algorithm"],
            threshold=_number(spec["threshold"], f"{path}.threshold", lo=-1e6, hi=1e6),
            share=_number(spec.get("share", 1.0), f"{path}.share", lo=0.0, lo_open=True, hi=1.0),
            identification_share=_number(spec.get("identification_share", 0.0), f"{path}.identification_share",
                                         lo=0.0, hi=1.0),
            impostor_share=_number(spec.get("impostor_share", 0.5), f"{path}.impostor_share", lo=0.0, hi=1.0),
        ))
    names = [d.name for d in deployments]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ScenarioError(f"deployments[{i}].name", f"{n!r} is defined twice")
    total = sum(d.share for d in deployments)
    if abs(total - 1.0) > 1e-6:
        raise ScenarioError("deployments", f"shares must sum to 1, got {total:g}")

    end = start + timedelta(hours=duration)
    drifts: list[RateDrift | Rollout] = []
    raw_drifts = raw.get("drifts") or []
    if not isinstance(raw_drifts, list):
        raise ScenarioError("drifts", "must be a list")
    for i, spec in enumerate(raw_drifts):
        path = _join("drifts", i)
        kind = _mapping(spec, path).get("kind")
        common = ("name", "kind", "at", "deployments")
        if kind == "rate":
            spec = _mapping(spec, path, required=("name", "kind", "at", "metric", "factor", "group"),
                            optional=(*common, "until", "algorithms", "modes"))
        elif kind == "rollout":
            spec = _mapping(spec, path, required=("name", "kind", "at", "from", "to"), optional=(*common, "ramp_hours"))
        else:
            raise ScenarioError(f"{path}.kind", f"must be 'rate' or 'rollout', got {kind!r}")
        at = _timestamp(spec["at"], f"{path}.at", start)
        if not start <= at < end:
            raise ScenarioError(f"{path}.at", f"{format_timestamp(at)} is outside the run "
                                              f"[{format_timestamp(start)}, {format_timestamp(end)})")
        deps = _names(spec["deployments"], f"{path}.deployments", names, "deployment") if "deployments" in spec else None
        if kind == "rate":
            metric = spec["metric"]
            if metric not in METRICS:
                raise ScenarioError(f"{path}.metric", f"must be fmr or fnmr (FPIR / FNIR in identification), got {metric!r}")
            group = _mapping(spec["group"], f"{path}.group")
            if not group:
                raise ScenarioError(f"{path}.group", "must name at least one attribute: label")
            for attribute, label in group.items():
                if attribute not in attributes:
                    raise ScenarioError(f"{path}.group.{attribute}", f"unknown attribute{_suggest(attribute, attributes)}")
                if label not in attributes[attribute]:
                    raise ScenarioError(f"{path}.group.{attribute}", f"unknown label {label!r}; "
                                                                     f"defined: {', '.join(attributes[attribute])}")
            until = _timestamp(spec["until"], f"{path}.until", start) if spec.get("until") is not None else None
            if until is not None and until <= at:
                raise ScenarioError(f"{path}.until", "must be after at")
            modes = _names(spec["modes"], f"{path}.modes", MODES, "mode") if "modes" in spec else None
            algos = _names(spec["algorithms"], f"{path}.algorithms", algorithms, "algorithm") if "algorithms" in spec else None
            drifts.append(RateDrift(
                name=_name(spec["name"], f"{path}.name"), at=at, until=until, metric=metric,
                factor=_number(spec["factor"], f"{path}.factor", lo=0.0, lo_open=True), group=dict(group),
                deployments=deps, algorithms=algos, modes=modes,
            ))
        else:
            for key in ("from", "to"):
                if spec[key] not in algorithms:
                    raise ScenarioError(f"{path}.{key}", f"unknown algorithm {spec[key]!r}{_suggest(str(spec[key]), algorithms)}")
            if spec["from"] == spec["to"]:
                raise ScenarioError(f"{path}.to", "must differ from 'from'")
            running = [n for n in (deps or names) if _algorithm_at(deployments, drifts, n, at) == spec["from"]]
            if not running:
                raise ScenarioError(f"{path}.from", f"no {'listed ' if deps else ''}deployment runs {spec['from']!r} "
                                                    f"at {format_timestamp(at)}")
            deps = tuple(running)
            drifts.append(Rollout(
                name=_name(spec["name"], f"{path}.name"), at=at, source=spec["from"], target=spec["to"],
                ramp_hours=_number(spec.get("ramp_hours", 0.0), f"{path}.ramp_hours", lo=0.0), deployments=deps,
            ))
    scenario = Scenario(
        name=name, seed=seed, start=start, duration_hours=duration, events_per_second=rate, events=events,
        attributes=attributes, algorithms=algorithms, deployments=tuple(deployments),
        impostor_same_demographics=_number(raw.get("impostor_same_demographics", 0.8), "impostor_same_demographics",
                                           lo=0.0, hi=1.0),
        verification=_verification(raw.get("verification")), drifts=tuple(drifts),
    )
    _check_rates(scenario)
    return scenario


def _algorithm_at(deployments: Sequence[Deployment], drifts: Sequence[RateDrift | Rollout], name: str,
                  at: datetime) -> str:
    """The algorithm a deployment runs at ``at`` once earlier rollouts are complete."""
    algorithm = next(d.algorithm for d in deployments if d.name == name)
    for r in sorted((d for d in drifts if isinstance(d, Rollout) and d.at < at), key=lambda r: r.at):
        if r.source == algorithm and (r.deployments is None or name in r.deployments):
            algorithm = r.target
    return algorithm


def _check_rates(scenario: Scenario) -> None:
    """Every cell rate, drifts applied, must stay below 0.5 (else 'calibrated' means nothing)."""
    model = _Model(scenario)
    for s, seg_start in enumerate(model.boundaries[:-1]):
        for k, metric in enumerate(METRICS):
            table = model.rates[s, k]
            if table.max() >= 0.5:
                d, a, m, c = np.unravel_index(int(table.argmax()), table.shape)
                active = [x.name for x in model.rate_drifts if x.metric == metric and model.drift_active(x, seg_start)]
                raise ScenarioError(
                    f"algorithms.{model.algorithms[a]}.{_mode_metric(metric, m)}",
                    f"the rate of {_cell_text(model, c)} at {model.deployments[d].name} reaches {table.max():.3g}"
                    f"{' with drifts ' + ', '.join(active) if active else ''}; rates must stay below 0.5",
                )


def _mode_metric(metric: str, mode: int) -> str:
    return metric if mode == 0 else {"fmr": "fpir", "fnmr": "fnir"}[metric]


def _cell_text(model: _Model, c: int) -> str:
    return " & ".join(f"{a}={l}" for a, l in zip(model.attribute_names, model.cell_labels[c]))


def load_scenario(source: str | os.PathLike | None = None) -> Scenario:
    """Load a scenario from a file path, or a packaged one by name (``default``, ``demo``); ``None`` = default.

    Examples
    --------
    >>> load_scenario("demo").name
    'demo'
    """
    if source is None:
        source = "default"
    path = Path(source)
    if isinstance(source, str) and not path.exists() and "/" not in source and not source.endswith((".yaml", ".yml")):
        resource = importlib.resources.files("fairwatch.sim") / "scenarios" / f"{source}.yaml"
        if not resource.is_file():
            raise ScenarioError("", f"no scenario file {source!r} and no packaged scenario of that name "
                                    f"(packaged: {', '.join(packaged_scenarios())})")
        text, where = resource.read_text(encoding="utf-8"), f"packaged scenario {source!r}"
    else:
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ScenarioError("", f"cannot read scenario {str(path)!r}: {exc.strerror}") from None
    try:
        return parse_scenario(text)
    except ScenarioError as exc:
        raise ScenarioError(exc.key, f"{exc.reason} (in {where})") from None


def packaged_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``fairwatch/scenarios``."""
    folder = importlib.resources.files("fairwatch.sim") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


# ---- the rate model --------------------------------------------------------------------------------


def calibrate(threshold: float, fmr: float | np.ndarray, fnmr: float | np.ndarray) -> tuple[Any, Any]:
    """Means of unit-variance normal impostor and genuine scores giving these rates at ``threshold``.

    Examples
    --------
    >>> mu_impostor, mu_genuine = calibrate(3.0, fmr=1e-3, fnmr=0.02)
    >>> from scipy.stats import norm
    >>> round(float(norm.sf(3.0 - mu_impostor)), 6), round(float(norm.cdf(3.0 - mu_genuine)), 6)
    (0.001, 0.02)
    """
    return threshold - norm.isf(fmr), threshold + norm.isf(fnmr)


class _Model:
    """Cells, segments and the rate table ``rates[segment, metric, deployment, algorithm, mode, cell]``."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.attribute_names = list(scenario.attributes)
        self.labels = [list(scenario.attributes[a]) for a in self.attribute_names]
        shape = [len(l) for l in self.labels]
        self.n_cells = int(np.prod(shape))
        # cell c <-> one label index per attribute, attributes in order, the last varying fastest
        self.cell_index = np.array(np.unravel_index(np.arange(self.n_cells), shape)).T  # (cells, attributes)
        self.cell_labels = [tuple(self.labels[k][i] for k, i in enumerate(row)) for row in self.cell_index]
        props = [np.array(list(scenario.attributes[a].values())) for a in self.attribute_names]
        self.cell_prob = np.ones(self.n_cells)
        for k, p in enumerate(props):
            self.cell_prob *= p[self.cell_index[:, k]]
        self.cell_prob /= self.cell_prob.sum()
        self.deployments = list(scenario.deployments)
        self.algorithms = list(scenario.algorithms)
        self.rate_drifts = [d for d in scenario.drifts if isinstance(d, RateDrift)]
        self.rollouts = sorted((d for d in scenario.drifts if isinstance(d, Rollout)), key=lambda r: r.at)
        times = {scenario.start, scenario.end}
        for d in scenario.drifts:
            times.add(d.at)
            if d.until is not None:
                times.add(d.until)
        self.boundaries = sorted(t for t in times if scenario.start <= t <= scenario.end)
        self.rates = np.stack([self.rate_table(t) for t in self.boundaries[:-1]])

    def cell_mask(self, group: Mapping[str, str]) -> np.ndarray:
        mask = np.ones(self.n_cells, dtype=bool)
        for attribute, label in group.items():
            k = self.attribute_names.index(attribute)
            mask &= self.cell_index[:, k] == self.labels[k].index(label)
        return mask

    def base_rates(self, spec: RateSpec) -> np.ndarray:
        rate = np.full(self.n_cells, spec.base)
        for attribute, factors in spec.factors.items():
            k = self.attribute_names.index(attribute)
            per_label = np.array([factors.get(l, 1.0) for l in self.labels[k]])
            rate *= per_label[self.cell_index[:, k]]
        return rate

    @staticmethod
    def drift_active(drift: RateDrift, t: datetime) -> bool:
        return drift.at <= t and (drift.until is None or t < drift.until)

    def rate_table(self, t: datetime, without: RateDrift | None = None) -> np.ndarray:
        """``[metric, deployment, algorithm, mode, cell]`` rates in force at time ``t``."""
        D, A, C = len(self.deployments), len(self.algorithms), self.n_cells
        table = np.empty((2, D, A, 2, C))
        for a, name in enumerate(self.algorithms):
            algo = self.scenario.algorithms[name]
            for m, (fm, fnm) in enumerate(((algo.fmr, algo.fnmr), (algo.fpir, algo.fnir))):
                table[0, :, a, m] = self.base_rates(fm)
                table[1, :, a, m] = self.base_rates(fnm)
        for drift in self.rate_drifts:
            if drift is without or not self.drift_active(drift, t):
                continue
            k = METRICS.index(drift.metric)
            deps = [i for i, d in enumerate(self.deployments) if drift.deployments is None or d.name in drift.deployments]
            algos = [i for i, a in enumerate(self.algorithms) if drift.algorithms is None or a in drift.algorithms]
            modes = [i for i, m in enumerate(MODES) if drift.modes is None or m in drift.modes]
            cells = self.cell_mask(drift.group)
            table[k][np.ix_(deps, algos, modes, np.flatnonzero(cells))] *= drift.factor
        return table

    def group_targets(self, table: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
        """(attribute, label, rates mixed over the group's cells) for the population and each label."""
        out = [(OVERALL, OVERALL, table @ self.cell_prob)]
        for k, attribute in enumerate(self.attribute_names):
            for i, label in enumerate(self.labels[k]):
                w = np.where(self.cell_index[:, k] == i, self.cell_prob, 0.0)
                out.append((attribute, label, table @ (w / w.sum())))
        return out


# ---- the simulation --------------------------------------------------------------------------------


class Simulation:
    """The generated events and outcomes as columns, with their ground truth.

    Build it with :func:`simulate`. ``event_lines(idx)`` / ``outcome_lines(idx)`` render records
    (compact JSON, keys sorted, as the contracts' ``to_json``); ``truth()`` and ``summary()``
    are JSON-ready dictionaries.
    """

    def __init__(self, scenario: Scenario, seed: int, n_events: int):  # use simulate()
        self.scenario = scenario
        self.seed = seed
        self.model = model = _Model(scenario)
        rng = np.random.default_rng(seed)
        n = self.n_events = n_events
        D, C = len(model.deployments), model.n_cells
        start_us = _to_us(scenario.start)
        span_us = round(scenario.duration_hours * _US_PER_HOUR)

        # The draws below happen in a fixed order, each for all n events, so that the output
        # depends on the seed and the scenario only.
        self.time = start_us + np.sort(rng.integers(0, span_us, n, dtype=np.int64))
        dep_share = np.array([d.share for d in model.deployments])
        self.deployment = rng.choice(D, n, p=dep_share / dep_share.sum()).astype(np.int16)
        self.cell = rng.choice(C, n, p=model.cell_prob).astype(np.int32)
        ident = np.array([d.identification_share for d in model.deployments])
        self.mode = (rng.random(n) < ident[self.deployment]).astype(np.int8)
        imp = np.array([d.impostor_share for d in model.deployments])
        self.genuine = rng.random(n) >= imp[self.deployment]
        same = rng.random(n) < scenario.impostor_same_demographics
        other = rng.choice(C, n, p=model.cell_prob).astype(np.int32)
        self.reference = np.where(self.genuine | same, self.cell, other)

        algo_of_dep = np.array([model.algorithms.index(d.algorithm) for d in model.deployments])
        self.algorithm = algo_of_dep[self.deployment].astype(np.int16)
        for rollout in model.rollouts:
            u = rng.random(n)
            ramp_us = rollout.ramp_hours * _US_PER_HOUR
            elapsed = (self.time - _to_us(rollout.at)).astype(float)
            share = np.clip(elapsed / ramp_us, 0.0, 1.0) if ramp_us > 0 else (elapsed >= 0).astype(float)
            deps = [i for i, d in enumerate(model.deployments) if rollout.deployments is None or d.name in rollout.deployments]
            switch = ((self.algorithm == model.algorithms.index(rollout.source)) & np.isin(self.deployment, deps)
                      & (elapsed >= 0) & (u < share))
            self.algorithm[switch] = model.algorithms.index(rollout.target)

        bounds = np.array([_to_us(t) for t in model.boundaries[1:-1]], dtype=np.int64)
        self.segment = np.searchsorted(bounds, self.time, side="right").astype(np.int16)
        metric = np.where(self.genuine, 1, 0)
        rate = model.rates[self.segment, metric, self.deployment, self.algorithm, self.mode, self.cell]
        thresholds = np.array([d.threshold for d in model.deployments])[self.deployment]
        mu_impostor, mu_genuine = calibrate(thresholds, rate, rate)
        z = rng.standard_normal(n)
        self.score = np.round(np.where(self.genuine, mu_genuine, mu_impostor) + z, SCORE_DECIMALS)
        self.match = self.score >= thresholds

        v = scenario.verification
        inclusion = np.where(self.match, v.match_prob, v.non_match_prob)
        verified = np.flatnonzero(rng.random(n) < inclusion)
        k = len(verified)
        delay = _lognormal_us(rng, v.delay_hours, k)
        reviewer = rng.integers(0, v.reviewers, k)
        wrong = rng.random(k) < v.error_prob
        fix = np.flatnonzero(wrong)
        fix_delay = _lognormal_us(rng, v.correction_delay_hours, len(fix))
        fix_reviewer = rng.integers(0, v.reviewers, len(fix))

        first_at = self.time[verified] + delay
        o_event = np.concatenate([verified, verified[fix]])
        o_time = np.concatenate([first_at, first_at[fix] + fix_delay])
        o_genuine = np.concatenate([self.genuine[verified] ^ wrong, self.genuine[verified[fix]]])
        o_revision = np.concatenate([np.zeros(k, np.int32), np.ones(len(fix), np.int32)])
        o_reviewer = np.concatenate([reviewer, fix_reviewer])
        order = np.lexsort((o_revision, o_event, o_time))  # arrival order, ties broken stably
        self.o_event = o_event[order]
        self.o_time = o_time[order]
        self.o_genuine = o_genuine[order]
        self.o_revision = o_revision[order]
        self.o_reviewer = o_reviewer[order]
        self.o_inclusion = inclusion[self.o_event]
        self.n_outcomes = len(order)
        self.n_corrections = len(fix)

        width = len(str(max(n - 1, 0)))
        self._id_prefix = f"sim-{seed}-"
        self._id_width = width
        self._dep_json = [json.dumps(d.name) for d in model.deployments]
        self._algo_json = [json.dumps(a) for a in model.algorithms]
        self._thr_json = [repr(float(d.threshold)) for d in model.deployments]
        self._cell_json = [
            json.dumps(dict(zip(model.attribute_names, labels)), sort_keys=True, separators=(",", ":"))
            for labels in model.cell_labels
        ]
        self._reviewer_width = len(str(max(v.reviewers - 1, 0)))

    @property
    def event_ids(self) -> list[str]:
        return [self._event_id(i) for i in range(self.n_events)]

    def _event_id(self, i: int) -> str:
        return f"{self._id_prefix}{i:0{self._id_width}d}"

    def event_lines(self, idx: Iterable[int] | np.ndarray) -> list[bytes]:
        """Match events ``idx`` as compact JSON (no trailing newline)."""
        idx = np.asarray(idx if isinstance(idx, np.ndarray) else list(idx), dtype=np.int64)
        stamps = _stamps(self.time[idx])
        dep, algo, cell, ref = (self.deployment[idx].tolist(), self.algorithm[idx].tolist(),
                                self.cell[idx].tolist(), self.reference[idx].tolist())
        mode, match, score = self.mode[idx].tolist(), self.match[idx].tolist(), self.score[idx].tolist()
        dj, aj, tj, cj = self._dep_json, self._algo_json, self._thr_json, self._cell_json
        prefix, w = self._id_prefix, self._id_width
        fmt = f"%.{SCORE_DECIMALS}f"
        out = []
        for j, i in enumerate(idx.tolist()):
            out.append((
                f'{{"algorithm":{aj[algo[j]]},"decision":"{"match" if match[j] else "non_match"}",'
                f'"deployment":{dj[dep[j]]},"event_id":"{prefix}{i:0{w}d}","mode":"{MODES[mode[j]]}",'
                f'"occurred_at":"{stamps[j]}","reference":{cj[ref[j]]},"score":{fmt % score[j]},'
                f'"subject":{cj[cell[j]]},"threshold":{tj[dep[j]]}}}'
            ).encode())
        return out

    def outcome_lines(self, idx: Iterable[int] | np.ndarray) -> list[bytes]:
        """Verified outcomes at positions ``idx`` of the arrival order, as compact JSON."""
        idx = np.asarray(idx if isinstance(idx, np.ndarray) else list(idx), dtype=np.int64)
        stamps = _stamps(self.o_time[idx])
        event, genuine = self.o_event[idx].tolist(), self.o_genuine[idx].tolist()
        revision, reviewer = self.o_revision[idx].tolist(), self.o_reviewer[idx].tolist()
        inclusion = self.o_inclusion[idx].tolist()
        prefix, w, rw = self._id_prefix, self._id_width, self._reviewer_width
        return [(
            f'{{"event_id":"{prefix}{event[j]:0{w}d}","inclusion_prob":{inclusion[j]!r},'
            f'"reviewer":"rev-{reviewer[j]:0{rw}d}","revision":{revision[j]},'
            f'"truth":"{"genuine" if genuine[j] else "impostor"}","verified_at":"{stamps[j]}"}}'
        ).encode() for j in range(len(idx))]

    def event_keys(self, idx: Iterable[int]) -> list[bytes]:
        return [self._event_id(int(i)).encode() for i in idx]

    def outcome_keys(self, idx: Iterable[int]) -> list[bytes]:
        return [self._event_id(int(e)).encode() for e in self.o_event[np.asarray(list(idx), dtype=np.int64)]]

    # ---- ground truth ----------------------------------------------------------------------------

    def _counts(self) -> np.ndarray:
        """``[4, segment, deployment, algorithm, mode, cell]``: impostors, false matches, genuines, false non-matches."""
        m = self.model
        shape = (len(m.boundaries) - 1, len(m.deployments), len(m.algorithms), 2, m.n_cells)
        flat = np.ravel_multi_index((self.segment, self.deployment, self.algorithm, self.mode, self.cell), shape)
        size = int(np.prod(shape))
        imp, gen = ~self.genuine, self.genuine
        counts = [np.bincount(flat[mask], minlength=size) for mask in
                  (imp, imp & self.match, gen, gen & ~self.match)]
        return np.stack(counts).reshape((4, *shape))

    def truth(self) -> dict[str, Any]:
        """The ground truth: true per-group rates by time segment, drifts, and realized counts.

        ``groups`` has one row per (segment, deployment, algorithm, mode, attribute, label) with
        traffic; attribute and label ``"*"`` is the whole population. ``target_fmr`` /
        ``target_fnmr`` are the true rates (FPIR / FNIR in identification mode); ``impostors``,
        ``false_matches``, ``genuines``, ``false_non_matches`` count every generated event
        (verified or not). ``cells`` has the same per full intersection of labels.
        """
        m = self.model
        counts = self._counts()
        segments = [{"index": s, "start": format_timestamp(a), "end": format_timestamp(b)}
                    for s, (a, b) in enumerate(zip(m.boundaries[:-1], m.boundaries[1:]))]
        groups, cells = [], []
        for s, d, a, mode in np.ndindex(counts.shape[1:5]):
            c = counts[:, s, d, a, mode]
            if c[0].sum() + c[2].sum() == 0:
                continue
            key = {"segment": s, "deployment": m.deployments[d].name, "algorithm": m.algorithms[a], "mode": MODES[mode]}
            fm, fnm = m.rates[s, 0, d, a, mode], m.rates[s, 1, d, a, mode]
            for (attribute, label, t_fm), (_, _, t_fnm) in zip(m.group_targets(fm), m.group_targets(fnm)):
                mask = np.ones(m.n_cells, bool) if attribute == OVERALL else m.cell_mask({attribute: label})
                groups.append({**key, "attribute": attribute, "label": label,
                               "target_fmr": _round(t_fm), "target_fnmr": _round(t_fnm),
                               **_count_fields(c[:, mask].sum(axis=1))})
            for cell in range(m.n_cells):
                cells.append({**key, "subject": dict(zip(m.attribute_names, m.cell_labels[cell])),
                              "target_fmr": _round(fm[cell]), "target_fnmr": _round(fnm[cell]),
                              **_count_fields(c[:, cell])})
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "start": format_timestamp(self.scenario.start),
            "end": format_timestamp(self.scenario.end),
            "events": self.n_events,
            "outcomes": self.n_outcomes,
            "corrections": self.n_corrections,
            "score_model": "impostor ~ Normal(threshold - isf(fmr), 1), genuine ~ Normal(threshold + isf(fnmr), 1); "
                           "match when score >= threshold",
            "drifts": [self._drift_truth(x) for x in sorted(self.scenario.drifts, key=lambda x: x.at)],
            "segments": segments,
            "groups": groups,
            "cells": cells,
            "scenario_spec": self.scenario.to_dict(),
        }

    def _drift_truth(self, drift: RateDrift | Rollout) -> dict[str, Any]:
        out: dict[str, Any] = {"name": drift.name, "kind": drift.kind, "at": format_timestamp(drift.at),
                               "until": format_timestamp(drift.until) if drift.until else None}
        m = self.model
        if isinstance(drift, Rollout):
            deps = [d for d, dep in enumerate(m.deployments) if drift.deployments is None or dep.name in drift.deployments]
            out.update({"from": drift.source, "to": drift.target, "ramp_hours": drift.ramp_hours,
                        "deployments": [m.deployments[d].name for d in deps]})
            # The rates of the deployments' traffic change with the algorithm (drifts at `at` applied).
            table, a0, a1 = m.rate_table(drift.at), m.algorithms.index(drift.source), m.algorithms.index(drift.target)
            out["effects"] = [
                {"deployment": m.deployments[d].name, "mode": MODES[mode], "metric": metric,
                 "attribute": attribute, "label": label, "before": _round(before), "after": _round(after),
                 "ratio": _round(after / before)}
                for d in deps for mode in range(2) for k, metric in enumerate(METRICS)
                for (attribute, label, before), (_, _, after) in zip(m.group_targets(table[k, d, a0, mode]),
                                                                     m.group_targets(table[k, d, a1, mode]))
            ]
            return out
        out.update({"metric": drift.metric, "factor": drift.factor, "group": drift.group,
                    "deployments": list(drift.deployments) if drift.deployments else None,
                    "algorithms": list(drift.algorithms) if drift.algorithms else None,
                    "modes": list(drift.modes) if drift.modes else None})
        # Which groups' true rates the drift changes (a group containing the drifted cells moves too).
        k = METRICS.index(drift.metric)
        with_, without = m.rate_table(drift.at)[k], m.rate_table(drift.at, without=drift)[k]
        effects = []
        for d, a, mode in np.ndindex(with_.shape[:3]):
            for (attribute, label, after), (_, _, before) in zip(m.group_targets(with_[d, a, mode]),
                                                                 m.group_targets(without[d, a, mode])):
                if abs(after / before - 1) > 1e-12:
                    effects.append({"deployment": m.deployments[d].name, "algorithm": m.algorithms[a],
                                    "mode": MODES[mode], "attribute": attribute, "label": label,
                                    "before": _round(before), "after": _round(after), "ratio": _round(after / before)})
        out["effects"] = effects
        return out

    def summary(self) -> dict[str, Any]:
        """Counts, and per (algorithm, mode, group) the realized FMR / FNMR over the whole run vs the target.

        The target is the traffic-weighted mean of the true rates of the segments and
        deployments the group's comparisons fell in.
        """
        acc: dict[tuple, list[float]] = {}
        for row in self.truth()["groups"]:
            key = (row["algorithm"], row["mode"], row["attribute"], row["label"])
            a = acc.setdefault(key, [0, 0, 0.0, 0, 0, 0.0])
            a[0] += row["impostors"]
            a[1] += row["false_matches"]
            a[2] += row["target_fmr"] * row["impostors"]
            a[3] += row["genuines"]
            a[4] += row["false_non_matches"]
            a[5] += row["target_fnmr"] * row["genuines"]
        groups = []
        for (algorithm, mode, attribute, label), (ni, fm, tfm, ng, fnm, tfnm) in acc.items():
            groups.append({"algorithm": algorithm, "mode": mode, "attribute": attribute, "label": label,
                           "impostors": ni, "false_matches": fm,
                           "realized_fmr": _ratio(fm, ni), "target_fmr": _ratio(tfm, ni),
                           "genuines": ng, "false_non_matches": fnm,
                           "realized_fnmr": _ratio(fnm, ng), "target_fnmr": _ratio(tfnm, ng)})
        return {"scenario": self.scenario.name, "seed": self.seed, "events": self.n_events,
                "outcomes": self.n_outcomes, "corrections": self.n_corrections,
                "start": format_timestamp(self.scenario.start), "end": format_timestamp(self.scenario.end),
                "drifts": [{"name": d.name, "kind": d.kind, "at": format_timestamp(d.at)} for d in self.scenario.drifts],
                "groups": groups}


def _round(x: float) -> float:
    return float(f"{float(x):.12g}")  # float noise of the mixtures off, for readable JSON


def _ratio(num: float, den: float) -> float | None:
    return _round(num / den) if den else None


def _count_fields(c: np.ndarray) -> dict[str, int]:
    return {"impostors": int(c[0]), "false_matches": int(c[1]), "genuines": int(c[2]), "false_non_matches": int(c[3])}


def _to_us(t: datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _stamps(us: np.ndarray) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(us.astype("datetime64[us]"), unit="us").tolist()]


def _lognormal_us(rng: np.random.Generator, spec: LogNormal, n: int) -> np.ndarray:
    hours = spec.median * np.exp(spec.sigma * rng.standard_normal(n))
    return np.maximum(1, np.round(hours * _US_PER_HOUR)).astype(np.int64)  # strictly after


def simulate(scenario: Scenario, *, seed: int | None = None, events: int | None = None) -> Simulation:
    """Generate a scenario's events and outcomes (deterministic given the seed).

    Parameters
    ----------
    scenario
        From :func:`load_scenario` or :func:`parse_scenario`.
    seed
        Overrides the scenario's ``seed``.
    events
        Overrides the number of events (the duration stays; the event rate changes).

    The overrides are written into ``Simulation.scenario``, so ``truth.json`` records the run.
    """
    if events is not None:
        if not 1 <= events <= MAX_EVENTS:
            raise ScenarioError("events", f"must be between 1 and {MAX_EVENTS}, got {events}")
        scenario = replace(scenario, events=events, events_per_second=events / (scenario.duration_hours * 3600))
    if seed is not None:
        scenario = replace(scenario, seed=seed)
    return Simulation(scenario, scenario.seed, scenario.n_events)


# ---- writers ---------------------------------------------------------------------------------------

CHUNK = 50_000
ProgressFn = Callable[[int], None]  # called with the number of records just written


def write_truth(sim: Simulation, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sim.truth(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_jsonl(sim: Simulation, out_dir: str | os.PathLike, progress: ProgressFn | None = None) -> dict[str, Path]:
    """Write ``events.jsonl`` (event-time order), ``outcomes.jsonl`` (arrival order) and ``truth.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"events": out / "events.jsonl", "outcomes": out / "outcomes.jsonl", "truth": out / "truth.json"}
    for name, n, render in (("events", sim.n_events, sim.event_lines), ("outcomes", sim.n_outcomes, sim.outcome_lines)):
        with open(paths[name], "wb") as handle:
            for lo in range(0, n, CHUNK):
                lines = render(np.arange(lo, min(n, lo + CHUNK)))
                handle.write(b"\n".join(lines) + b"\n")
                if progress:
                    progress(len(lines))
    write_truth(sim, paths["truth"])
    return paths


class Writer(Protocol):
    def send(self, topic: str, key: bytes, value: bytes) -> None: ...
    def close(self) -> None: ...


class KafkaWriter:
    """The smallest kafka-python producer that will do; :func:`open_kafka_writer` is the seam to swap it."""

    def __init__(self, bootstrap: str):
        from kafka import KafkaProducer

        self._producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="fairwatch-simulate", acks="all",
                                       linger_ms=20, batch_size=512 * 1024)
        self._error: BaseException | None = None

    def _failed(self, exc: BaseException) -> None:
        self._error = self._error or exc

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self._error:
            raise RuntimeError(f"Kafka delivery failed: {self._error}")
        self._producer.send(topic, key=key, value=value).add_errback(self._failed)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
        if self._error:
            raise RuntimeError(f"Kafka delivery failed: {self._error}")


class BatchingKafkaWriter:
    """Records in batch envelopes through the producer SDK (:mod:`fairwatch.producer`), as a real
    face-recognition system should send them; the key of each record is its event_id."""

    def __init__(self, bootstrap: str, prefix: str, max_records: int):
        from fairwatch.producer import FairwatchProducer

        self._producer = FairwatchProducer(bootstrap, topic_prefix=prefix, max_records=max_records, validate=False,
                                           client_id="fairwatch-simulate")

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._producer.send_encoded(topic, key.decode(), value)

    def close(self) -> None:
        self._producer.close()


def open_kafka_writer(bootstrap: str, prefix: str = DEFAULT_PREFIX, batch: int = 1) -> Writer:
    """Single-record messages (``batch`` = 1) or batch envelopes of up to ``batch`` records."""
    return KafkaWriter(bootstrap) if batch <= 1 else BatchingKafkaWriter(bootstrap, prefix, batch)


def publish(sim: Simulation, writer: Writer, *, prefix: str = DEFAULT_PREFIX, rate: float = 0.0,
            progress: ProgressFn | None = None, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Send events and outcomes interleaved in time order (an outcome after the events it follows).

    Topics ``{prefix}match-events`` / ``{prefix}verified-outcomes``, key = event_id. ``rate`` > 0
    paces match events to that many per second of wall time; 0 sends as fast as possible.
    ``writer`` is closed (flushed) at the end, also on error.
    """
    topics = (f"{prefix}match-events", f"{prefix}verified-outcomes")
    times = np.concatenate([sim.time, sim.o_time])
    kinds = np.concatenate([np.zeros(sim.n_events, np.int8), np.ones(sim.n_outcomes, np.int8)])
    positions = np.concatenate([np.arange(sim.n_events), np.arange(sim.n_outcomes)])
    order = np.lexsort((kinds, times))  # at equal times the event goes first
    sent_events, began, step = 0, clock(), CHUNK // 5
    try:
        for lo in range(0, len(order), step):
            chunk = order[lo:lo + step]
            is_event = kinds[chunk] == 0
            ev_pos, oc_pos = positions[chunk][is_event], positions[chunk][~is_event]
            records = (iter(zip(sim.event_keys(ev_pos), sim.event_lines(ev_pos))),
                       iter(zip(sim.outcome_keys(oc_pos), sim.outcome_lines(oc_pos))))
            for kind in kinds[chunk].tolist():
                key, value = next(records[kind])
                if kind == 0:
                    if rate > 0 and sent_events % 50 == 0:  # pace in small steps, not per message
                        ahead = began + sent_events / rate - clock()
                        if ahead > 0:
                            sleep(ahead)
                    sent_events += 1
                writer.send(topics[kind], key, value)
            if progress:
                progress(len(chunk))
    finally:
        writer.close()
    return {"events": sim.n_events, "outcomes": sim.n_outcomes}


# ---- command line ----------------------------------------------------------------------------------



def simulate_command(
    scenario: Optional[str] = typer.Option(
        None, "--scenario", help="A scenario YAML file, or a packaged one by name (default, demo). Default: default."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Overrides the scenario's seed."),
    events: Optional[int] = typer.Option(None, "--events", min=1, max=MAX_EVENTS,
                                         help="Overrides the number of events (same duration)."),
    out: Optional[Path] = typer.Option(None, "--out", file_okay=False,
                                       help="Write events.jsonl, outcomes.jsonl and truth.json here (wins over --kafka)."),
    kafka: Optional[str] = typer.Option(None, "--kafka", envvar="FAIRWATCH_KAFKA",
                                        help="Kafka bootstrap servers to publish to (when --out is not given)."),
    topic_prefix: str = typer.Option(DEFAULT_PREFIX, "--topic-prefix", envvar="FAIRWATCH_TOPIC_PREFIX"),
    rate: float = typer.Option(0.0, "--rate", min=0.0, help="Kafka: match events per second of wall time; 0 = as fast as possible."),
    batch: int = typer.Option(100, "--batch", min=1, max=10_000,
                              help="Kafka: records per batch envelope (producer SDK); 1 = one record per message."),
    truth: Optional[Path] = typer.Option(None, "--truth", dir_okay=False,
                                         help="Kafka: also write the ground truth here (with --out: DIR/truth.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
) -> None:
    """Generate match events and verified outcomes from a scenario, to JSONL files or Kafka, with ground truth."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    err = Console(stderr=True)
    if out is None and not kafka:
        err.print("[red]error:[/red] give --out DIR (JSONL files) or --kafka BOOTSTRAP (or set FAIRWATCH_KAFKA)")
        raise typer.Exit(2)
    try:
        spec = load_scenario(scenario)
        began = time.perf_counter()
        sim = simulate(spec, seed=seed, events=events)
    except ScenarioError as exc:
        err.print(f"[red]invalid scenario:[/red] {exc}")
        raise typer.Exit(2) from None
    total = sim.n_events + sim.n_outcomes
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=as_json) as bar:
        task = bar.add_task(f"simulate {spec.name} (seed {sim.seed})", total=total)
        advance = lambda k: bar.advance(task, k)  # noqa: E731
        if out is not None:
            paths = write_jsonl(sim, out, progress=advance)
            target = {k: str(v) for k, v in paths.items()}
        else:
            from kafka.errors import KafkaError

            from fairwatch.stream.topics import ensure_topics

            try:
                ensure_topics(kafka, topic_prefix)
                publish(sim, open_kafka_writer(kafka, topic_prefix, batch), prefix=topic_prefix, rate=rate,
                        progress=advance)
            except (KafkaError, RuntimeError) as exc:
                err.print(f"[red]error:[/red] Kafka at {kafka}: {exc!r}")
                raise typer.Exit(1) from None
            target = {"kafka": kafka, "topics": [f"{topic_prefix}match-events", f"{topic_prefix}verified-outcomes"]}
    if truth is not None:
        target["truth"] = str(write_truth(sim, truth))
    summary = {**sim.summary(), "output": target, "seconds": round(time.perf_counter() - began, 3)}
    if as_json:
        print(json.dumps(summary))
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.3g}%"

    console = Console()
    console.print(f"[bold]{summary['scenario']}[/bold] (seed {summary['seed']}): {summary['events']} events, "
                  f"{summary['outcomes']} outcomes ({summary['corrections']} corrections), "
                  f"{summary['start']} .. {summary['end']}, {summary['seconds']} s")
    for name, where in summary["output"].items():
        console.print(f"  {name}: {where}")
    for d in summary["drifts"]:
        console.print(f"  drift {d['name']} ({d['kind']}) at {d['at']}")
    tables: dict[tuple[str, str], Table] = {}
    for g in summary["groups"]:
        key = (g["algorithm"], g["mode"])
        if key not in tables:
            ident = g["mode"] == "identification"
            tables[key] = table = Table(title=f"{g['algorithm']}, {g['mode']}: realized vs target over the run")
            for column in ("group", "impostors", "FPIR" if ident else "FMR", "target",
                           "genuines", "FNIR" if ident else "FNMR", "target"):
                table.add_column(column, justify="left" if column == "group" else "right")
        group = "all" if g["attribute"] == OVERALL else f"{g['attribute']}={g['label']}"
        tables[key].add_row(group, str(g["impostors"]), pct(g["realized_fmr"]), pct(g["target_fmr"]),
                            str(g["genuines"]), pct(g["realized_fnmr"]), pct(g["target_fnmr"]))
    for table in tables.values():
        console.print(table)
