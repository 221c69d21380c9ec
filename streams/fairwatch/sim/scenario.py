"""Scenarios (YAML): deployments, algorithms, who is compared and how often each group is misjudged, parsed with errors that name the offending key; and the rate model that turns a scenario into per-cell error rates and score distributions."""

from __future__ import annotations

import difflib
import importlib.resources
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
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

MODES = ("verification", "identification")
OVERALL = "*"  # attribute and label of the whole population in truth rows (not a valid attribute name)


METRICS = ("fmr", "fnmr")


MAX_EVENTS = 20_000_000  # everything is generated in memory (peak ~200 bytes per event)


_ID_RE = re.compile(ID_PATTERN)


_ATTRIBUTE_RE = re.compile(ATTRIBUTE_PATTERN)


_LABEL_RE = re.compile(LABEL_PATTERN)


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
    # identification searches return candidate lists (at most this long, those at or above the
    # threshold, as Amazon Rekognition does) when set; None: searches carry no list
    list_length: int | None = None
    gallery_size: int | None = None


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
    independent_review_prob: float = 0.0  # verified events reviewed again, blind ("review": "independent")
    # identification searches that returned a match, verified: the share acted on (their verdicts
    # then name their verifiers and action_taken), and of those the share confirmed by one person only
    action_prob: float = 0.0
    single_verifier_prob: float = 0.0


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
class Subjects:
    """Returning subjects: each event's probe is one of ``per_group`` pseudonymous subjects of its
    demographic cell, drawn afresh for each event, whose latent score shift is shared by all its
    comparisons with intra-subject correlation ``correlation``: a hard face errs again. Events carry
    the subject's ``cluster_id`` (a keyed hash). The rates are the scenario's averaged over subject
    draws only: a cell's few subjects have a realised rate around its target (5-95% range about
    0.4-1.9x at 240 subjects and correlation 0.6), which ``truth.json`` does not report; the
    subjects' visits are not bunched in time, so the counts per bucket stay binomial."""

    per_group: int
    correlation: float


@dataclass(frozen=True)
class AcquisitionSpec:
    """Acquisition attempts before each event (:mod:`fairwatch.sim.acquisitions`): a face is tried
    until one is acquired, each try failing with the cell's ``fta`` (a rate spec: base and factors),
    within ``max_attempts`` tries (a capture transaction's limit).
    ``encounter_correlation``: the intra-encounter correlation of failures (an encounter's own
    failure probability is Beta-distributed around the cell's); ``low_quality_share``: the failures
    found below the quality bar rather than not found; ``labelled_share``: the encounters whose
    subject labels the operator records; ``keyed``: attempts carry their encounter's cluster_id."""

    fta: RateSpec
    encounter_correlation: float = 0.0
    low_quality_share: float = 0.3
    labelled_share: float = 1.0
    keyed: bool = True
    max_attempts: int = 10


@dataclass(frozen=True)
class UseSpec:
    """Uses (sessions) of every deployment, back to back, each ``hours`` long (:mod:`fairwatch.sim.uses`)."""

    hours: float
    reference_database: str = "watchlist"
    reference_version: str | None = None
    operator_role: str | None = None


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
    subjects: Subjects | None = None
    acquisition: AcquisitionSpec | None = None
    uses: UseSpec | None = None

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
            # list_length / gallery_size only when set: the records of older scenarios stay as they were
            "deployments": [{k: v for k, v in asdict(d).items() if v is not None} for d in self.deployments],
            # the later keys only when set: the records of older scenarios stay as they were
            "verification": {k: v for k, v in asdict(self.verification).items()
                             if k not in ("independent_review_prob", "action_prob", "single_verifier_prob") or v},
            "drifts": [drift(d) for d in self.drifts],
            # only when set: the records of scenarios without returning subjects stay as they were
            **({"subjects": asdict(self.subjects)} if self.subjects is not None else {}),
            **({"acquisition": asdict(self.acquisition)} if self.acquisition is not None else {}),
            **({"uses": {k: v for k, v in asdict(self.uses).items() if v is not None}} if self.uses is not None else {}),
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
        "match_prob", "non_match_prob", "delay_hours", "reviewers", "error_prob", "correction_delay_hours",
        "independent_review_prob", "action_prob", "single_verifier_prob"))
    p = "verification"
    return Verification(
        match_prob=_number(raw.get("match_prob", d.match_prob), f"{p}.match_prob", lo=0.0, lo_open=True, hi=1.0),
        non_match_prob=_number(raw.get("non_match_prob", d.non_match_prob), f"{p}.non_match_prob",
                               lo=0.0, lo_open=True, hi=1.0),
        delay_hours=_lognormal(raw.get("delay_hours"), f"{p}.delay_hours", d.delay_hours),
        reviewers=_integer(raw.get("reviewers", d.reviewers), f"{p}.reviewers", lo=1, hi=10_000),
        error_prob=_number(raw.get("error_prob", d.error_prob), f"{p}.error_prob", lo=0.0, hi=0.5, hi_open=True),
        correction_delay_hours=_lognormal(raw.get("correction_delay_hours"), f"{p}.correction_delay_hours",
                                          d.correction_delay_hours),
        independent_review_prob=_number(raw.get("independent_review_prob", d.independent_review_prob),
                                        f"{p}.independent_review_prob", lo=0.0, hi=1.0),
        action_prob=_number(raw.get("action_prob", d.action_prob), f"{p}.action_prob", lo=0.0, hi=1.0),
        single_verifier_prob=_number(raw.get("single_verifier_prob", d.single_verifier_prob),
                                     f"{p}.single_verifier_prob", lo=0.0, hi=1.0),
    )


def parse_scenario(source: str | Mapping[str, Any]) -> Scenario:
    """Validate a scenario given as YAML text or an already-loaded mapping.

    Raises :class:`ScenarioError` naming the first offending key and why.

    Examples
    --------
    >>> parse_scenario("start: 2026-11-25T06:00:00Z\\nduration_hour: 2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fairwatch.sim.scenario.ScenarioError: duration_hour: unknown key (did you mean 'duration_hours'?); allowed: ...
    """
    if isinstance(source, str):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ScenarioError("", f"not valid YAML: {exc}") from None
    raw = _mapping(source, "", required=("start", "duration_hours", "attributes", "algorithms", "deployments"),
                   optional=("name", "seed", "events_per_second", "events", "impostor_same_demographics",
                             "verification", "drifts", "subjects", "acquisition", "uses"))
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
                        optional=("share", "identification_share", "impostor_share", "list_length", "gallery_size"))
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
            list_length=(_integer(spec["list_length"], f"{path}.list_length", lo=2, hi=4096)
                         if "list_length" in spec else None),
            gallery_size=(_integer(spec["gallery_size"], f"{path}.gallery_size", lo=1, hi=2**53 - 1)
                          if "gallery_size" in spec else None),
        ))
        if deployments[-1].gallery_size is not None and deployments[-1].list_length is None:
            raise ScenarioError(f"{path}.gallery_size", "a gallery size describes candidate lists: set list_length too")
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
        subjects=_subjects(raw["subjects"]) if raw.get("subjects") is not None else None,
        acquisition=_acquisition(raw["acquisition"], attributes) if raw.get("acquisition") is not None else None,
        uses=_uses(raw["uses"]) if raw.get("uses") is not None else None,
    )
    _check_rates(scenario)
    return scenario


def _subjects(raw: Any) -> Subjects:
    spec = _mapping(raw, "subjects", required=("per_group", "correlation"))
    return Subjects(per_group=_integer(spec["per_group"], "subjects.per_group", lo=1, hi=10**7),
                    correlation=_number(spec["correlation"], "subjects.correlation", lo=0.0, hi=1.0, hi_open=True))


def _acquisition(raw: Any, attributes: Mapping[str, Mapping[str, float]]) -> AcquisitionSpec:
    p = "acquisition"
    spec = _mapping(raw, p, required=("fta",),
                    optional=("encounter_correlation", "low_quality_share", "labelled_share", "keyed",
                              "max_attempts"))
    keyed = spec.get("keyed", True)
    if not isinstance(keyed, bool):
        raise ScenarioError(f"{p}.keyed", f"must be true or false, got {keyed!r}")
    return AcquisitionSpec(
        fta=_rate_spec(spec["fta"], f"{p}.fta", attributes),
        encounter_correlation=_number(spec.get("encounter_correlation", 0.0), f"{p}.encounter_correlation",
                                      lo=0.0, hi=1.0, hi_open=True),
        low_quality_share=_number(spec.get("low_quality_share", 0.3), f"{p}.low_quality_share", lo=0.0, hi=1.0),
        labelled_share=_number(spec.get("labelled_share", 1.0), f"{p}.labelled_share", lo=0.0, hi=1.0),
        keyed=keyed,
        max_attempts=_integer(spec.get("max_attempts", 10), f"{p}.max_attempts", lo=1, hi=10_000),
    )


def _uses(raw: Any) -> UseSpec:
    spec = _mapping(raw, "uses", required=("hours",),
                    optional=("reference_database", "reference_version", "operator_role"))
    return UseSpec(
        hours=_number(spec["hours"], "uses.hours", lo=0.0, lo_open=True),
        reference_database=_name(spec.get("reference_database", "watchlist"), "uses.reference_database"),
        reference_version=_name(spec["reference_version"], "uses.reference_version") if "reference_version" in spec else None,
        operator_role=_name(spec["operator_role"], "uses.operator_role") if "operator_role" in spec else None,
    )


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
    model = RateModel(scenario)
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


def _cell_text(model: RateModel, c: int) -> str:
    return " & ".join(f"{a}={l}" for a, l in zip(model.attribute_names, model.cell_labels[c]))


def verification_only(scenario: Scenario) -> Scenario:
    """The scenario with every deployment's identification searches left out (their share 0, no
    lists): the same draws, so its verification traffic is what the scenario gives it when the
    share is 0 (the demo report of the docs is the demo's verification gate, say)."""
    return replace(scenario, deployments=[replace(d, identification_share=0.0, list_length=None, gallery_size=None)
                                          for d in scenario.deployments])


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


class RateModel:
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
