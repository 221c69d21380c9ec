"""The report's figures: per-group rates over the window with interval bands and the alerts
marked where they opened, each group's rate over the whole window with its interval, and the
differentials over time against the policy ratio; as PNG (matplotlib, Agg)."""

from __future__ import annotations

import io
import math
from datetime import datetime, timedelta

from fairwatch.audit.estimates import window_metrics
from fairwatch.audit.report_blocks import WEIGHTED_MARK
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.audit.window import Window

MAX_STEPS = 24  # points of the over-time plots
MAX_FIGURES = 24
PNG_DPI = 120  # 7.2 in wide: about 110 dpi across an A4 page, legible at 8 pt
WORSE, PLAIN = "#c0392b", "#34495e"
# alerts on the rate of a group's FMR side: its own false matches, and the non-match scores behind them
FMR_SIDE = {"fmr", "fpir", "score"}
OPEN_ENDED_CAPTION = ("a dotted line from a lower bound up to the top of the plot, ending in a triangle: an interval"
                      " with no upper bound (a group's rate may be 0), open-ended, not cut off; where the ratio"
                      " itself is undefined (a rate of 0) the step has that line and no point")
MARKER_WORDS = {"error_rate_drift": "drift", "disparity_breach": "disparity", "score_drift": "score drift",
                "insufficient_evidence": "not tested", "label_backlog": "backlog"}

def _steps(window: Window, bucket_seconds: int, max_steps: int = MAX_STEPS) -> list[Window]:
    buckets = int((window.end - window.start).total_seconds()) // bucket_seconds
    per_step = max(1, math.ceil(buckets / max_steps))
    width = timedelta(seconds=per_step * bucket_seconds)
    steps, start = [], window.start
    while start < window.end:
        steps.append(Window(start, min(start + width, window.end)))
        start += width
    return steps


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


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _mark_alerts(fmr_ax, fnmr_ax, alerts: list[dict], window: Window, colors: dict[str, str]) -> list[str]:
    """A dashed line where each alert opened (a dotted one where it resolved), on the FMR or FNMR
    axis by its metric (both for others; None: not drawn), coloured as its group's line; returns
    what the caption should say of them."""
    said = []
    for alert in alerts:
        label = alert["group"].partition("=")[2] or alert["group"]
        color = colors.get(label, "black")
        on = [fmr_ax] if alert["metric"] in FMR_SIDE else [fnmr_ax] if alert["metric"] in ("fnmr", "fnir") else [
            fmr_ax, fnmr_ax]
        on = [ax for ax in on if ax is not None]
        if not on:
            continue
        opened = _when(alert["opened_at"])
        gid = f"alert {alert['type']} {alert['group']} {alert['metric']}"
        if window.start <= opened <= window.end:
            for ax in on:
                ax.axvline(opened, color=color, linestyle="--", linewidth=1.2, gid=gid)
                ax.annotate(f"{MARKER_WORDS.get(alert['type'], alert['type'])}: {label}", (opened, 1),
                            xycoords=("data", "axes fraction"), xytext=(2, -8), textcoords="offset points",
                            fontsize=6, color=color)
            said.append(f"{alert['type']} on {alert['group']} {alert['metric']} opened {alert['opened_at']}")
        else:
            said.append(f"{alert['type']} on {alert['group']} {alert['metric']} open since {alert['opened_at']},"
                        " before the window")
        if alert["resolved_at"] and window.start <= _when(alert["resolved_at"]) <= window.end:
            for ax in on:
                ax.axvline(_when(alert["resolved_at"]), color=color, linestyle=":", linewidth=1,
                           gid=f"resolved {gid[6:]}")
    return said


def _alerts_of(alerts: list[dict], scope: tuple, attribute: str | None) -> list[dict]:
    """The alerts of a deployment and algorithm on a group of ``attribute`` (None: any), or on all groups."""
    return [a for a in alerts if (a["deployment"], a["algorithm"]) == scope[:2] and
            (a["group"] == "*" or attribute is None or a["group"].partition("=")[0] == attribute)]


def _runs(indices: list[int]) -> list[list[int]]:
    """Runs of consecutive step indices: [0, 1, 3, 4, 5] -> [[0, 1], [3, 4, 5]]."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _draw_open_ended(open_ended: list[tuple]) -> None:
    """An interval without an upper bound, drawn as what is known: a dotted line from its lower
    bound to the top of the plot, ending in an upward triangle there (open-ended), never a band
    with an invented top; the axis keeps the limits the bounded data gave it, raised to show every
    lower bound."""
    for ax in {id(item[0]): item[0] for item in open_ended}.values():
        mine = [item for item in open_ended if item[0] is ax]
        lows = [low for *_, low in mine]
        log = ax.get_yscale() == "log"
        bottom, top = ax.get_ylim()
        if log and bottom <= 0:  # nothing bounded on this axis: its limits are matplotlib's defaults
            bottom, top = min(low for low in lows if low > 0) / 2, max(lows) * 4
        if max(lows) >= top:
            top = max(lows) * 4 if log else max(lows) + (max(lows) - bottom) * 0.5 + 1
        for _, color, attr, mid, low in mine:
            ax.vlines(mid, low, top, colors=color, linestyles=":", linewidth=1.2, gid=f"open-ended {attr}")
            ax.plot([mid], [top], marker="^", markersize=5, color=color, clip_on=False, linestyle="none",
                    gid=f"open-ended top {attr}")
        ax.set_ylim(bottom, top)
        ax.plot([], [], color="grey", linestyle=":", marker="^", markersize=5, label="no upper bound")


def _forest(scope: tuple, groups: list[dict], config, marked: set[tuple], weighted: set[tuple]):
    """Each group's rate over the whole window with its interval, per rate; marked groups in red."""
    import matplotlib.pyplot as plt

    from fairwatch.core.estimates import rate_labels

    shown = [g for g in groups if tuple(g[f] for f in ("deployment", "algorithm", "mode")) == scope
             and g["status"] != SUPPRESSED]
    if not shown:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 0.9 + 0.2 * len(shown)), sharey=True, layout="constrained")
    names = ["all" if g["attribute"] == "*" else f"{g['attribute']}={g['group']}" for g in shown]
    for ax, rate, label, target in zip(axes, ("fmr", "fnmr"), rate_labels(scope[2]),
                                       (config.target_fmr, config.target_fnmr)):
        for y, (g, name) in enumerate(zip(shown, names)):
            if g[rate] is None:
                continue
            key = (*scope, g["attribute"], g["group"], rate)
            color = WORSE if key in marked else PLAIN
            ax.errorbar([g[rate]], [y], xerr=[[g[rate] - g[f"{rate}_low"]], [g[f"{rate}_high"] - g[rate]]], fmt="o",
                        markersize=3, capsize=2, color=color, gid=f"rate {g['attribute']}={g['group']} {rate}")
        if target is not None:
            ax.axvline(target, color="red", linestyle="--", linewidth=1, label=f"target {target:g}")
            ax.legend(loc="lower right", frameon=False)
        ax.set_title(f"{label} with {config.confidence:.0%} interval")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(shown)),
                       [n + (WEIGHTED_MARK if any((*scope, g["attribute"], g["group"], r) in weighted for r in ("fmr", "fnmr"))
                             else "") for n, g in zip(names, shown)])
    axes[0].invert_yaxis()
    fig.suptitle(f"Per-group rates over the window: {scope[0]} / {scope[1]} / {scope[2]}", fontsize=9)
    return fig


def report_figures(store, window, config, deployment, algorithm, attribute, frame, groups, min_group_size,
                   progress, alerts: list[dict] = (), marked: set[tuple] = frozenset(),
                   weighted: set[tuple] = frozenset()) -> list[tuple[bytes, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7})
    steps = _steps(window, config.bucket_seconds)
    series = []  # per step: metrics document
    for i, step in enumerate(steps):
        progress("plots over time", i, len(steps))
        series.append(window_metrics(store, step, config, deployment, algorithm)[1])
    progress("plots over time", len(steps), len(steps))
    mids = [s.start + (s.end - s.start) / 2 for s in steps]
    scopes = sorted({(g["deployment"], g["algorithm"], g["mode"], g["attribute"]) for g in groups
                     if g["attribute"] != "*"})
    figures: list[tuple[bytes, str]] = []
    for key in sorted({g_key[:3] for g_key in scopes})[:MAX_FIGURES]:
        fig = _forest(key, groups, config, marked, weighted)
        if fig is not None:
            figures.append((_png(fig), f"Each group's FMR and FNMR over the whole window with its"
                                       f" {config.confidence:.0%} interval ({key[0]}, {key[1]}, {key[2]}); red: above"
                                       " another group's rate of its attribute (section 4) or above its target"
                                       " (dashed line, when declared); " + WEIGHTED_MARK + ": weighted estimate."))
    for scope in scopes[:MAX_FIGURES]:
        fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.6), sharex=True, layout="constrained")
        labels = sorted({g["group"] for g in groups if (g["deployment"], g["algorithm"], g["mode"],
                                                        g["attribute"]) == scope})
        colors = {}
        for label in labels:
            for ax, rate in zip(axes, ("fmr", "fnmr")):
                xs, ys, lo, hi = [], [], [], []
                for mid, doc in zip(mids, series):
                    for g in doc["groups"]:
                        if (g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"]) == (*scope, label):
                            if g["impostor"] + g["genuine"] >= min_group_size and g[rate] is not None:
                                xs.append(mid), ys.append(g[rate]), lo.append(g[f"{rate}_low"]), hi.append(
                                    g[f"{rate}_high"])
                line, = ax.plot(xs, ys, marker=".", label=label, color=colors.get(label))
                colors[label] = line.get_color()
                ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
        for ax, rate in zip(axes, ("FMR", "FNMR")):
            ax.set_title(f"{rate} by {scope[3]}")
            ax.set_ylabel(rate)
            _time_axis(ax)
        marks = _mark_alerts(axes[0], axes[1], _alerts_of(alerts, scope, scope[3]), window, colors)
        axes[1].legend(loc="upper right", frameon=False)
        fig.suptitle(f"{scope[0]} / {scope[1]} / {scope[2]}", fontsize=9)
        figures.append((_png(fig), f"Per-group FMR and FNMR over the window ({scope[0]}, {scope[1]}, {scope[2]},"
                                   f" {scope[3]}), {config.confidence:.0%} interval bands; points of a step with"
                                   f" fewer than {min_group_size} verified outcomes are not drawn. Dashed lines:"
                                   " alerts where they opened (dotted: resolved), in their group's colour: " +
                                   ("; ".join(marks) if marks else "none on this attribute") + "."))
    # differentials over time: FDR (1 = fair) and max/min FMR ratio per attribute
    hidden_sets = {(d["deployment"], d["algorithm"], d["mode"], d["attribute"])
                   for d in groups if d["status"] == SUPPRESSED}
    for key in sorted({s[:3] for s in scopes})[:MAX_FIGURES]:
        fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.6), sharex=True, layout="constrained")
        attributes = sorted({s[3] for s in scopes if s[:3] == key})
        drawn = [False, False]
        open_ended: list[tuple] = []  # (axis, colour, attribute, time, lower bound): no upper bound
        for attr in attributes:
            if (*key, attr) in hidden_sets:
                continue
            for ax, (metric, rate) in zip(axes, (("fdr", "combined"), ("max_min_ratio", "fmr"))):
                xs, ys, bands, unbounded = [], [], {}, []
                for step, (mid, doc) in enumerate(zip(mids, series)):
                    for d in doc["differentials"]:
                        if (d["deployment"], d["algorithm"], d["mode"], d["attribute"], d["metric"]) != (
                                *key, attr, metric) or d["rate"] != rate or d["low"] is None:
                            continue
                        if d["value"] is not None:
                            xs.append(mid), ys.append(d["value"])
                        if d["high"] is None:  # a rate may be 0: the ratio has a lower bound only
                            unbounded.append((mid, d["low"]))
                        else:
                            bands[step] = (d["low"], d["high"])
                line, = ax.plot(xs, ys, marker=".", label=attr)
                for run in _runs(sorted(bands)):  # a band over consecutive bounded steps, none across an open one
                    ax.fill_between([mids[i] for i in run], [bands[i][0] for i in run], [bands[i][1] for i in run],
                                    alpha=0.15, color=line.get_color(), gid=f"band {attr}")
                open_ended += [(ax, line.get_color(), attr, mid, low) for mid, low in unbounded]
                drawn[ax is axes[1]] |= bool(xs or unbounded)
        if not any(drawn):  # every attribute set suppressed or without a value
            plt.close(fig)
            continue
        axes[0].set_title("FDR (1 = fair)")
        axes[1].set_title("max/min FMR ratio (1 = equal)")
        if drawn[1]:
            axes[1].set_yscale("log")
        if config.policy_ratio is not None:
            axes[1].axhline(config.policy_ratio, color="red", linestyle="--", linewidth=1,
                            label=f"policy ratio {config.policy_ratio:g}", gid="policy ratio")
        _draw_open_ended(open_ended)
        for ax in axes:
            _time_axis(ax)
        disparity = [a for a in _alerts_of(alerts, key, None) if a["type"] == "disparity_breach"]
        marks = _mark_alerts(axes[1], None, disparity, window, {})  # the ratio drawn is FMR's
        axes[1].legend(loc="upper right", frameon=False)
        fig.suptitle(f"Differentials over time: {key[0]} / {key[1]} / {key[2]}", fontsize=9)
        figures.append((_png(fig), "Differentials across the groups of each attribute over the window, with"
                                   " simultaneous interval bands; suppressed attribute sets are not drawn" +
                                   (f"; {OPEN_ENDED_CAPTION}" if open_ended else "") +
                                   (f"; dashed red: the policy ratio {config.policy_ratio:g}"
                                    if config.policy_ratio is not None else "") +
                                   ("; disparity alerts: " + "; ".join(marks) if marks else "") + "."))
    return figures
