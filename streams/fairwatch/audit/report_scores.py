"""Scores, not only decisions: the report's section on the verified comparisons' scores per group
(what ``fairwatch audit scores`` prints), as NIST FRVT Part 3 shows them.

Per deployment x algorithm x mode (scores of different algorithms are never pooled) and group:

* the score distributions of the verified impostor and genuine comparisons, weighted, on bins
  shared by the groups of the scope;
* DET points: FMR(t) and FNMR(t) with their intervals at a few thresholds: the decision thresholds
  the verified comparisons were decided at, the threshold at which the overall FMR meets the
  intended FMR (one global threshold: what it gives each group), and the overall thresholds for
  FMR 1e-1 ... 1e-6 where the overall evidence reaches them;
* the threshold at which each group's own FMR would meet the intended FMR, its interval, and the
  FNMR it would cost, or ``too_little_evidence``, never a number
  (:func:`fairwatch.core.score_curves.threshold_for_fmr`);
* identification: FNIR(t) on the mate's own score (a mate not listed is a miss at every threshold
  from its list's cut; below the cut the FNIR is an upper bound, marked), and FNIR at rank <= R
  for R = 1 .. the longest candidate list, rank 1 the headline (the CMC is ``1 - FNIR(R)``).

The numbers come from :mod:`fairwatch.core.score_curves` over :func:`fairwatch.store.verified_scores.read_verified_scores`
and from :mod:`fairwatch.core.identification_ranks` over
:func:`fairwatch.store.identification_ranks.read_rank_tallies`.
"""

from __future__ import annotations

from typing import Any, Iterable

from fairwatch.audit.window import Window
from fairwatch.core.config import CoreConfig
from fairwatch.core.estimates import rate_labels
from fairwatch.core.identification_ranks import IdentificationRanks
from fairwatch.core.layout import OVERALL, GroupKey
from fairwatch.core.score_curves import FOUND, TOO_LITTLE_EVIDENCE, ScoreCurves, threshold_for_fmr
from fairwatch.store.clickhouse import Store
from fairwatch.store.identification_ranks import read_rank_tallies
from fairwatch.store.sealed_evidence import STORED, EvidenceTables
from fairwatch.store.verified_scores import GENUINE_SCORE, read_verified_scores, verified_thresholds

__all__ = ["FMR_LEVELS", "score_section", "score_blocks", "POINT_DECISION", "POINT_TARGET", "shown_ranks",
           "UPPER_BOUND"]

FMR_LEVELS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
MAX_DECISION_THRESHOLDS = 3  # the most used ones per scope
POINT_DECISION, POINT_TARGET = "decision threshold", "overall threshold for the intended FMR"
THRESHOLD_FIELDS = ("status", "threshold", "low", "high", "fmr", "fmr_low", "fmr_high", "fnmr", "fnmr_low",
                    "fnmr_high", "fnmr_exact", "impostors", "impostors_effective", "impostors_needed")
UPPER_BOUND = " (upper bound)"  # after an FNIR(t) below a list's cut (fnmr_exact false)


def shown_ranks(longest: int) -> list[int]:
    """The ranks a table shows of a scope whose longest list is ``longest``: every one up to 5, else
    1, 2, 3, 5, 10, 20, 50, ... and the last (the JSON has every rank).

    >>> shown_ranks(3), shown_ranks(50), shown_ranks(12)
    ([1, 2, 3], [1, 2, 3, 5, 10, 20, 50], [1, 2, 3, 5, 10, 12])
    """
    if longest <= 5:
        return list(range(1, longest + 1))
    steps, base = [1, 2, 3, 5], 10
    while base < longest:
        steps += [base, 2 * base, 5 * base]
        base *= 10
    return sorted({r for r in steps if r < longest} | {longest})


def _level_name(level: float) -> str:
    return f"overall FMR {level:.0e}".replace("e-0", "e-")


def definitions(confidence: float) -> dict[str, str]:
    level = f"{confidence:.0%}"
    return {
        "FMR(t)": "weighted share of the verified impostor comparisons with score >= t (a match at threshold t);"
                  " FPIR(t) in identification, from the rank-1 candidate's score of non-mated searches",
        "FNMR(t)": "weighted share of the verified genuine comparisons with score < t; FNIR(t) in identification,"
                   " on the mate's own score (the candidate the verdict names by mate_rank; a search without a"
                   " candidate list: its own score, as the counts read it)",
        "mate not listed": "a mated search whose mate was not listed has no score: it is a miss at every threshold"
                           " at or above the threshold its list was cut at (the event's), and counted so at every t;"
                           " below the highest such cut the mate might have been returned, so FNIR(t) there is an"
                           " upper bound, marked (upper bound)",
        "FNIR at rank <= R": "weighted share of the verified mated searches with a candidate list whose mate is not"
                             " listed at a rank <= R at or above the threshold (a mate listed below the threshold"
                             " misses at every rank), for R = 1 .. the longest list of the scope; at the longest"
                             " it is the FNIR of the counts (of searches with a list); rank 1 is the headline;"
                             " 1 - FNIR(R) is the CMC; intervals as at each threshold, one rank at a time",
        "weights": "each verified comparison weighs 1 / inclusion_prob (the verification design); the latest"
                   " revision of a primary verdict counts, independent reviews never do",
        "intervals": f"{level} Clopper-Pearson at each threshold, on the effective counts of the weighted"
                     " comparisons (the smaller of the design-based and Kish's effective sizes)",
        "threshold for the intended FMR": "the smallest verified score t of the scope (every group's scores,"
                                          " one grid) with FMR(t) <= the intended FMR",
        "its interval": "[the smallest t whose FMR lower bound is <= the intended FMR, the smallest t from which"
                        " on every FMR upper bound is <= it]: it misses the true threshold only when the FMR"
                        " bound at the true threshold, or just below it, misses",
        "FNMR it would cost": "FNMR at that threshold; its interval runs from the FNMR lower bound at the"
                              " interval's lower end to the upper bound at its upper end",
        "too little evidence": "no threshold among the verified scores has an FMR upper bound within the intended"
                               " FMR: no threshold is given; with no false match at all that takes at least"
                               " impostors_needed effective impostor comparisons",
        "scores": "compared within one deployment, algorithm and mode only: algorithms are never pooled",
    }


def score_section(store: Store, window: Window, config: CoreConfig, deployment: str | None = None,
                  algorithm: str | None = None, attribute: str | None = None, hidden: Iterable[tuple] = (),
                  tables: EvidenceTables = STORED, bins: int = 20) -> tuple[dict[str, Any], ScoreCurves]:
    """The section's document and the curves behind it; ``hidden`` groups (suppressed ones) are left
    out, and with ``attribute`` only its groups and the overall rows are kept."""
    hidden = set(hidden)
    groups = read_verified_scores(store, window.start, window.end, config.intersections, deployment, algorithm,
                                  tables)
    kept = {k: g for k, g in groups.items()
            if k.attribute in (OVERALL, attribute or k.attribute) and tuple(k) not in hidden}
    curves = ScoreCurves(kept, confidence=config.confidence, bins=bins)
    decided = verified_thresholds(store, window.start, window.end, deployment, algorithm, tables)
    target = config.target_fmr
    points: dict[tuple, dict[float, list[str]]] = {}
    for scope in curves.scopes:
        chosen = points.setdefault(scope, {})
        for t in decided.get(scope, [])[:MAX_DECISION_THRESHOLDS]:
            chosen.setdefault(t, []).append(POINT_DECISION)
        overall = curves.groups.get(GroupKey(*scope, OVERALL, OVERALL))
        if overall is None:
            continue
        levels = [(target, POINT_TARGET)] if target is not None else []
        levels += [(level, _level_name(level)) for level in FMR_LEVELS]
        for level, name in levels:
            found = threshold_for_fmr(curves.candidates[scope], overall.impostor_scores, overall.impostor_weights,
                                      level, confidence=config.confidence)
            if found.status == FOUND:
                chosen.setdefault(found.threshold, []).append(name)
    ranks = IdentificationRanks({k: t for k, t in read_rank_tallies(
        store, window.start, window.end, config.intersections, deployment, algorithm, tables).items()
        if k.attribute in (OVERALL, attribute or k.attribute) and tuple(k) not in hidden}, config.confidence)
    det = curves.det_points({scope: list(chosen) for scope, chosen in points.items()})
    for row in det:
        row["point"] = "; ".join(points[(row["deployment"], row["algorithm"], row["mode"])][row["threshold"]])
    thresholds = []
    if target is not None:
        for key, found in curves.thresholds_for_fmr(target).items():
            thresholds.append({**key._asdict(), "target_fmr": target,
                               **{f: getattr(found, f) for f in THRESHOLD_FIELDS}})
    section = {
        "target_fmr": target,
        "confidence": config.confidence,
        "interval": curves.interval,
        "definitions": definitions(config.confidence),
        "genuine_scores_of": sorted(GENUINE_SCORE),
        "thresholds": thresholds,
        "det": det,
        "histograms": curves.histograms(),
        "ranks": ranks.records(),
        "rank_headline": ranks.headline(),
        "groups_left_out": len([k for k in groups if tuple(k) in hidden]),
    }
    return section, curves


# ------------------------------------------------------------------------------ blocks


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _with_interval(value, low, high, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{_number(value, digits)} [{_number(low, digits)}, {_number(high, digits)}]"


def fnmr_text(row: dict, digits: int = 4) -> str:
    """A row's FNMR with its interval, marked an upper bound where it is not exact (``fnmr_exact``)."""
    text = _with_interval(row.get("fnmr"), row.get("fnmr_low"), row.get("fnmr_high"), digits)
    return text + UPPER_BOUND if row.get("fnmr") is not None and row.get("fnmr_exact") is False else text


def rank_tables(section: dict) -> list[tuple[tuple, list[int], list[list[str]]]]:
    """Per identification scope: the ranks shown and one row per group (attribute, group, verified
    mated searches, FNIR [CI] at each rank shown)."""
    by_scope: dict[tuple, dict[tuple, dict[int, dict]]] = {}
    for row in section.get("ranks", []):
        scope = (row["deployment"], row["algorithm"], row["mode"])
        by_scope.setdefault(scope, {}).setdefault((row["attribute"], row["group"]), {})[row["rank"]] = row
    out = []
    for scope, groups in by_scope.items():
        ranks = shown_ranks(max(max(g) for g in groups.values()))
        rows = [[attribute, group, _number(by_rank[1]["mated"])]
                + [_with_interval(by_rank[r]["fnir"], by_rank[r]["fnir_low"], by_rank[r]["fnir_high"]) for r in ranks]
                for (attribute, group), by_rank in groups.items()]
        out.append((scope, ranks, rows))
    return out


def threshold_text(row: dict) -> str:
    """A group's threshold for the intended FMR with its interval, or that there is too little evidence."""
    if row["status"] == TOO_LITTLE_EVIDENCE:
        return (f"too little evidence ({_number(row['impostors_effective'], 3)} effective impostor comparisons;"
                f" at least {row['impostors_needed']} needed)")
    return _with_interval(row["threshold"], row["low"], row["high"], 6)


def score_blocks(section: dict, number: int) -> list[tuple]:
    """Section ``number`` of the report: definitions, then per scope the groups at the global
    threshold and at their own, and the DET points at the decision thresholds."""
    target = section["target_fmr"]
    b: list[tuple] = [("h2", f"{number}. Scores and thresholds")]
    b.append(("p", "The rates above are of the decisions as made. Here the verified comparisons' scores are"
                   " decided again at other thresholds t (a match when score >= t), as NIST FRVT Part 3 shows"
                   " them: does one global threshold cause a difference, and what would a per-group or a raised"
                   " threshold cost in false non-matches?"))
    for term, text in section["definitions"].items():
        b.append(("li", f"{term}: {text}."))
    if target is None:
        b.append(("p", "No intended FMR is declared (a policy's target_fmr, or --target-fmr): no threshold for it"
                       " is computed; the DET points below are at the decision thresholds and at the overall"
                       " thresholds for FMR 1e-1 ... 1e-6."))
    scopes: dict[tuple, list[dict]] = {}
    for row in section["thresholds"]:
        scopes.setdefault((row["deployment"], row["algorithm"], row["mode"]), []).append(row)
    at_target: dict[tuple, dict] = {}
    for row in section["det"]:
        if POINT_TARGET in row["point"].split("; "):
            at_target[(row["deployment"], row["algorithm"], row["mode"], row["attribute"], row["group"])] = row
    for scope, rows in scopes.items():
        fmr_name, fnmr_name = rate_labels(scope[2])
        b.append(("h3", " / ".join(scope)))
        global_t = next((r["threshold"] for k, r in at_target.items() if k[:3] == scope), None)
        b.append(("p", f"Intended {fmr_name} {_number(target)}. One global threshold: "
                       + (f"{_number(global_t, 6)}, where the overall {fmr_name} meets it; each group's rates there"
                          " are in the middle columns." if global_t is not None else
                          "none, the overall evidence does not reach the intended rate.")))
        table = []
        for row in rows:
            point = at_target.get((*scope, row["attribute"], row["group"]))
            table.append([
                row["attribute"], row["group"], _number(row["impostors"]),
                _with_interval(point["fmr"], point["fmr_low"], point["fmr_high"]) if point else "-",
                fnmr_text(point) if point else "-",
                threshold_text(row),
                fnmr_text(row) if row["status"] == FOUND else "-"])
        b.append(("table", ["attribute", "group", "verified impostor", f"{fmr_name} at the global threshold [CI]",
                            f"{fnmr_name} there [CI]", f"own threshold for {fmr_name} {_number(target)} [interval]",
                            f"{fnmr_name} it would cost [interval]"], table))
    decisions = [r for r in section["det"] if POINT_DECISION in r["point"].split("; ")]
    if decisions:
        b.append(("p", "DET points at the decision thresholds in force (the full set of points, at the overall"
                       " thresholds for FMR 1e-1 ... 1e-6 too, and the weighted score histograms are in the JSON"
                       " report):"))
        b.append(("table", ["deployment", "algorithm", "mode", "attribute", "group", "threshold", "FMR [CI]",
                            "FNMR [CI]"], [
            [r["deployment"], r["algorithm"], r["mode"], r["attribute"], r["group"], _number(r["threshold"], 6),
             _with_interval(r["fmr"], r["fmr_low"], r["fmr_high"]), fnmr_text(r)] for r in decisions]))
    if any(r["mode"] == "identification" for r in section["det"]):
        b.append(("p", "Identification: FPIR(t) from the rank-1 score of non-mated searches, FNIR(t) from the"
                       " mate's own score; a mate not listed is a miss at every t, exact from the threshold its list"
                       " was cut at; below it FNIR(t) is marked (upper bound)."))
    for scope, ranks, rows in rank_tables(section):
        b.append(("h3", f"{' / '.join(scope)}: FNIR at rank <= R"))
        b.append(("p", f"Verified mated searches with a candidate list; R up to the longest list ({ranks[-1]})."
                       " Rank 1 asks the mate to be the top candidate; at the longest list the FNIR is that of the"
                       " counts (searches with a list). 1 - FNIR(R) is the identification rate (CMC) at rank R;"
                       " every rank is in the JSON report."))
        b.append(("table", ["attribute", "group", "mated searches"]
                  + [f"FNIR rank {'1' if r == 1 else f'<= {r}'} [CI]" for r in ranks], rows))
    if section["groups_left_out"]:
        b.append(("p", f"{section['groups_left_out']} suppressed groups are left out."))
    return b
