"""Impostor pairs: the report's section on FMR by demographic pair, as NIST FRVT Part 3 reports it.

Per deployment x algorithm x mode and attribute (intersections counted included), the matrix of
:mod:`fairwatch.core.impostor_pairs`: in verification ``FMR[g, h]`` over the impostor pairs of a
``g`` subject and an ``h`` reference; in identification the FPIR of ``g`` probes decomposed by the
label ``h`` of the rank-1 candidate they listed at or above the threshold (each cell over all the
non-mated searches of ``g``). Every cell with its interval, or *too little evidence*; beside the
section 3 differentials, the same metrics on same-group impostors (the diagonal).

Read with :func:`fairwatch.store.impostor_pairs.read_pair_sums` from the tables the rest of the
report reads (stored, or sealed up to its checkpoints), so ``fairwatch audit verify-report``
recomputes it like the other sections. Export rules: an attribute set with a suppressed group
(fewer than ``min_group_size`` verified outcomes) has its matrix and differentials suppressed,
as section 3 does.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from fairwatch.audit.estimates import DIFFERENTIAL_FIELDS, DIFFERENTIAL_METRICS
from fairwatch.audit.report_blocks import (
    METRIC_NAMES,
    Cell,
    by_scope,
    differential_value,
    format_number,
    scope_heading,
    words,
)
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.audit.window import Window
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.impostor_pairs import (
    TOO_LITTLE_EVIDENCE,
    pair_matrices,
    same_group_differentials,
)
from fairwatch.core.layout import OVERALL
from fairwatch.store.clickhouse import Store
from fairwatch.store.impostor_pairs import read_pair_sums
from fairwatch.store.sealed_evidence import STORED, EvidenceTables

__all__ = ["pair_section", "pair_blocks", "definitions"]

SET_FIELDS = ("deployment", "algorithm", "mode", "attribute")


def definitions(config: CoreConfig) -> dict[str, str]:
    level = f"{config.confidence:.0%}"
    return {
        "FMR[g, h]": "verification: weighted false matches / weighted impostor comparisons whose subject has label g"
                     " and whose reference (the event's reference labels) has label h for the attribute; each cell"
                     " over its own impostor pairs",
        "same group": "the diagonal FMR[g, g]: impostors who share the subject's label",
        "without labels": "impostor comparisons whose reference has no label for the attribute (or no reference"
                          " labels at all): left out of the cells, counted per row; those whose subject has none"
                          " are counted per matrix",
        "FPIR[g, h]": "identification with candidate lists: weighted non-mated searches of a g probe whose rank-1"
                      " candidate, listed at or above the threshold, has label h / weighted non-mated searches of"
                      " g probes. The denominator is every non-mated search of g, not the searches that listed an"
                      " h (unlike FMR[g, h], whose denominator is the (g, h) pairs): a row's cells, plus the false"
                      " positives whose rank-1 candidate has no label for the attribute (candidate unlabeled) and"
                      " those of searches sent without a candidate list, sum to g's FPIR",
        "intervals": f"{level} Clopper-Pearson on the verified error share of the cell's denominator, mapped to the"
                     " rate through the inclusion probabilities of the subject group's matches and non-matches"
                     " (as in section 2); on Kish's effective counts where those vary",
        "too little evidence": f"fewer than {config.min_comparisons} comparisons in the cell's denominator"
                               " (min_comparisons, the rule of section 2): the rate is not shown",
        "same-group differentials": "NIST FRVT Part 3 computes the FMR differentials on same-group impostors, so"
                                    " that no group's FMR depends on the mix of impostors it met: the metrics of"
                                    " section 3 with each group's FMR over its same-group impostor pairs (the"
                                    " diagonal) and its FNMR as in section 2, same intervals and status rules;"
                                    " verification only (an FPIR cell is not a rate of its own population)",
        "weights": "each verified outcome weighs 1 / inclusion_prob; the latest revision of a primary verdict"
                   " counts, independent reviews never do",
    }


def _json(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def pair_section(store: Store, window: Window, config: CoreConfig, frame: GroupFrame, differentials: list[dict],
                 deployment: str | None = None, algorithm: str | None = None, attribute: str | None = None,
                 hidden_sets: Iterable[tuple] = (), tables: EvidenceTables = STORED) -> dict[str, Any]:
    """The section's document (module docstring). ``frame``: the window's per-group estimates (the
    cells take their groups' verification design, the same-group differentials their FNMR);
    ``differentials``: section 3's rows, shown beside; ``hidden_sets``: (deployment, algorithm, mode,
    attribute) of the attribute sets with a suppressed group; with ``attribute`` only its matrices."""
    hidden_sets = set(hidden_sets)
    rows = read_pair_sums(store, window.start, window.end, config.intersections, deployment, algorithm, tables)
    matrices, same = [], []
    for matrix in pair_matrices(rows, config, frame.by_group):
        scope = tuple(matrix.scope)
        if attribute not in (None, matrix.scope.attribute) or matrix.scope.attribute == OVERALL:
            continue
        if scope in hidden_sets:
            matrices.append({**matrix.scope._asdict(), "rate": matrix.rate, "status": SUPPRESSED})
            continue
        matrices.append({**matrix.to_dict(), "status": "ok"})
        for d in same_group_differentials(matrix, frame.by_group, config):
            # FNMR alone is the same over any impostors: those rows are section 3's
            if d.metric in DIFFERENTIAL_METRICS and d.rate != "fnmr":
                same.append({f: _json(d.to_dict()[f]) for f in DIFFERENTIAL_FIELDS})
    all_impostors = {tuple(d[f] for f in (*SET_FIELDS, "metric", "rate")): d for d in differentials}
    for row in same:
        # section 3's value of the same metric over all impostors, to read them side by side
        other = all_impostors.get(tuple(row[f] for f in (*SET_FIELDS, "metric", "rate")))
        row["all_impostors"] = {k: other[k] for k in ("value", "low", "high", "status")} if other else None
    return {"confidence": config.confidence, "min_comparisons": config.min_comparisons,
            "definitions": definitions(config), "matrices": matrices, "same_group_differentials": same}


# ------------------------------------------------------------------------------ blocks


def _rate_text(value: float | None, low: float | None, high: float | None) -> str:
    return f"{format_number(value)} [{format_number(low)}, {format_number(high)}]"


def _cell(cell: dict) -> Cell:
    if cell["comparisons"] == 0:
        return Cell("-", "muted")
    counts = f"({cell['errors']} / {cell['comparisons']})"
    if cell["status"] == TOO_LITTLE_EVIDENCE:
        return Cell(f"too little evidence\n{counts}", "muted")
    return Cell(f"{_rate_text(cell['rate'], cell['low'], cell['high'])}\n{counts}")


def _share(value: float | None, count: int) -> str:
    return "-" if value is None else f"{format_number(value)} ({count})"


def _matrix_table(m: dict) -> tuple:
    identification = m["rate"] == "FPIR"
    cells = {(c["group"], c["reference"]): c for c in m["cells"]}
    side = "rank-1 candidate" if identification else "reference"
    head = [f"{m['attribute']}: subject \\ {side}", *m["references"]]
    head += (["candidate unlabeled", "no candidate list", "FPIR of the group (row sum)"] if identification else
             ["impostor pairs without labels", "FMR over all its impostors"])
    rows = []
    for row in m["rows"]:
        g = row["group"]
        line = [g, *(_cell(cells[g, h]) for h in m["references"])]
        if identification:
            line += [_share(row["candidate_unlabeled_rate"], row["candidate_unlabeled"]),
                     _share(row["no_candidate_list_rate"], row["no_candidate_list"]),
                     _share(row["rate"], row["errors"])]
        else:
            line += [str(row["without_labels"]), _share(row["rate"], row["errors"])]
        rows.append(line)
    return ("table", head, rows)


def pair_blocks(section: dict, number: int) -> list[tuple]:
    """Section ``number`` of the report: the definitions, a matrix per attribute set, then the
    same-group differentials beside section 3's."""
    b: list[tuple] = [("h2", f"{number}. Impostor pairs")]
    b.append(("p", "Who are the impostors? The rates of section 2 pool every impostor a group met. NIST FRVT Part 3"
                   " reports false matches by the demographic pair (most occur between people who share sex, race"
                   " or age band) and computes the differentials on same-group impostors. Here each row is the"
                   " subject's group, each column the other side's; cells read"
                   f" rate [{section['confidence']:.0%} interval] (errors / comparisons)."))
    for term, text in section["definitions"].items():
        b.append(("li", f"{term}: {text}."))
    for scope, matrices in by_scope(section["matrices"]).items():
        b.append(scope_heading(scope))
        for m in matrices:
            if m["status"] == SUPPRESSED:
                b.append(("p", f"{m['attribute']}: {SUPPRESSED} (a group has fewer verified outcomes than the"
                               " privacy rule allows)."))
                continue
            if m["rate"] == "FMR" and not any(c["comparisons"] for c in m["cells"]):
                left = sum(r["without_labels"] for r in m["rows"])
                b.append(("p", f"{m['attribute']}: no FMR by pair: {left} impostor comparisons of labelled"
                               f" subjects, none with a reference labelled for {m['attribute']}."))
                continue
            b.append(_matrix_table(m))
            if m["subject_without_labels"]:
                b.append(("p", f"{m['subject_without_labels']} impostor comparisons whose subject has no"
                               f" {m['attribute']} label are left out."))
    same = section["same_group_differentials"]
    if same:
        b.append(("p", "Differentials on same-group impostors (NIST FRVT Part 3), beside those over all impostors"
                       " (section 3); FNMR as in section 2:"))
        for scope, rows in by_scope(same).items():
            b.append(scope_heading(scope))
            table = []
            for d in rows:
                other = d["all_impostors"]
                table.append([d["attribute"], METRIC_NAMES.get(d["metric"], d["metric"]), d["rate"],
                              differential_value(d),
                              Cell(words({"ok": "sufficient"}.get(d["status"], d["status"])),
                                   "muted" if d["status"] in ("insufficient", "undefined") else None),
                              differential_value(other) if other else "-"])
            b.append(("table", ["attribute", "metric", "rate", "same-group impostors: value [CI]", "evidence",
                                "all impostors (section 3)"], table))
    elif not section["matrices"]:
        b.append(("p", "No verified impostor comparison in the window."))
    return b
