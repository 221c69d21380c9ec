"""The report's "Impostor pairs" section: where it stands, that its rows add up to the group table's
rates (an FMR row over all the group's impostors is the group's FMR, an FPIR row the group's FPIR),
that the same-group differentials are computed on the diagonal and shown beside section 3's, that
suppression and the attribute scope apply, and that HTML and PDF show the matrices. The cells'
numbers against a recount of the raw records: ``tests/store/test_impostor_pairs.py`` and, on the
demo's files, ``tests/audit/test_report_findings.py``."""

from __future__ import annotations

import pytest
from fairwatch.audit.report import build_report
from fairwatch.audit.report_render import to_html, to_pdf
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.audit.window import resolve_window
from fairwatch.core.config import CoreConfig
from fairwatch.core.impostor_pairs import TOO_LITTLE_EVIDENCE
from fairwatch.store.clickhouse import open_store
from fairwatch.testing.workload import make_workload, store_workload

CONFIG = CoreConfig(intersections=(("sex", "race"),), target_fmr=0.02, min_comparisons=40)
FROM, TO = "2026-11-25T06:00:00Z", "2026-11-25T08:00:00Z"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    opened = open_store(f"chdb://{tmp_path_factory.mktemp('pairs')}/store")
    store_workload(opened, make_workload(3_000, seed=77, hours=2, reference_share=0.9), CONFIG)
    yield opened
    opened.close()


def _report(store, **kwargs):
    window = resolve_window(None, FROM, TO, CONFIG.bucket_seconds)
    return build_report(store, window, CONFIG, plots=False, evidence_origin=None, **kwargs)


def test_the_section_follows_the_scores_and_its_rows_are_the_group_tables_rates(store):
    report = _report(store, min_group_size=0)
    heads = [b[1] for b in report.blocks if b[0] == "h2"]
    at = heads.index("6. Impostor pairs")
    assert heads[at - 1] == "5. Scores and thresholds" and heads[at + 1:] == [
        "7. Plots", "8. Alert history", "9. Methods", "10. Reproducibility"]
    doc = report.document
    section = doc["impostor_pairs"]
    groups = {(g["deployment"], g["algorithm"], g["mode"], g["attribute"], g["group"]): g for g in doc["groups"]}
    modes = set()
    for m in section["matrices"]:
        assert m["status"] == "ok" and m["rate"] == ("FPIR" if m["mode"] == "identification" else "FMR")
        modes.add(m["mode"])
        for row in m["rows"]:
            g = groups[(m["deployment"], m["algorithm"], m["mode"], m["attribute"], row["group"])]
            assert (row["comparisons"], row["errors"]) == (g["impostor"], g["false_match"])
            assert row["rate"] == pytest.approx(g["fmr"], rel=1e-12)
            cells = [c for c in m["cells"] if c["group"] == row["group"]]
            if m["mode"] == "identification":  # the row's cells and what they leave out add up to the FPIR
                total = sum(c["rate"] for c in cells) + row["candidate_unlabeled_rate"] + row["no_candidate_list_rate"]
                assert total == pytest.approx(g["fmr"], rel=1e-9, abs=1e-15)
                assert {c["comparisons"] for c in cells} <= {row["comparisons"]}
            else:  # the labelled pairs and those without labels are all the group's impostors
                assert sum(c["comparisons"] for c in cells) + row["without_labels"] == row["comparisons"]
            for c in cells:
                assert (c["status"] == TOO_LITTLE_EVIDENCE) == (c["comparisons"] < CONFIG.min_comparisons)
                if c["comparisons"]:
                    assert c["low"] <= c["rate"] <= c["high"]
    assert modes == {"verification", "identification"}
    assert {m["attribute"] for m in section["matrices"]} == {"age", "race", "sex", "sex&race"}
    # same-group differentials: verification FMR and the combined metrics, beside section 3's
    same = section["same_group_differentials"]
    assert same and {d["mode"] for d in same} == {"verification"} and {d["rate"] for d in same} == {"fmr", "combined"}
    pooled = {(d["deployment"], d["algorithm"], d["mode"], d["attribute"], d["metric"], d["rate"]): d
              for d in doc["differentials"]}
    for d in same:
        other = pooled[(d["deployment"], d["algorithm"], d["mode"], d["attribute"], d["metric"], d["rate"])]
        assert d["all_impostors"] == {k: other[k] for k in ("value", "low", "high", "status")}
    # the diagonal is what the same-group max/min ratio is made of
    for d in (d for d in same if d["metric"] == "max_min_ratio" and d["value"] is not None):
        [m] = [m for m in section["matrices"] if all(m[f] == d[f] for f in ("deployment", "algorithm", "mode",
                                                                           "attribute"))]
        diagonal = [c["rate"] for c in m["cells"] if c["group"] == c["reference"] and c["comparisons"]]
        assert d["value"] == pytest.approx(max(diagonal) / min(diagonal), rel=1e-12)


def test_html_and_pdf_show_the_matrices(store):
    report = _report(store, min_group_size=0, deployment="site-0")
    html = to_html(report)
    part = html[html.index("6. Impostor pairs"):html.index("7. Plots")]
    for text in ("race: subject \\ reference", "race: subject \\ rank-1 candidate", "candidate unlabeled",
                 "impostor pairs without labels", "too little evidence", "same-group impostors: value [CI]",
                 "NIST FRVT Part 3"):
        assert text in part, text
    assert to_pdf(report).startswith(b"%PDF")


def test_suppressed_groups_suppress_their_matrix_and_the_attribute_scope_applies(store):
    doc = _report(store, min_group_size=60).document
    hidden = {(g["deployment"], g["algorithm"], g["mode"], g["attribute"]) for g in doc["groups"]
              if g["status"] == SUPPRESSED}
    assert hidden
    for m in doc["impostor_pairs"]["matrices"]:
        scope = (m["deployment"], m["algorithm"], m["mode"], m["attribute"])
        assert (m["status"] == SUPPRESSED) == (scope in hidden)
        if scope in hidden:
            assert "cells" not in m and "rows" not in m
    assert not [d for d in doc["impostor_pairs"]["same_group_differentials"]
                if (d["deployment"], d["algorithm"], d["mode"], d["attribute"]) in hidden]
    scoped = _report(store, min_group_size=0, attribute="race").document["impostor_pairs"]
    assert {m["attribute"] for m in scoped["matrices"]} == {"race"}
