"""Grafana boards for operators, as code: generated here, committed to ``dashboards/json``.

Four boards read ClickHouse through the official plugin (``grafana-clickhouse-datasource``, uid
:data:`DATASOURCE_UID`): **Overview** (what is wrong now: conditions drifting, near their alarm
threshold, without recent evidence or not tested, from ``alerts`` and ``detector_state``, stale when
no cycle has written states lately; the current differentials with their intervals, judged against
the policy's ``policy_ratio`` by the interval; per-group FMR / FNMR with interval bands, status over
time),
**Disparity** (GARBE, FDR, IR, max/geomean with intervals over time, realized vs intended FMR,
group x time heatmap, per-group FMR(t) and FNMR(t) of the verified scores, FMR by impostor pair as a
subject group x reference group matrix), **Alerts** (firing incidents by severity rank and resolved ones, alerts as
annotations) and **Pipeline health** (ingest rate, consumer lag, pending joins, orphans, dead
letters by reason, sink latency). Colours come from a :class:`BoardPolicy` built from the
alerting policy files, never from numbers of the boards' own.

Rules every panel follows:

* a rate is drawn with its interval; while a group is ``insufficient`` its point estimate is
  NULL (no line, no green zero) and the status panels say ``insufficient`` in grey. The one
  exception, FMR(t) and FNMR(t) at thresholds t (:func:`score_curve_sql`), computed in SQL where
  ClickHouse has no beta quantile for the bounds: point estimates, blank below
  :data:`SCORE_MIN_COMPARISONS` or without an error, and the panels name where the intervals are;
* SQL that ClickHouse 18.16 and current ClickHouse both accept: no ``toStartOfInterval`` (so no
  ``$__timeInterval``); time buckets are ``toDateTime(intDiv(toUInt32(t), $__interval_s) *
  $__interval_s)``; no window functions, CTEs, DateTime64 or JSONExtract;
* a variable holding one value reaches SQL as ``decodeURLComponent('${name:percentencode}')``:
  Grafana percent-encodes every character but ``A-Za-z0-9-_.~``, so no value (a quote, a
  backslash) can end the literal, and ClickHouse decodes it back; a multi-valued variable
  (``IN (${name:singlequote})``) only offers values its own query lists, and that query leaves
  out any name holding a quote or a backslash (:func:`quotable`);
* severities sort by rank (:func:`severity_rank`), never as text.

:func:`expand_macros` and :func:`interpolate` reproduce what the plugin and Grafana do to a query
before ClickHouse sees it, so the tests run every panel's SQL.

References
----------
Macro expansions: grafana/clickhouse-datasource ``pkg/macros/macros.go`` (``timeFilter`` ->
``col >= toDateTime(from) AND col <= toDateTime(to)``, ``fromTime`` / ``toTime`` ->
``toDateTime(unix seconds)``, ``interval_s`` -> ``max(interval seconds, 1)`` as an integer,
``timeInterval`` -> ``toStartOfInterval(...)``); macro matching: grafana/sqlds ``macros.go``
(``\\$__name(?:\\((.*?)\\))?``, arguments split on ``,`` and trimmed). Variable format
``singlequote``: Grafana docs, *Variable syntax* (quote each value with ``'``, escape ``'`` as
``\\'``, join with ``,``); ``percentencode``: Grafana ``formatRegistry`` (a list as
``{a,b}``, then ``encodeURIComponentStrict``: ``encodeURIComponent`` plus ``!'()*``). Annotation columns ``time``, ``timeEnd``, ``title``, ``text``, ``tags``:
grafana/clickhouse-datasource ``src/data/CHAnnotationSupport.tsx``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from grafana_foundation_sdk.builders import dashboard as gdb
from grafana_foundation_sdk.builders import (
    heatmap,
    stat,
    statetimeline,
    table,
    timeseries,
    xychart,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as gc
from grafana_foundation_sdk.models import dashboard as gm

from fairwatch.detect.incidents import SEVERITY_RANK
from fairwatch.detect.policy import Policy
from fairwatch.store.verified_scores import EVENT_SCORE_MODES

DATASOURCE_UID = "fairwatch-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE = gm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
FOLDER_UID = "fairwatch"
FOLDER_TITLE = "fairwatch"
JSON_DIR = Path(__file__).resolve().parents[3] / "dashboards" / "json"
FORMAT_TIMESERIES, FORMAT_TABLE = 0, 1
SCORE_MIN_COMPARISONS = 30  # fewer verified comparisons of a truth: no point on the score panels (min_comparisons)
SCORE_MAX_PARTS = 6  # attributes of an intersection the score panels can show  # sqlutil.FormatQueryOption, as the plugin's backend reads `format`


class BoardPolicyError(ValueError):
    """Policies whose values the boards would have to show at once but cannot (one colour per panel)."""


@dataclass(frozen=True)
class BoardPolicy:
    """The alerting policy's values the boards colour and filter by (``dashboards export --policy``).

    Without a policy nothing is coloured as a breach or as fine: a fixed number would be nobody's
    policy.

    Parameters
    ----------
    policy_ratio
        The policy's largest allowed max/min ratio of a rate between groups. The Overview judges
        the current differentials against it by their intervals (:func:`verdict_sql`), as the
        report does: a max / min ratio is "above policy" (red) only when its whole interval is
        above it, "within policy" (green) only when its whole interval is at or below it, "not
        distinguishable" (orange) when the interval holds it, "insufficient" (grey) when a group
        lacks evidence. Max / geomean and IR are at most the max/min ratio of one of the rates:
        their interval above the ratio means the policy is exceeded; below it says nothing about
        max / min, so it is never called within.
    target_fmr
        Default of the Disparity board's intended FMR.
    deployments
        The deployments the boards offer: those of the policies, so that one policy's colours are
        never put on another deployment's numbers; empty: every deployment.

    Examples
    --------
    >>> from fairwatch.detect.policy import parse_policy
    >>> policy = parse_policy("deployment: gate-a\\nattributes: [race]\\nbaseline: {duration: 1h}\\npolicy_ratio: 5\\n")
    >>> BoardPolicy.from_policies({"gate-a": policy})
    BoardPolicy(policy_ratio=5, target_fmr=None, deployments=('gate-a',))
    """

    policy_ratio: float | None = None
    target_fmr: float | None = None
    deployments: tuple[str, ...] = ()

    @classmethod
    def from_policies(cls, policies: Mapping[str, Policy]) -> BoardPolicy:
        """One board policy for every deployment of ``policies``; refused when they set different
        ``policy_ratio`` values (a panel has one set of colours). ``target_fmr`` is taken where
        they agree, else left for the operator to type."""
        if not policies:
            raise BoardPolicyError("no policy given")
        ratios = {p.policy_ratio for p in policies.values()}
        if len(ratios) > 1:
            found = ", ".join(f"{d}: {p.policy_ratio}" for d, p in sorted(policies.items()))
            raise BoardPolicyError(f"the policies set different policy_ratio values ({found}); the boards have "
                                   "one set of colours: give only policies that share one")
        targets = {p.target_fmr for p in policies.values()}
        return cls(policy_ratio=ratios.pop(), target_fmr=targets.pop() if len(targets) == 1 else None,
                   deployments=tuple(sorted(policies)))


# ------------------------------------------------------------------ macros and template variables

_MACROS = ("timeFilter", "fromTime", "toTime", "interval_s", "timeInterval")


def expand_macros(sql: str, start: datetime, end: datetime, interval_seconds: float) -> str:
    """Expand the plugin's macros as its backend does (pkg/macros/macros.go via grafana/sqlds).

    Examples
    --------
    >>> from datetime import timezone
    >>> t0 = datetime(2026, 11, 25, 6, tzinfo=timezone.utc)
    >>> t1 = datetime(2026, 11, 25, 7, tzinfo=timezone.utc)
    >>> expand_macros("SELECT $__interval_s WHERE $__timeFilter( at ) AND x < $__toTime", t0, t1, 0.2)
    'SELECT 1 WHERE at >= toDateTime(1795586400) AND at <= toDateTime(1795590000) AND x < toDateTime(1795590000)'
    """
    frm, to = int(start.timestamp()), int(end.timestamp())
    seconds = int(max(interval_seconds, 1))

    def expand(name: str, args: list[str]) -> str:
        if name == "timeFilter":
            if len(args) != 1:
                raise ValueError(f"$__timeFilter takes one column, got {args}")
            return f"{args[0]} >= toDateTime({frm}) AND {args[0]} <= toDateTime({to})"
        if name == "fromTime":
            return f"toDateTime({frm})"
        if name == "toTime":
            return f"toDateTime({to})"
        if name == "interval_s":
            return str(seconds)
        # expanded faithfully, so that a test catches it: 18.16 has no toStartOfInterval
        return f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {seconds} second)"

    for name in _MACROS:
        pattern = re.compile(r"\$__%s(?:\((.*?)\))?" % name)
        for match in list(pattern.finditer(sql)):
            args = [a.strip() for a in match.group(1).split(",")] if match.group(1) is not None else []
            sql = sql.replace(match.group(0), expand(name, args))
    return sql


def singlequote(value: str | list[str]) -> str:
    """Grafana's ``singlequote`` format: each value quoted, ``'`` escaped as ``\\'``, joined by ``,``.

    >>> singlequote("gate-a"), singlequote(["F", "it's"])
    ("'gate-a'", "'F','it\\\\'s'")
    """
    values = value if isinstance(value, list) else [value]
    return ",".join("'%s'" % v.replace("'", "\\'") for v in values)


def percentencode(value: str | list[str]) -> str:
    """Grafana's ``percentencode`` format: every byte of the UTF-8 text but ``A-Za-z0-9-_.~``
    as ``%XX``; a list as ``{a,b}`` first.

    >>> percentencode("it's a\\\\b"), percentencode(["a", "b"])
    ('it%27s%20a%5Cb', '%7Ba%2Cb%7D')
    """
    from urllib.parse import quote

    text = "{" + ",".join(value) + "}" if isinstance(value, list) else value
    return quote(text, safe="")


def quotable(column: str) -> str:
    """SQL true for a value that ``singlequote`` quotes safely: no quote, no backslash (the
    contract refuses both in names; this keeps older or forged rows out of a variable's options)."""
    return f"position({column}, '\\\\') = 0 AND position({column}, '\\'') = 0"


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def interpolate(sql: str, values: dict[str, str | list[str]]) -> str:
    """Replace ``${name:singlequote}``, ``${name}`` and ``$name`` as Grafana's template service does.

    Names Grafana does not know (the plugin's ``$__`` macros) are left for :func:`expand_macros`.
    Without a format the plugin joins a list as ``'a','b'`` and leaves a single value raw.

    >>> interpolate("d = ${d:singlequote} AND w = $w AND $__timeFilter(t)", {"d": "gate-a", "w": "3600"})
    "d = 'gate-a' AND w = 3600 AND $__timeFilter(t)"
    >>> interpolate("d = decodeURLComponent('${d:percentencode}')", {"d": "x' OR 1=1 --"})
    "d = decodeURLComponent('x%27%20OR%201%3D1%20--')"
    """

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        if name not in values:
            return match.group(0)
        value, fmt = values[name], match.group(2)
        if fmt == "singlequote":
            return singlequote(value)
        if fmt == "percentencode":
            return percentencode(value)
        if fmt is not None:
            raise ValueError(f"format {fmt!r} of ${{{name}}} is not one fairwatch boards use")
        return "'%s'" % "','".join(value) if isinstance(value, list) else value

    return _VARIABLE.sub(replace, sql)


def variables_used(sql: str) -> set[str]:
    """Template variables a query refers to (macros excluded).

    >>> sorted(variables_used("a = ${a:singlequote} AND b = $b AND $__timeFilter(t)"))
    ['a', 'b']
    """
    names = {m.group(1) or m.group(3) for m in _VARIABLE.finditer(sql)}
    return {name for name in names if not name.startswith("__")}


def sql_string(value: str) -> str:
    """A ClickHouse string literal (backslash and quote escaped).

    >>> sql_string("it's"), sql_string("a\\\\b")
    ("'it\\\\'s'", "'a\\\\\\\\b'")
    """
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


def severity_rank(column: str = "severity") -> str:
    """SQL for an alert severity's rank (:data:`~fairwatch.detect.incidents.SEVERITY_RANK`), to
    sort by: as text, "critical" sorts before "info" and "warning"."""
    names = sorted(SEVERITY_RANK, key=SEVERITY_RANK.get)
    return (f"transform(toString({column}), [{', '.join(map(sql_string, names))}],"
            f" [{', '.join(str(SEVERITY_RANK[n]) for n in names)}], 0)")


# ------------------------------------------------------------------------- SDK glue for the plugin


class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL target of grafana-clickhouse-datasource (src/types/sql.ts: CHSqlQuery)."""

    def __init__(self, ref_id: str, sql: str, fmt: int) -> None:
        self.ref_id, self.sql, self.fmt = ref_id, sql.strip(), fmt

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorType": "sql",
            "format": self.fmt,
            "queryType": "timeSeries" if self.fmt == FORMAT_TIMESERIES else "table",
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class _Built(cogbuilder.Builder[Any]):
    def __init__(self, value: Any) -> None:
        self._internal = value

    def build(self) -> Any:
        return self._internal


def query(sql: str, ref_id: str = "A", fmt: int = FORMAT_TIMESERIES) -> _Built:
    return _Built(ClickHouseQuery(ref_id, sql, fmt))


class _Json:
    """A plain JSON object for parts of the model the SDK types narrower than Grafana accepts."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def to_json(self) -> dict:
        return self.data


def annotation(name: str, sql: str, color: str = "red") -> gdb.AnnotationQuery:
    target = _Json({"editorType": "sql", "format": FORMAT_TABLE, "rawSql": sql.strip(), "refId": "annotation"})
    return gdb.AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).icon_color(color).target(_Built(target))


def query_variable(name: str, label: str, sql: str, multi: bool = False) -> gdb.QueryVariable:
    variable = (
        gdb.QueryVariable(name).label(label).datasource(DATASOURCE)
        .query({"refId": "var", "queryType": "sql", "editorType": "sql", "rawSql": sql.strip()})
        .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(gm.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        variable = variable.multi(True).include_all(True).current(gm.VariableOption(text="All", value="$__all"))
    return variable


class Grid:
    """Lays panels left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.next_id = 1

    def place(self, panel, w: int, h: int):
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel = panel.id(self.next_id).grid_pos(gm.GridPos(h=h, w=w, x=self.x, y=self.y)).datasource(DATASOURCE)
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        return panel

    def row(self, title: str) -> gdb.Row:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        row = gdb.Row(title).id(self.next_id).grid_pos(gm.GridPos(h=1, w=24, x=0, y=self.y))
        self.next_id += 1
        self.y += 1
        return row


# --------------------------------------------------------------------------------- SQL fragments

BUCKET = "toDateTime(intDiv(toUInt32({col}), $__interval_s) * $__interval_s)"
SCOPE = ("deployment = decodeURLComponent('${deployment:percentencode}') AND algorithm = decodeURLComponent('${algorithm:percentencode}')"
         " AND toString(mode) = decodeURLComponent('${mode:percentencode}')")
SET_SCOPE = SCOPE + " AND attribute = decodeURLComponent('${attribute:percentencode}')"


def latest_snapshot(table_name: str) -> str:
    """The newest snapshot time in the range: the boards' "now"."""
    return (f"(SELECT max(snapshot_at) FROM {table_name} WHERE $__timeFilter(snapshot_at)"
            " AND window_seconds = ${window} AND " + SCOPE + ")")

STATUS_MAPPINGS = [
    {"type": "value", "options": {
        "ok": {"text": "ok", "color": "green", "index": 0},
        "insufficient": {"text": "insufficient", "color": "text", "index": 1},
        "above_target": {"text": "above target", "color": "red", "index": 2},
        "undefined": {"text": "undefined", "color": "text", "index": 3},
        "no_target": {"text": "no target", "color": "blue", "index": 4},
    }},
]
STATUS_CODE_MAPPINGS = [
    {"type": "value", "options": {
        "0": {"text": "ok", "color": "green", "index": 0},
        "1": {"text": "insufficient", "color": "text", "index": 1},
        "2": {"text": "above target", "color": "red", "index": 2},
        "3": {"text": "no target", "color": "blue", "index": 3},
        "4": {"text": "unknown", "color": "purple", "index": 4},
    }},
]
NOT_RESOLVED_MAPPINGS = [
    {"type": "special", "options": {"match": "null", "result": {"text": "insufficient", "color": "text", "index": 0}}},
    {"type": "special", "options": {"match": "nan", "result": {"text": "undefined (a rate is 0)", "color": "text",
                                                                "index": 1}}},
]


def _band(panel, value: str, unit: str):
    """Draw ``value low``..``value high`` as a shaded band around the ``value`` line."""
    low, high = f"{value} low", f"{value} high"
    return (
        panel.unit(unit).line_width(2).span_nulls(False)
        .override_by_name(high, [gm.DynamicConfigValue(id_val="custom.fillBelowTo", value=low),
                                 gm.DynamicConfigValue(id_val="custom.lineWidth", value=0),
                                 gm.DynamicConfigValue(id_val="custom.fillOpacity", value=25)])
        .override_by_name(low, [gm.DynamicConfigValue(id_val="custom.lineWidth", value=0)])
    )


def _rate_series_sql(rate: str, label: str) -> str:
    # one snapshot per bucket, the newest; the tuple keeps NULLs (argMax would skip a Nullable NULL)
    return f"""
SELECT time, if(s.4 = 'insufficient', NULL, s.1) AS `{label}`, s.2 AS `{label} low`, s.3 AS `{label} high`
FROM (
    SELECT {BUCKET.format(col='snapshot_at')} AS time,
           argMax(tuple({rate}, {rate}_low, {rate}_high, status), snapshot_at) AS s
    FROM estimate_snapshots FINAL
    WHERE $__timeFilter(snapshot_at) AND window_seconds = ${{window}} AND {SET_SCOPE}
      AND group_label = decodeURLComponent('${{group:percentencode}}')
    GROUP BY time
)
ORDER BY time"""


def _differential_series_sql(metric: str, rate: str, label: str) -> str:
    return f"""
SELECT time, if(s.4 = 'insufficient', NULL, s.1) AS `{label}`, s.2 AS `{label} low`, s.3 AS `{label} high`
FROM (
    SELECT {BUCKET.format(col='snapshot_at')} AS time,
           argMax(tuple(value, low, high, status), snapshot_at) AS s
    FROM differential_snapshots FINAL
    WHERE $__timeFilter(snapshot_at) AND window_seconds = ${{window}} AND {SET_SCOPE}
      AND metric = '{metric}' AND rate = '{rate}'
    GROUP BY time
)
ORDER BY time"""


def _per_group_sql(rate: str, column: str) -> str:
    """Long format (time, group_label, value): the plugin turns each group into a series."""
    return f"""
SELECT time, group_label, if(s.2 = 'insufficient', NULL, s.1) AS `{column}`
FROM (
    SELECT {BUCKET.format(col='snapshot_at')} AS time, group_label,
           argMax(tuple({rate}, status), snapshot_at) AS s
    FROM estimate_snapshots FINAL
    WHERE $__timeFilter(snapshot_at) AND window_seconds = ${{window}} AND {SET_SCOPE}
    GROUP BY time, group_label
)
ORDER BY time, group_label"""


def _scope_variables(policy: BoardPolicy, with_group: bool = True) -> list:
    source = "FROM estimate_snapshots WHERE $__timeFilter(snapshot_at)"
    # a board coloured by a policy offers only that policy's deployments
    only = (f" AND deployment IN ({', '.join(map(sql_string, policy.deployments))})" if policy.deployments else "")
    variables = [
        # quotable: the alert annotations take the deployment as ${deployment:singlequote}
        query_variable("deployment", "deployment", f"SELECT DISTINCT deployment {source}{only}"
                       f" AND {quotable('deployment')} ORDER BY deployment"),
        query_variable("algorithm", "algorithm", f"SELECT DISTINCT algorithm {source}"
                       " AND deployment = decodeURLComponent('${deployment:percentencode}') ORDER BY algorithm"),
        query_variable("mode", "mode", f"SELECT DISTINCT toString(mode) AS mode {source}"
                       " AND deployment = decodeURLComponent('${deployment:percentencode}') AND algorithm = decodeURLComponent('${algorithm:percentencode}')"
                       " ORDER BY mode"),
        query_variable("attribute", "attribute", f"SELECT DISTINCT attribute {source} AND {SCOPE}"
                       " AND attribute != '*' ORDER BY attribute"),
        gdb.CustomVariable("window").label("trailing window").values("1h : 3600,24h : 86400")
        .current(gm.VariableOption(text="1h", value="3600")),
    ]
    if with_group:
        variables.append(query_variable(
            "group", "group", f"SELECT DISTINCT group_label {source} AND {SET_SCOPE} AND {quotable('group_label')}"
            " ORDER BY group_label", multi=True))
    return variables


ALERT_ANNOTATION_SQL = """
SELECT opened_at AS time,
       if(isNull(resolved_at), toDateTime(now(), 'UTC'), assumeNotNull(resolved_at)) AS timeEnd,
       concat(toString(severity), ' ', toString(type), ': ', metric, ' ', group_label) AS title,
       concat(detector, ' - ', toString(state), ', evidence n = ', toString(evidence_n)) AS text,
       concat(toString(type), ',', toString(severity), ',', deployment) AS tags
FROM alerts FINAL
WHERE opened_at <= $__toTime AND (isNull(resolved_at) OR resolved_at >= $__fromTime)
  AND deployment IN (${deployment:singlequote})
ORDER BY time"""
# on boards whose deployment holds one value: percent-encoded like every single value
ONE_DEPLOYMENT_ANNOTATION_SQL = ALERT_ANNOTATION_SQL.replace(
    "deployment IN (${deployment:singlequote})", "deployment = decodeURLComponent('${deployment:percentencode}')")


SEVERITY_MAPPINGS = [{"type": "value", "options": {
    "critical": {"color": "red", "index": 0}, "warning": {"color": "orange", "index": 1},
    "info": {"color": "blue", "index": 2}}}]
WRONG_NOW_STATES = ("drifting", "near threshold", "no recent evidence", "not tested: too little evidence")
WRONG_NOW_MAPPINGS = [{"type": "value", "options": {
    "drifting": {"color": "red", "index": 0}, "near threshold": {"color": "orange", "index": 1},
    "no recent evidence": {"color": "text", "index": 2},
    "not tested: too little evidence": {"color": "text", "index": 3}}}]
FRESHNESS_MAPPINGS = [{"type": "value", "options": {
    "current": {"color": "text", "index": 0}, "stale": {"color": "purple", "index": 1}}}]
CYCLE_MAPPINGS = [
    {"type": "value", "options": {"0": {"text": "current", "color": "text", "index": 0},
                                  "1": {"text": "stale", "color": "purple", "index": 1}}},
    {"type": "special", "options": {"match": "null", "result": {"text": "not watched", "color": "text", "index": 2}}},
]

# How old a deployment's newest detector states may be before the boards call them stale: a cycle
# that stops early (no baseline yet, the horizon not reached) or a worker that stopped writes none,
# and its older rows would pass for "now". A textbox variable, because the cycle's period is the
# worker's FAIRWATCH_DETECT_SECONDS (60 by default: 300 s are 5 cycles), which no table holds.
STALE_AFTER_DEFAULT = 300
_CYCLE_AGE = "toInt64(toUInt32(now())) - toInt64(toUInt32({col}))"
_STALE_AFTER = "toInt64OrZero(decodeURLComponent('${stale_after:percentencode}'))"

# The deployment's newest detection cycle (detector_state rows of an older version are streams it no
# longer runs) beside the open incidents, one row per condition id. Ranks: 4 drifting (an open
# incident, or an alarm at the last bucket), 3 near the threshold, 2 no recent evidence (tested, but
# not one comparison in the trailing resolve_after), 1 not tested (an insufficient_evidence
# condition, or a label backlog with too few matches); quiet ones are left out. `cycle age` and
# `freshness` say whether that cycle is still "now" (stale after $stale_after seconds).
# UNION ALL then GROUP BY rather than a join: joins differ between 18.16 and current servers.
_NEWEST_CYCLE = ("version = (SELECT max(version) FROM detector_state"
                 " WHERE deployment = decodeURLComponent('${deployment:percentencode}'))")
WRONG_NOW_SQL = f"""
SELECT multiIf(rank = 4, 'drifting', rank = 3, 'near threshold', rank = 2, 'no recent evidence',
               'not tested: too little evidence') AS state,
       transform(sev_rank, [1, 2, 3], ['info', 'warning', 'critical'], '') AS severity,
       group_label AS group, metric, type, algorithm, statistic, threshold, evidence_n, needed,
       since AS `open since`, cycle_at AS evaluated, {_CYCLE_AGE.format(col='cycle_at')} AS `cycle age`,
       if(isNull(cycle_at), CAST(NULL AS Nullable(String)),
          if({_CYCLE_AGE.format(col='cycle_at')} > {_STALE_AFTER}, 'stale', 'current')) AS freshness, id
FROM (
    SELECT cid AS id, any(kind) AS type, max(sev) AS sev_rank, any(alg) AS algorithm, any(grp) AS group_label,
           any(met) AS metric, max(open) AS is_open, max(opened) AS since, max(st) AS last_state,
           max(stat) AS statistic, max(thr) AS threshold, max(n) AS evidence_n, max(need) AS needed,
           max(cycle) AS cycle_at,
           multiIf(type = 'insufficient_evidence', 1, is_open = 1 OR last_state = 3, 4, last_state = 2, 3,
                   last_state = 5, 2, last_state = 4, 1, 0) AS rank
    FROM (
        SELECT id AS cid, toString(type) AS kind, {severity_rank()} AS sev, algorithm AS alg, group_label AS grp,
               metric AS met, toUInt8(1) AS open, toNullable(opened_at) AS opened, toUInt8(0) AS st,
               CAST(NULL AS Nullable(Float64)) AS stat, CAST(NULL AS Nullable(Float64)) AS thr,
               CAST(NULL AS Nullable(Float64)) AS n, CAST(NULL AS Nullable(Float64)) AS need,
               CAST(NULL AS Nullable(DateTime('UTC'))) AS cycle
        FROM alerts FINAL
        WHERE state = 'firing' AND deployment = decodeURLComponent('${{deployment:percentencode}}')
        UNION ALL
        SELECT id AS cid, toString(type) AS kind, {severity_rank()} AS sev, algorithm AS alg, group_label AS grp,
               metric AS met, toUInt8(0) AS open, CAST(NULL AS Nullable(DateTime('UTC'))) AS opened,
               toUInt8(transform(toString(state), ['quiet', 'near', 'alarm', 'insufficient', 'no_recent_evidence'],
                                 [1, 2, 3, 4, 5], 0)) AS st,
               statistic AS stat, threshold AS thr, toNullable(evidence_n) AS n, needed AS need,
               toNullable(cycle_at) AS cycle
        FROM detector_state FINAL
        WHERE deployment = decodeURLComponent('${{deployment:percentencode}}') AND {_NEWEST_CYCLE}
    )
    GROUP BY cid
)
WHERE rank > 0
ORDER BY rank DESC, sev_rank DESC, statistic - threshold DESC NULLS LAST, group_label, metric"""

# tested: alarm, near or quiet with recent comparisons; `no recent evidence` and `not tested` apart;
# cycle: 0 current, 1 stale (older than $stale_after seconds); all NULL ("not watched") without a cycle
COVERAGE_SQL = f"""
SELECT if(streams = 0, NULL, toFloat64(streams - thin - unseen)) AS tested,
       if(streams = 0, NULL, toFloat64(unseen)) AS `no recent evidence`,
       if(streams = 0, NULL, toFloat64(thin)) AS `not tested: too little evidence`,
       if(streams = 0, NULL, toFloat64(toUInt32(last)) * 1000) AS `last cycle`,
       if(streams = 0, NULL, toFloat64({_CYCLE_AGE.format(col='last')} > {_STALE_AFTER})) AS cycle
FROM (
    SELECT count() AS streams, countIf(state = 'insufficient') AS thin,
           countIf(state = 'no_recent_evidence') AS unseen, max(cycle_at) AS last
    FROM detector_state FINAL
    WHERE deployment = decodeURLComponent('${{deployment:percentencode}}') AND {_NEWEST_CYCLE}
)"""


# The Overview's current differentials: (title, metric, rate, how the policy ratio judges it).
# "max_min": the policy's own quantity; "bounded": at most a max / min ratio of a rate (above the
# ratio means a max / min ratio is above it; below it means nothing); None: no policy value bounds it.
DIFFERENTIALS_NOW = (
    ("Max / min FMR", "max_min_ratio", "fmr", "max_min"),
    ("Max / min FNMR", "max_min_ratio", "fnmr", "max_min"),
    ("Max / geomean FMR", "max_geomean", "fmr", "bounded"),
    ("Inequity rate (IR)", "ir", "combined", "bounded"),
    ("GARBE", "garbe", "combined", None),
    ("FDR", "fdr", "combined", None),
)
ABOVE, UNDECIDED, WITHIN, BELOW, THIN = ("above policy", "not distinguishable", "within policy",
                                         "below the ratio (no max / min verdict)", "insufficient")
UNBOUNDED, NO_POLICY = "not judged: no policy value bounds it", "not judged: exported without a policy"
VERDICT_MAPPINGS = [{"type": "value", "options": {
    ABOVE: {"color": "red", "index": 0}, UNDECIDED: {"color": "orange", "index": 1},
    WITHIN: {"color": "green", "index": 2}, THIN: {"color": "text", "index": 3},
    BELOW: {"color": "text", "index": 4}, UNBOUNDED: {"color": "text", "index": 5},
    NO_POLICY: {"color": "text", "index": 6}}}]


def verdict_sql(kind: str | None, policy_ratio: float | None) -> str:
    """SQL for a differential's verdict against ``policy_ratio`` from its stored interval
    (``low``, ``high``, ``status`` of ``differential_snapshots``), as the report judges max / min
    (:func:`fairwatch.core.differentials.differentials`, ``vs_policy``): above only when ``low >
    ratio``, within only when ``high <= ratio`` (a missing ``high`` is unbounded), else not
    distinguishable; insufficient when a group lacks evidence or there is no interval.

    >>> print(verdict_sql("max_min", 10))
    multiIf(status = 'insufficient' OR isNull(low), 'insufficient', ifNull(low > 10.0, 0), 'above policy', ifNull(high <= 10.0, 0), 'within policy', 'not distinguishable')
    """
    if kind is None:
        return sql_string(UNBOUNDED)
    if policy_ratio is None:
        return sql_string(NO_POLICY)
    ratio = repr(float(policy_ratio))
    below = WITHIN if kind == "max_min" else BELOW
    return (f"multiIf(status = 'insufficient' OR isNull(low), {sql_string(THIN)}, ifNull(low > {ratio}, 0), "
            f"{sql_string(ABOVE)}, ifNull(high <= {ratio}, 0), {sql_string(below)}, {sql_string(UNDECIDED)})")


def differentials_now_sql(policy_ratio: float | None) -> str:
    """One row per differential of :data:`DIFFERENTIALS_NOW` at the latest snapshot: the plug-in
    value (NULL while insufficient, NaN when undefined), its interval and its verdict."""
    keys = [f"{metric}/{rate}" for _, metric, rate, _ in DIFFERENTIALS_NOW]
    key = "concat(metric, '/', rate)"
    judged = {kind: [k for k, (*_, each) in zip(keys, DIFFERENTIALS_NOW) if each == kind]
              for kind in ("max_min", "bounded")}
    verdicts = ", ".join(f"{key} IN ({', '.join(map(sql_string, judged[kind]))}), {verdict_sql(kind, policy_ratio)}"
                         for kind in judged)
    ratio = "CAST(NULL AS Nullable(Float64))" if policy_ratio is None else f"toNullable({float(policy_ratio)!r})"
    return f"""
SELECT transform({key}, [{', '.join(map(sql_string, keys))}],
                 [{', '.join(sql_string(title) for title, *_ in DIFFERENTIALS_NOW)}], '') AS differential,
       multiIf(status = 'ok', value, status = 'undefined', nan, NULL) AS value, low, high,
       {ratio} AS `policy ratio`, multiIf({verdicts}, {verdict_sql(None, policy_ratio)}) AS `vs policy`
FROM differential_snapshots FINAL
WHERE window_seconds = ${{window}} AND {SET_SCOPE} AND {key} IN ({', '.join(map(sql_string, keys))})
  AND snapshot_at = {latest_snapshot('differential_snapshots')}
ORDER BY transform({key}, [{', '.join(map(sql_string, keys))}], [{', '.join(map(str, range(1, len(keys) + 1)))}], 0)"""


def _links() -> list:
    return [gdb.DashboardLink("fairwatch boards").type(gm.DashboardLinkType.DASHBOARDS).tags(["fairwatch"])
            .as_dropdown(True).include_vars(True).keep_time(True)]


def _dashboard(uid: str, title: str, description: str) -> gdb.Dashboard:
    board = (gdb.Dashboard(title).uid(uid).description(description).tags(["fairwatch"]).timezone("utc")
             .time("now-24h", "now").refresh("1m").tooltip(gm.DashboardCursorSync.CROSSHAIR).editable())
    for link in _links():
        board = board.link(link)
    return board


# ------------------------------------------------------------------------------------ the boards


def overview(policy: BoardPolicy = BoardPolicy()) -> gdb.Dashboard:
    grid = Grid()
    board = _dashboard("fairwatch-overview", "fairwatch / Overview",
                       "Per-group error rates with their intervals, status and current differentials.")
    for variable in _scope_variables(policy):
        board = board.with_variable(variable)
    # seconds after which the newest detector states are stale (5 cycles at the default 60 s)
    board = board.with_variable(gdb.TextBoxVariable("stale_after").label("states stale after (s)")
                                .default_value(str(STALE_AFTER_DEFAULT)))
    board = board.annotation(annotation("fairwatch alerts", ONE_DEPLOYMENT_ANNOTATION_SQL))

    board = board.with_row(grid.row("What is wrong now (the latest detection cycle, whatever the time range)"))
    board = board.with_panel(grid.place(
        table.Panel().title("What is wrong now: drifting, near the alarm threshold, unseen lately, or not tested")
        .with_target(query(WRONG_NOW_SQL, fmt=FORMAT_TABLE))
        .description("Every condition of $deployment with an open incident (drifting), a detector statistic "
                     "within a factor 10 of its alarm threshold (near: a reason to look, not evidence of drift), "
                     "no comparison in its trailing resolve_after (no recent evidence: tested, but nothing seen "
                     "lately, so not known to be quiet), or too little baseline evidence to be tested at all "
                     "(never shown as fine). Worst first: state, then severity by rank, then closeness to the "
                     "threshold. statistic / threshold: log10 of the detector's e-value and of its alarm "
                     "threshold (label_backlog: the unverified share and max_share). evaluated: when the cycle "
                     "ran; cycle age: seconds since; stale: older than $stale_after seconds (a cycle that stopped "
                     "early, for no baseline yet or the horizon not reached, or a stopped worker writes no state). "
                     "A condition not listed was quiet, with recent comparisons, at that cycle.")
        .override_by_name("state", [gm.DynamicConfigValue(id_val="mappings", value=WRONG_NOW_MAPPINGS),
                                    gm.DynamicConfigValue(id_val="custom.cellOptions",
                                                          value={"type": "color-background"})])
        .override_by_name("severity", [gm.DynamicConfigValue(id_val="mappings", value=SEVERITY_MAPPINGS),
                                       gm.DynamicConfigValue(id_val="custom.cellOptions",
                                                             value={"type": "color-background"})])
        .override_by_name("cycle age", [gm.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name("freshness", [gm.DynamicConfigValue(id_val="mappings", value=FRESHNESS_MAPPINGS),
                                        gm.DynamicConfigValue(id_val="custom.cellOptions",
                                                              value={"type": "color-background"})]), 18, 9))
    board = board.with_panel(grid.place(
        stat.Panel().title("Detection coverage").with_target(query(COVERAGE_SQL, fmt=FORMAT_TABLE))
        .description("Streams of $deployment the latest detection cycle tested (with comparisons in their trailing "
                     "resolve_after), those without a recent comparison, those it could not test for lack of "
                     "baseline evidence, when it ran, and whether that is current or stale (older than "
                     "$stale_after seconds: no cycle has written states since). 'not watched': no detection cycle "
                     "has stored a state.")
        .mappings([{"type": "special", "options": {"match": "null", "result": {
            "text": "not watched", "color": "text", "index": 0}}}])
        .thresholds(gdb.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE)
                    .steps([gm.Threshold(value=None, color="text")]))
        .override_by_name("last cycle", [gm.DynamicConfigValue(id_val="unit", value="dateTimeFromNow")])
        .override_by_name("cycle", [gm.DynamicConfigValue(id_val="mappings", value=CYCLE_MAPPINGS)])
        .reduce_options(_Built(_Json({"calcs": ["last"], "fields": "", "values": False}))), 6, 9))

    board = board.with_row(grid.row("Differentials now (latest snapshot; judged on their 95% intervals against "
                                    "the policy's policy_ratio)"))
    judged = (f"vs policy compares the interval with the policy's policy_ratio ({policy.policy_ratio:g}): "
              if policy.policy_ratio is not None else
              "vs policy: not judged, the boards were exported without a policy (dashboards export --policy). ")
    board = board.with_panel(grid.place(
        table.Panel().title("Differentials now, against the policy")
        .with_target(query(differentials_now_sql(policy.policy_ratio), fmt=FORMAT_TABLE))
        .description("The differentials of $attribute over the trailing $window of the latest snapshot in range: the "
                     "plug-in value and its 95% simultaneous interval (high empty: no upper bound, a rate may be 0). "
                     + judged + "max / min is 'above policy' (red) only when the whole interval is above the "
                     "ratio, 'within policy' (green) only when it is at or below it, 'not distinguishable' (orange) "
                     "when it holds the ratio. Max / geomean and IR are at most a max / min ratio: above the ratio "
                     "means a max / min ratio is too; below it says nothing about max / min. GARBE and FDR: no "
                     "policy value bounds them. 'insufficient' (grey): a group lacks evidence, never shown as fine "
                     "or as a breach.")
        .thresholds(gdb.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE)
                    .steps([gm.Threshold(value=None, color="text")]))
        .override_by_name("value", [gm.DynamicConfigValue(id_val="mappings", value=NOT_RESOLVED_MAPPINGS),
                                    gm.DynamicConfigValue(id_val="decimals", value=3)])
        .override_by_regexp("/^(low|high)$/", [gm.DynamicConfigValue(id_val="decimals", value=3)])
        .override_by_name("vs policy", [gm.DynamicConfigValue(id_val="mappings", value=VERDICT_MAPPINGS),
                                        gm.DynamicConfigValue(id_val="custom.cellOptions",
                                                              value={"type": "color-background"})]), 24, 6))

    board = board.with_row(grid.row("Error rates over time (snapshots over the trailing $window)"))
    for rate, label, title in (("fmr", "FMR", "False match rate"), ("fnmr", "FNMR", "False non-match rate")):
        panel = (timeseries.Panel().title(f"{title} · $group").repeat("group").repeat_direction("h")
                 .max_per_row(3).with_target(query(_rate_series_sql(rate, label)))
                 .description(f"{label} (FPIR / FNIR in identification mode) with its 95% interval band. "
                              "No line while the group is insufficient: only the band of what the data allow."))
        board = board.with_panel(grid.place(_band(panel, label, "percentunit"), 8, 8))

    board = board.with_row(grid.row("Status and current estimates"))
    status_sql = f"""
SELECT time, group_label, multiIf(st = 'ok', 0, st = 'insufficient', 1, st = 'above_target', 2, st = 'no_target', 3, 4) AS status
FROM (
    SELECT {BUCKET.format(col='snapshot_at')} AS time, group_label, argMax(status, snapshot_at) AS st
    FROM estimate_snapshots FINAL
    WHERE $__timeFilter(snapshot_at) AND window_seconds = ${{window}} AND {SET_SCOPE}
    GROUP BY time, group_label
)
ORDER BY time, group_label"""
    board = board.with_panel(grid.place(
        statetimeline.Panel().title("Status by group").with_target(query(status_sql))
        .mappings(STATUS_CODE_MAPPINGS).show_value(gc.VisibilityMode.NEVER)
        .color_scheme(gdb.FieldColor().mode(gm.FieldColorModeId.THRESHOLDS))
        .thresholds(gdb.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE)
                    .steps([gm.Threshold(value=None, color="text")])), 24, 7))
    table_sql = f"""
SELECT group_label AS group, impostor, false_match, fmr, fmr_low, fmr_high,
       genuine, false_non_match, fnmr, fnmr_low, fnmr_high, status
FROM estimate_snapshots FINAL
WHERE window_seconds = ${{window}} AND {SET_SCOPE}
  AND snapshot_at = {latest_snapshot('estimate_snapshots')}
ORDER BY group"""
    board = board.with_panel(grid.place(
        table.Panel().title("Current estimates (latest snapshot)").with_target(query(table_sql, fmt=FORMAT_TABLE))
        .override_by_regexp("/^f.*mr.*/", [gm.DynamicConfigValue(id_val="unit", value="percentunit"),
                                           gm.DynamicConfigValue(id_val="decimals", value=3)])
        .override_by_name("status", [gm.DynamicConfigValue(id_val="mappings", value=STATUS_MAPPINGS),
                                     gm.DynamicConfigValue(id_val="custom.cellOptions",
                                                           value={"type": "color-background"})]), 24, 9))
    return board


def disparity(policy: BoardPolicy = BoardPolicy()) -> gdb.Dashboard:
    grid = Grid()
    board = _dashboard("fairwatch-disparity", "fairwatch / Disparity",
                       "Demographic differentials with simultaneous intervals, realized vs intended FMR, heatmap.")
    for variable in _scope_variables(policy, with_group=False):
        board = board.with_variable(variable)
    # the policy's target_fmr, or empty (no intended line) until the operator types one
    board = board.with_variable(gdb.TextBoxVariable("target_fmr").label("intended FMR")
                                .default_value("" if policy.target_fmr is None else repr(policy.target_fmr)))
    board = board.annotation(annotation("fairwatch alerts", ONE_DEPLOYMENT_ANNOTATION_SQL))

    board = board.with_row(grid.row("Differentials over time (95% simultaneous intervals)"))
    for metric, rate, label, unit in (("garbe", "combined", "GARBE", "none"), ("fdr", "combined", "FDR", "none"),
                                      ("ir", "combined", "IR", "none"),
                                      ("max_geomean", "fmr", "Max/GeoMean FMR", "none"),
                                      ("max_geomean", "fnmr", "Max/GeoMean FNMR", "none")):
        panel = (timeseries.Panel().title(label).with_target(query(_differential_series_sql(metric, rate, label)))
                 .description("No line while the attribute set is insufficient (a group lacks evidence)."))
        board = board.with_panel(grid.place(_band(panel, label, unit), 12 if metric != "max_geomean" else 12, 8))

    board = board.with_row(grid.row("Realized vs intended FMR, per group"))
    intended_sql = f"""
SELECT {BUCKET.format(col='snapshot_at')} AS time, toFloat64OrNull(decodeURLComponent('${{target_fmr:percentencode}}')) AS intended
FROM estimate_snapshots
WHERE $__timeFilter(snapshot_at) AND window_seconds = ${{window}} AND {SET_SCOPE}
GROUP BY time
ORDER BY time"""
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Realized FMR by group vs intended ($target_fmr)")
        .with_target(query(_per_group_sql("fmr", "FMR")))
        .with_target(query(intended_sql, ref_id="B")).unit("percentunit").span_nulls(False)
        .override_by_name("intended", [gm.DynamicConfigValue(id_val="custom.lineStyle",
                                                             value={"fill": "dash", "dash": [10, 10]}),
                                       gm.DynamicConfigValue(id_val="color",
                                                             value={"mode": "fixed", "fixedColor": "red"})]),
        24, 9))

    board = board.with_row(grid.row("Group x time"))
    board = board.with_panel(grid.place(
        heatmap.Panel().title("FMR heatmap, group x time (blank: insufficient)")
        .with_target(query(_per_group_sql("fmr", "FMR"))).calculate(False)
        .unit("percentunit").show_value(gc.VisibilityMode.NEVER), 24, 10))

    board = board.with_row(grid.row("Scores: FMR(t) and FNMR(t) per group (verified comparisons in the time range)"))
    by_group = gm.DataTransformerConfig(id_val="partitionByValues", options={"fields": ["group"], "keepFields": False})
    for rate in ("FMR", "FNMR"):
        board = board.with_panel(grid.place(
            xychart.Panel().title(f"{rate}(t) by group: the verified comparisons decided again at threshold t")
            .description(SCORE_PANEL_NOTE).with_target(query(score_curve_sql(rate), fmt=FORMAT_TABLE))
            .with_transformation(by_group).unit("percentunit"), 12, 9))
    board = board.with_panel(grid.place(
        table.Panel().title("FMR(t) and FNMR(t) by group").description(SCORE_PANEL_NOTE)
        .with_target(query(score_curve_sql(), fmt=FORMAT_TABLE))
        .override_by_regexp("/^F.*MR$/", [gm.DynamicConfigValue(id_val="unit", value="percentunit"),
                                          gm.DynamicConfigValue(id_val="decimals", value=4)]), 24, 9))

    board = board.with_row(grid.row("Impostor pairs: FMR (FPIR) by subject group x the other side's group"))
    as_matrix = gm.DataTransformerConfig(id_val="groupingToMatrix", options={
        "rowField": "subject", "columnField": "reference", "valueField": "rate", "emptyValue": "null"})
    board = board.with_panel(grid.place(
        table.Panel().title("Impostor pairs of $attribute: rate by subject (rows) x reference or rank-1 candidate"
                            " (columns)").description(PAIR_PANEL_NOTE)
        .with_target(query(impostor_pairs_sql(), fmt=FORMAT_TABLE)).with_transformation(as_matrix)
        .unit("percentunit").decimals(4), 24, 9))
    return board


PAIR_PANEL_NOTE = (
    "Verified impostor comparisons of the time range (latest primary verdict, weighted 1 / inclusion_prob)."
    " Verification: FMR[g, h] = weighted false matches / weighted impostor comparisons of a subject of group g (row)"
    " with a reference of group h (column), each cell over its own pairs; the diagonal is same-group impostors."
    " Identification with candidate lists: FPIR[g, h] = weighted non-mated searches of g probes whose rank-1"
    " candidate at or above the threshold is of group h / weighted non-mated searches of g probes (every cell of a"
    " row has the row's denominator). Pairs without the other side's labels are left out. Point estimates only,"
    f" blank below {SCORE_MIN_COMPARISONS} comparisons in the denominator: the intervals, what is left out and the"
    " differentials on same-group impostors are in the report's section 6.")
PAIR_MARK = "="  # pair labels of comparisons without a labelled other side start with it; labels never do


def impostor_pairs_sql() -> str:
    """Per subject group of ``$attribute`` (an intersection too) and the other side's group: comparisons,
    errors and the rate (long format; the panel turns it into a matrix). Verification reads the events'
    reference labels, identification the rank-1 candidate's groups of the searches that listed one at or
    above the threshold (decision ``match``), with every non-mated search of the row in the denominator."""
    attribute = "splitByChar('&', decodeURLComponent('${attribute:percentencode}'))"
    parts = range(1, SCORE_MAX_PARTS + 1)

    def label(values: str, keys: str) -> str:
        found = ", ".join(f"{values}[indexOf({keys}, {attribute}[{i}])]" for i in parts)
        return f"if(hasAll({keys}, {attribute}), arrayStringConcat(arrayFilter(x -> x != '', [{found}]), '&'), '')"

    # the rank-1 candidate's groups, compacted for visitParamExtractString (no label holds a quote)
    groups = "replaceAll(candidate_groups[1], '\": \"', '\":\"')"
    candidate = f"arraySlice([{', '.join(f'visitParamExtractString({groups}, {attribute}[{i}])' for i in parts)}], 1, length({attribute}))"
    identification = "decodeURLComponent('${mode:percentencode}') = 'identification'"
    pair = (f"multiIf(NOT {identification}, {label('reference_values', 'reference_keys')},"
            f" decision != 'match' OR candidates_listed = 0, '{PAIR_MARK}',"
            f" arrayAll(x -> x != '', {candidate}), arrayStringConcat({candidate}, '&'), '')")
    rows = f"""
        SELECT {label('subject_values', 'subject_keys')} AS subject, {pair} AS pair, decision, weight
        FROM labeled_outcomes FINAL ANY INNER JOIN (
            SELECT event_id, reference_keys, reference_values, candidates_listed, candidate_groups FROM match_events FINAL
            WHERE occurred_at >= $__fromTime AND occurred_at < $__toTime + 86400 AND {SCOPE}
        ) AS paired USING (event_id)
        WHERE $__timeFilter(bucket) AND {SCOPE} AND truth = 'impostor' AND hasAll(subject_keys, {attribute})
          AND length({attribute}) <= {SCORE_MAX_PARTS}"""
    least = SCORE_MIN_COMPARISONS
    return f"""
SELECT subject, reference, comparisons, errors, if(comparisons < {least}, NULL, weighted_errors / weighted) AS rate
FROM (
    SELECT subject, pair AS reference, if({identification}, row_n, n) AS comparisons, errors,
           if({identification}, row_w, w) AS weighted, w_err AS weighted_errors
    FROM (
        SELECT subject, pair, toFloat64(count()) AS n, toFloat64(countIf(decision = 'match')) AS errors,
               sum(weight) AS w, sumIf(weight, decision = 'match') AS w_err
        FROM ({rows})
        GROUP BY subject, pair
    ) AS cells ANY LEFT JOIN (
        SELECT subject, toFloat64(count()) AS row_n, sum(weight) AS row_w FROM ({rows}) GROUP BY subject
    ) AS totals USING (subject)
    WHERE pair != '' AND NOT startsWith(pair, '{PAIR_MARK}')
)
ORDER BY subject, reference"""


SCORE_PANEL_NOTE = (
    "Each verified comparison of the time range (its latest primary verdict, weighted 1 / inclusion_prob; independent"
    " reviews never count) decided again at thresholds t: FMR(t) = weighted share of the impostor comparisons with"
    " score >= t (FPIR of non-mated searches in identification), FNMR(t) = weighted share of the genuine ones with"
    " score < t (not in identification here: FNIR(t) needs the mate's own score, which `fairwatch audit scores`"
    " and the report read from the verdict's mate_rank). The thresholds are quantiles of the scope's"
    " verified scores, shared by the groups. Point estimates only, and blank where a group has fewer than"
    f" {SCORE_MIN_COMPARISONS} verified comparisons of that truth or no error at t: the intervals, and each group's"
    " threshold for the intended FMR with its interval, are in `fairwatch audit scores` and the report's section 5.")


def score_curve_sql(rate: str | None = None) -> str:
    """Per group of ``$attribute`` (an intersection too) and threshold t: FMR(t) and FNMR(t) of the
    verified comparisons (``labeled_outcomes`` joined with their events' scores), long format
    (``group``, ``threshold``, counts and rates); ``rate`` ("FMR" or "FNMR") keeps that rate alone.
    The grid is quantiles of the scope's verified impostor scores (the upper tail, where FMR is small)
    and genuine scores (the lower tail), one grid for every group."""
    attribute = "splitByChar('&', decodeURLComponent('${attribute:percentencode}'))"
    # the subject's label of each attribute of the set, in the set's order; 18.16 cannot run a lambda
    # that reads a column (arrayMap over the set) in a query with a scalar subquery, so one term per
    # position (past the set's end the key is '', whose label is '', dropped)
    labels = ", ".join(f"subject_values[indexOf(subject_keys, {attribute}[{i}])]" for i in range(1, SCORE_MAX_PARTS + 1))
    genuine_modes = ", ".join(sql_string(mode) for mode in EVENT_SCORE_MODES)
    # bucket in the range; the events of those buckets occurred at most a day after the range's end
    scored = f"""
        SELECT subject_keys, subject_values, toString(truth) AS truth_name, weight, score
        FROM labeled_outcomes FINAL ANY INNER JOIN (
            SELECT event_id, score FROM match_events FINAL
            WHERE occurred_at >= $__fromTime AND occurred_at < $__toTime + 86400 AND {SCOPE}
        ) AS scored USING (event_id)
        WHERE $__timeFilter(bucket) AND {SCOPE}"""
    grid = f"""(
        SELECT arraySort(arrayFilter(x -> x = x, arrayDistinct(arrayConcat(
            quantilesExactIf(0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999)(score, truth_name = 'impostor'),
            quantilesExactIf(0.0001, 0.001, 0.01, 0.05, 0.1, 0.2, 0.5)(score, truth_name = 'genuine')))))
        FROM ({scored}))"""
    least = SCORE_MIN_COMPARISONS
    columns = {
        "FMR": f"if(impostors < {least} OR fm = 0, NULL, fm / impostor_weight) AS FMR",
        "FNMR": (f"if(decodeURLComponent('${{mode:percentencode}}') NOT IN ({genuine_modes}) OR genuines < {least}"
                 " OR fnm = 0, NULL, fnm / genuine_weight) AS FNMR"),
    }
    shown = [columns[rate]] if rate else [
        "impostors AS `verified impostor`", columns["FMR"], "genuines AS `verified genuine`", columns["FNMR"]]
    return f"""
SELECT group_label AS group, threshold, {', '.join(shown)}
FROM (
    SELECT group_label, t AS threshold, toFloat64(countIf(truth_name = 'impostor')) AS impostors,
           toFloat64(countIf(truth_name = 'genuine')) AS genuines,
           sumIf(weight, truth_name = 'impostor' AND score >= t) AS fm,
           sumIf(weight, truth_name = 'genuine' AND score < t) AS fnm,
           sumIf(weight, truth_name = 'impostor') AS impostor_weight, sumIf(weight, truth_name = 'genuine') AS genuine_weight
    FROM (
        SELECT arrayStringConcat(arrayFilter(x -> x != '', [{labels}]), '&') AS group_label,
               truth_name, weight, score, arrayJoin({grid}) AS t
        FROM ({scored})
        WHERE hasAll(subject_keys, {attribute}) AND length({attribute}) <= {SCORE_MAX_PARTS}
    )
    GROUP BY group_label, t
)
ORDER BY group, threshold"""


def alerts_board(policy: BoardPolicy = BoardPolicy()) -> gdb.Dashboard:
    grid = Grid()
    board = _dashboard("fairwatch-alerts", "fairwatch / Alerts", "Firing and resolved incidents.")
    board = board.with_variable(query_variable(
        "deployment", "deployment", f"SELECT DISTINCT deployment FROM group_counts WHERE {quotable('deployment')}"
        " ORDER BY deployment", multi=True))
    board = board.annotation(annotation("fairwatch alerts", ALERT_ANNOTATION_SQL))
    columns = ("opened_at, toString(severity) AS severity, toString(type) AS type, deployment, algorithm,"
               " group_label, metric, value_estimate, value_low, value_high, baseline, detector, evidence_n,"
               " evidence_e_value, runbook_url, dashboard_url, id")
    firing_sql = f"""
SELECT {columns}
FROM alerts FINAL
WHERE state = 'firing' AND deployment IN (${{deployment:singlequote}})
ORDER BY {severity_rank()} DESC, opened_at DESC"""
    resolved_sql = f"""
SELECT {columns.replace('opened_at,', 'opened_at, resolved_at,')}
FROM alerts FINAL
WHERE state = 'resolved' AND $__timeFilter(resolved_at) AND deployment IN (${{deployment:singlequote}})
ORDER BY resolved_at DESC
LIMIT 500"""
    over_time_sql = f"""
SELECT {BUCKET.format(col='opened_at')} AS time, toString(severity) AS severity, toFloat64(count()) AS opened
FROM alerts FINAL
WHERE $__timeFilter(opened_at) AND deployment IN (${{deployment:singlequote}})
GROUP BY time, severity
ORDER BY time, {severity_rank()} DESC"""
    board = board.with_row(grid.row("Incidents"))
    board = board.with_panel(grid.place(
        table.Panel().title("Firing now").with_target(query(firing_sql, fmt=FORMAT_TABLE))
        .description("Open incidents, the worst severity first (critical, warning, info), newest first within one.")
        .override_by_name("severity", [gm.DynamicConfigValue(id_val="mappings", value=SEVERITY_MAPPINGS),
                                       gm.DynamicConfigValue(id_val="custom.cellOptions",
                                                             value={"type": "color-background"})]), 24, 8))
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Alerts opened per interval, by severity")
        .with_target(query(over_time_sql)).draw_style(gc.GraphDrawStyle.BARS), 24, 7))
    board = board.with_panel(grid.place(
        table.Panel().title("Resolved in range").with_target(query(resolved_sql, fmt=FORMAT_TABLE)), 24, 8))
    return board


def pipeline(policy: BoardPolicy = BoardPolicy()) -> gdb.Dashboard:
    grid = Grid()
    board = _dashboard("fairwatch-pipeline", "fairwatch / Pipeline health",
                       "Ingest, joins, dead letters and the workers' own metrics (worker_health).")
    board = board.with_variable(query_variable(
        "worker", "worker", f"SELECT DISTINCT worker FROM worker_health WHERE $__timeFilter(at) AND {quotable('worker')}"
        " ORDER BY worker", multi=True))

    def ingest(table_name: str, label: str) -> str:
        return f"""
SELECT {BUCKET.format(col='ingested_at')} AS time, count() / $__interval_s AS `{label}`
FROM {table_name} FINAL
WHERE $__timeFilter(ingested_at)
GROUP BY time
ORDER BY time"""

    def gauge(metric: str, label: str, by: str | None = None) -> str:
        # newest sample per worker and label set in each bucket, summed over workers (and labels but `by`)
        outer = f"{by}, " if by else ""
        inner = f"label_values[indexOf(label_keys, '{by}')] AS {by}, " if by else ""
        return f"""
SELECT time, {outer}sum(v) AS `{label}`
FROM (
    SELECT {BUCKET.format(col='at')} AS time, worker, label_keys, label_values, {inner}argMax(value, at) AS v
    FROM worker_health FINAL
    WHERE $__timeFilter(at) AND metric = '{metric}' AND worker IN (${{worker:singlequote}})
    GROUP BY time, worker, label_keys, label_values
)
GROUP BY time{', ' + by if by else ''}
ORDER BY time"""

    sink_sql = f"""
SELECT time, avg(v) AS `mean sink seconds per batch`
FROM (
    SELECT {BUCKET.format(col='at')} AS time, worker, argMax(value, at) AS v
    FROM worker_health FINAL
    WHERE $__timeFilter(at) AND metric = 'fairwatch_sink_seconds_mean' AND worker IN (${{worker:singlequote}})
    GROUP BY time, worker
)
GROUP BY time
ORDER BY time"""
    # the newest sample per worker and bucket: its time minus the time of the worker's last commit
    commit_age_sql = f"""
SELECT {BUCKET.format(col='at')} AS time, worker, argMax(toFloat64(toUInt32(at)) - value, at) AS `seconds since commit`
FROM worker_health FINAL
WHERE $__timeFilter(at) AND metric = 'fairwatch_offsets_committed_timestamp_seconds' AND value > 0
    AND worker IN (${{worker:singlequote}})
GROUP BY time, worker
ORDER BY time, worker"""
    dead_sql = f"""
SELECT {BUCKET.format(col='rejected_at')} AS time, reason_code, toFloat64(count()) AS rejected
FROM dead_letters FINAL
WHERE $__timeFilter(rejected_at)
GROUP BY time, reason_code
ORDER BY time, reason_code"""
    dead_table_sql = """
SELECT rejected_at, source_topic, kafka_partition, kafka_offset, reason_code, field, reason
FROM dead_letters FINAL
WHERE $__timeFilter(rejected_at)
ORDER BY rejected_at DESC
LIMIT 200"""

    board = board.with_row(grid.row("Ingest"))
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Ingest rate (messages/s, by ingestion time)").unit("short")
        .with_target(query(ingest("match_events", "match events/s")))
        .with_target(query(ingest("verified_outcomes", "verified outcomes/s"), ref_id="B")), 12, 8))
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Consumer lag (messages behind, by topic)").unit("short")
        .with_target(query(gauge("fairwatch_consumer_lag", "lag", by="topic"))), 12, 8))
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Seconds since each worker's last offset commit (stuck if it grows while lag does)")
        .unit("s").with_target(query(commit_age_sql)), 24, 6))
    board = board.with_row(grid.row("Join and sink"))
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Pending joins and orphan outcomes").unit("short")
        .with_target(query(gauge("fairwatch_pending_joins", "pending joins")))
        .with_target(query(gauge("fairwatch_orphan_outcomes", "orphan outcomes"), ref_id="B")), 12, 8))
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Sink latency (mean seconds per ClickHouse batch write)").unit("s")
        .with_target(query(sink_sql)), 12, 8))
    board = board.with_row(grid.row("Dead letters"))
    board = board.with_panel(grid.place(
        timeseries.Panel().title("Dead letters by reason").unit("short")
        .with_target(query(dead_sql)).draw_style(gc.GraphDrawStyle.BARS), 12, 8))
    board = board.with_panel(grid.place(
        table.Panel().title("Latest dead letters").with_target(query(dead_table_sql, fmt=FORMAT_TABLE)), 12, 8))
    return board


BOARDS: dict[str, Callable[[BoardPolicy], gdb.Dashboard]] = {
    "fairwatch-overview.json": overview,
    "fairwatch-disparity.json": disparity,
    "fairwatch-alerts.json": alerts_board,
    "fairwatch-pipeline.json": pipeline,
}


def generate(policy: BoardPolicy = BoardPolicy()) -> dict[str, dict]:
    """File name -> dashboard JSON (plain dicts); without a policy, exactly what ``dashboards/json`` holds."""
    boards = {name: json.loads(json.dumps(build(policy).build(), cls=JSONEncoder)) for name, build in BOARDS.items()}
    for board in boards.values():
        board["annotations"].setdefault("list", [])  # the SDK leaves {} when a board has none
    return boards


def render(board: dict) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def export(out: Path = JSON_DIR, policy: BoardPolicy = BoardPolicy()) -> list[Path]:
    """Write every board as JSON into ``out`` (created); return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, board in generate(policy).items():
        path = out / name
        path.write_text(render(board))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- panels and queries


@dataclass(frozen=True)
class PanelQuery:
    """One SQL query of a board: a panel target, an annotation or a variable."""

    board: str
    panel_id: int | None
    panel_type: str  # timeseries, stat, table, heatmap, state-timeline, annotation, variable
    title: str
    ref_id: str
    sql: str
    fmt: int


def panel_queries(board: dict) -> list[PanelQuery]:
    """Every query of a board, panels first, then annotations and variables."""
    found = []
    uid = board["uid"]
    for panel in board.get("panels", []):
        for target in panel.get("targets", []) or []:
            found.append(PanelQuery(uid, panel["id"], panel["type"], panel.get("title", ""), target["refId"],
                                    target["rawSql"], target.get("format", FORMAT_TABLE)))
    for item in board.get("annotations", {}).get("list", []):
        target = item.get("target") or {}
        if "rawSql" in target:
            found.append(PanelQuery(uid, None, "annotation", item["name"], target["refId"], target["rawSql"],
                                    FORMAT_TABLE))
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            found.append(PanelQuery(uid, None, "variable", variable["name"], "var", variable["query"]["rawSql"],
                                    FORMAT_TABLE))
    return found


def resolve_variables(board: dict, run: Callable[[str], list[tuple]], expand: Callable[[str], str],
                      choose: Callable[[str, list[str]], str] = lambda name, options: options[0]) -> dict[str, str]:
    """Current values of a board's variables, resolved in order the way Grafana does on load.

    A query variable runs its SQL (after the variables before it) and takes ``choose(name,
    options)``; a custom variable its current value; a textbox its default.
    """
    values: dict[str, str] = {}
    for variable in board.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable["type"] == "query":
            rows = run(expand(interpolate(variable["query"]["rawSql"], values)))
            options = [str(row[0]) for row in rows]
            if not options:
                raise LookupError(f"variable {name!r} of {board['uid']} has no values")
            values[name] = choose(name, options)
        elif variable["type"] == "custom":
            values[name] = variable["current"]["value"]
        elif variable["type"] == "textbox":
            values[name] = variable["query"]
        else:
            raise ValueError(f"variable type {variable['type']!r} is not one fairwatch boards use")
    return values


# ------------------------------------------------------------------------- snapshots for the boards


# ------------------------------------------------------------------------------ push to Grafana


# ------------------------------------------------------------------------------------------- CLI


