"""The report's figures: per-group rates and differentials over the window, alert markers, as PNG (matplotlib, Agg)."""

from __future__ import annotations

import io
import math
from datetime import timedelta

from fairwatch.audit.estimates import window_metrics
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.audit.window import Window

MAX_STEPS = 24  # points of the over-time plots


MAX_FIGURES = 24


PNG_DPI = 120  # 7.2 in wide: about 110 dpi across an A4 page, legible at 8 pt




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


def report_figures(store, window, config, deployment, algorithm, attribute, frame, groups, min_group_size,
             progress) -> list[tuple[bytes, str]]:
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
                                   " simultaneous interval bands; suppressed attribute sets are not drawn."))
    return figures
