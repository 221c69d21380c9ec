"""The demo's summary page: figures of the run's per-group rates against the truth and its alerts, and the HTML that holds them."""

from __future__ import annotations

import base64
import functools
import html
import io
from datetime import timezone
from typing import Any

from fairwatch.audit.report_blocks import format_number
from fairwatch.sim.demo_results import (
    SHOWN_DIFFERENTIALS,
    acquisition_statements,
    disparity_statements,
    parse_time,
    truth_rows,
    two_person_statements,
)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def make_figures(result: dict[str, Any], over_time: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(caption, base64 PNG)]``: FMR over time by race, and every group's FMR / FNMR before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    truth = result["truth"]
    drift = truth["drifts"][0] if truth["drifts"] else None
    figures = []
    attribute = drift["group"] and next(iter(drift["group"])) if drift else "race"
    keys = [k for k in over_time["series"] if k[0] == attribute]
    if keys:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        times = over_time["times"]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        targets = truth_rows(truth)
        segs = truth["segments"]
        for color, key in zip(colors, keys):
            points = over_time["series"][key]["fmr"]
            ok = [i for i, p in enumerate(points) if p[0] is not None]
            ax.plot([times[i] for i in ok], [points[i][0] for i in ok], "o-", color=color, label=f"{key[0]}={key[1]}")
            if drift and drift["group"].get(key[0]) == key[1]:  # one band: all of them would hide the lines
                ax.fill_between([times[i] for i in ok], [points[i][1] for i in ok], [points[i][2] for i in ok],
                                color=color, alpha=0.2, linewidth=0, label=f"{key[0]}={key[1]} 95% CI")
            for s in segs:  # the true rate, a step per segment
                row = targets.get((s["index"], result["deployment"], result["algorithm"], "verification", *key))
                if row:
                    ax.hlines(row["target_fmr"], parse_time(s["start"]), parse_time(s["end"]), colors=color,
                              linestyles="dashed", linewidth=1)
        if drift:
            ax.axvline(parse_time(drift["at"]), color="black", linewidth=1)
            ax.annotate(f"drift injected: {drift['name']}", (parse_time(drift["at"]), 0.98),
                        xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=8, xytext=(4, 0),
                        textcoords="offset points")
        for a in result["alerts"]:
            if a["metric"] == "fmr" and a["type"] == "error_rate_drift":
                ax.axvline(parse_time(a["opened_at"]), color="red", linestyle=":", linewidth=1)
        top = max((r["target_fmr"] for r in truth["groups"] if r["attribute"] == attribute), default=0.01)
        ax.set_ylim(0, 1.6 * top)  # the intervals of sparse steps would flatten everything else
        ax.set_ylabel("FMR (15-minute steps, 95% CI)\ndashed: true rate")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
        ax.set_xlabel("event time (UTC); red dotted: FMR drift alerts opened")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
        figures.append((f"False match rate by {attribute} over event time", _png(fig)))

    rows = [g for g in result["groups"] if g["rate"] is not None]
    labels = sorted({(g["attribute"], g["group"]) for g in rows}, key=lambda k: (k[0] != "*", k))
    if labels:
        fig, axes = plt.subplots(1, 2, figsize=(10, 0.36 * len(labels) + 1.4), sharey=True)
        y = {k: i for i, k in enumerate(labels)}
        for ax, metric in zip(axes, ("fmr", "fnmr")):
            for seg, color, offset in ((0, "tab:blue", -0.15), (1, "tab:orange", 0.15)):
                pts = [g for g in rows if g["metric"] == metric and g["segment"] == seg]
                if not pts:
                    continue
                ys = [y[(g["attribute"], g["group"])] + offset for g in pts]
                xs = [g["rate"] for g in pts]
                err = [[max(0.0, g["rate"] - g["low"]) for g in pts], [max(0.0, g["high"] - g["rate"]) for g in pts]]
                name = "before the drift" if seg == 0 else "after"
                ax.errorbar(xs, ys, xerr=err, fmt="o", color=color, markersize=4, capsize=2, label=f"{name} (95% CI)")
                ax.plot([g["truth"] for g in pts], ys, "k|", markersize=9, label="true rate" if seg == 0 else None)
            ax.set_xscale("log")
            # ticks at 1, 2 and 5 of each decade, labelled as plain numbers: a range narrower than a
            # decade still gets several labels (only 10^k would leave one or none)
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(metric.upper())
            ax.grid(alpha=0.3, axis="x")
        axes[0].set_yticks(range(len(labels)), ["all" if a == "*" else f"{a}={g}" for a, g in labels])
        axes[0].invert_yaxis()
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, fontsize=8, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.02))
        fig.subplots_adjust(bottom=0.9 / (0.36 * len(labels) + 1.4))
        figures.append(("Every group's error rates before and after the drift, with the simulator's true rates",
                        _png(fig)))
    return figures


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.6em 0 1.4em;font-size:0.85em}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}
.miss{background:#fde2e2}.drift{background:#fff3cd}.ok{color:#1a7f37}.bad{color:#b42318}
figure{margin:1em 0}img{max-width:100%}code,pre{background:#f4f4f4;padding:2px 4px}pre{padding:8px;white-space:pre-wrap;overflow-wrap:anywhere}
"""


def delay_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    minutes = abs(seconds) / 60
    return f"{sign}{minutes:.0f} min"


def render_html(result: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    e = html.escape
    truth = result["truth"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>fairwatch demo: {e(result['run'])}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>fairwatch demo</h1><p>Run <code>{e(result['run'])}</code>: scenario <b>{e(truth['scenario'])}</b> "
             f"(seed {truth['seed']}), {truth['events']} match events and {truth['outcomes']} verified outcomes over "
             f"event time {e(truth['start'])} .. {e(truth['end'])}, published in {result['timings']['publish']:.0f} s "
             f"of wall time through {result['workers']} worker(s).</p>"]
    for d in truth["drifts"]:
        group = ", ".join(f"{k}={v}" for k, v in (d.get("group") or {}).items())
        parts.append(f"<p class='drift'>Injected drift <b>{e(d['name'])}</b> at {e(d['at'])}: "
                     f"{e(d.get('metric', '').upper())} of {e(group)} x{d.get('factor')}.</p>")
    parts.append(f"<p><b>{e(result['verdict'])}</b></p>")
    for caption, data in figures:
        parts.append(f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    cov = result["coverage"]
    parts.append(f"<h2>Per-group error rates with 95% intervals</h2><p>{cov['covered']} of {cov['total']} intervals "
                 f"contain the simulator's true rate (about 95% expected). Rows where it falls outside are shaded.</p>")
    for seg in truth["segments"]:
        parts.append(f"<h3>{e(seg['start'])} .. {e(seg['end'])}</h3><table><tr><th>group</th><th>metric</th>"
                     "<th>comparisons</th><th>errors</th><th>estimate</th><th>95% CI</th><th>true</th></tr>")
        for g in result["groups"]:
            if g["segment"] != seg["index"]:
                continue
            cls = " class='miss'" if g["covered"] is False else ""
            parts.append(f"<tr{cls}><td>{e(_group_text(g))}</td><td>{g['metric'].upper()}</td><td>{g['n']}</td>"
                         f"<td>{g['errors']}</td><td>{short_number(g['rate'])}</td><td>[{short_number(g['low'])}, {short_number(g['high'])}]</td>"
                         f"<td>{short_number(g['truth'])}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Differentials</h2><table><tr><th>attribute</th><th>rate</th><th>differential</th>"
                 + "".join(f"<th>{e(s['start'][11:16])}..{e(s['end'][11:16])}</th>" for s in truth["segments"]) + "</tr>")
    for row in differential_rows(result):
        parts.append(f"<tr><td>{e(row[0])}</td><td>{e(row[1])}</td><td>{e(row[2])}</td>"
                     + "".join(f"<td>{e(c)}</td>" for c in row[3:]) + "</tr>")
    parts.append("</table>")
    parts += [f"<p>{e(line)}</p>" for line in disparity_statements(result)]
    parts += pair_tables(result.get("impostor_pairs", []))
    parts.append("<h2>Alerts</h2>")
    claims = [a for a in result["alerts"] if a["verdict"] != "notice"]
    notices = [a for a in result["alerts"] if a["verdict"] == "notice"]
    if claims:
        parts.append("<table><tr><th>opened (event time)</th><th>after the drift</th><th>type</th><th>metric</th>"
                     "<th>group</th><th>estimate [CI]</th><th>baseline</th><th>state</th><th>raised by</th>"
                     "<th>truth</th></tr>")
        for a in claims:
            mark = "bad" if a["verdict"] == "unaffected" else "ok"
            parts.append(f"<tr><td>{e(a['opened_at'])}</td><td>{delay_text(a['delay_seconds'])}</td><td>{e(a['type'])}"
                         f"</td><td>{e(a['metric'])}</td><td>{e(a['group'])}</td><td>{short_number(a['estimate'])} "
                         f"[{short_number(a['low'])}, {short_number(a['high'])}]</td><td>{short_number(a['baseline'])}</td><td>{e(a['state'])}"
                         f"</td><td>{e(a.get('raised_by', 'demo'))}</td><td class='{mark}'>{e(a['verdict'])}</td></tr>")
        parts.append("</table>")
    else:
        parts.append(f"<p>No alert. {e(result['detection'])}</p>")
    if notices:
        parts.append(f"<p>{len(notices)} info notice(s) (insufficient_evidence, not claims of drift): "
                     + e(", ".join(f"{a['group']} {a['metric']}" for a in notices)) + "</p>")
    parts += acquisition_html(result.get("acquisition"))
    parts += two_person_html(result.get("two_person") or [])
    ch = result["clickhouse"]
    parts.append(f"<h2>Where the data is</h2><p>ClickHouse database <code>{e(ch['database'])}</code> at "
                 f"<code>{e(ch['url_redacted'])}</code>; files in <code>{e(result['out'])}</code>.</p>"
                 f"<pre>{e(ch['query_command'])}</pre><pre>{e(ch['metrics_command'])}</pre></body></html>")
    return "\n".join(parts)


def pair_tables(matrices: list[dict[str, Any]]) -> list[str]:
    """Who the impostors are: per attribute, the rate by subject group (rows) x the other side's group
    (columns) over the whole run, as the report's section "Impostor pairs" gives it."""
    e = html.escape
    if not matrices:
        return []
    parts = ["<h2>Who the impostors are</h2><p>False match rate by demographic pair over the whole run: each row"
             " a subject group, each column the reference's group, so the diagonal is same-group impostors (NIST"
             " FRVT Part 3 reports them apart). Cells: estimate [95% CI] (false matches / impostor pairs); too"
             " little evidence where a cell has fewer comparisons than the report's minimum.</p>"]
    for m in matrices:
        cells = {(c["group"], c["reference"]): c for c in m["cells"]}
        parts.append(f"<h3>{e(m['deployment'])} / {e(m['algorithm'])} / {e(m['mode'])}: {e(m['attribute'])}"
                     f" ({m['rate']})</h3><table><tr><th>subject \\ {'candidate' if m['rate'] == 'FPIR' else 'reference'}"
                     "</th>" + "".join(f"<th>{e(h)}</th>" for h in m["references"]) + "</tr>")
        for g in m["groups"]:
            row = []
            for h in m["references"]:
                c = cells[g, h]
                counts = f" ({c['errors']} / {c['comparisons']})"
                row.append("-" if not c["comparisons"] else "too little evidence" + counts
                           if c["status"] == "too_little_evidence" else
                           f"{short_number(c['rate'])} [{short_number(c['low'])}, {short_number(c['high'])}]{counts}")
            parts.append(f"<tr><td>{e(g)}</td>" + "".join(f"<td>{e(text)}</td>" for text in row) + "</tr>")
        parts.append("</table>")
    return parts


def acquisition_html(acquisition: dict[str, Any] | None) -> list[str]:
    """Failure to acquire per group over the run, with the true FTA, and the highest group per attribute."""
    e = html.escape
    if not acquisition:
        return []
    parts = ["<h2>Failure to acquire</h2><p>Attempts at acquiring a face before each comparison, from the store's"
             " <code>acquisitions</code> table: per group the attempts, the failures (no face, or below the quality"
             " bar), the FTA with its 95% interval (widened by the design effect of an encounter's retries) and the"
             " simulator's true FTA.</p><table><tr><th>group</th><th>attempts</th><th>failures</th><th>FTA</th>"
             "<th>95% CI</th><th>design effect</th><th>true</th></tr>"]
    for g in acquisition["groups"]:
        cls = " class='miss'" if g["covered"] is False else ""
        parts.append(f"<tr{cls}><td>{e(_group_text(g))}</td><td>{g['attempts']}</td><td>{g['failures']}</td>"
                     f"<td>{short_number(g['fta'])}</td><td>[{short_number(g['fta_low'])}, "
                     f"{short_number(g['fta_high'])}]</td><td>{short_number(g['fta_design_effect'])}</td>"
                     f"<td>{short_number(g['truth'])}</td></tr>")
    parts.append("</table>")
    parts += [f"<p>{e(line)}</p>" for line in acquisition_statements(acquisition)]
    return parts


def two_person_html(two_person: list[dict[str, Any]]) -> list[str]:
    """Acted-on identifications and those not confirmed by two distinct verifiers."""
    e = html.escape
    if not two_person:
        return []
    parts = ["<h2>Two-person verification</h2><p>Identification searches acted on (EU AI Act Art. 14(5): two"
             " persons must separately verify and confirm), from the counted verdicts in the store.</p>"]
    for c in two_person:
        parts.append(f"<p>{e(two_person_statements([{**c, 'exceptions': []}])[0])}</p>")
        if c["exceptions"]:
            parts.append("<table><tr><th>event id</th><th>truth</th><th>verifiers</th><th>kind</th></tr>"
                         + "".join(f"<tr><td>{e(v['event_id'])}</td><td>{e(v['truth'])}</td>"
                                   f"<td>{e(', '.join(v['verifiers']) or '-')}</td><td>{e(v['kind'])}</td></tr>"
                                   for v in c["exceptions"]) + "</table>")
    return parts


def _group_text(g: dict[str, Any]) -> str:
    return "all" if g["attribute"] == "*" else f"{g['attribute']}={g['group']}"


def differential_rows(result: dict[str, Any]) -> list[list[str]]:
    cells: dict[tuple, dict[int, str]] = {}
    for d in result["differentials"]:
        if d["metric"] not in SHOWN_DIFFERENTIALS:
            continue
        key = (d["attribute"], d["rate"], d["metric"])
        true = "" if d.get("truth") is None else f" true {short_number(d['truth'])}"
        cells.setdefault(key, {})[d["segment"]] = (f"{short_number(d['value'])} [{short_number(d['low'])}, "
                                                   f"{short_number(d['high'])}]{true}")
    segments = [s["index"] for s in result["truth"]["segments"]]
    return [[*key, *(cells[key].get(s, "-") for s in segments)] for key in sorted(cells)]


short_number = functools.partial(format_number, digits=3)  # the summary's tables are narrower than the report's
