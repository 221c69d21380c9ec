"""The report's scores section and `fairwatch audit scores`: per-group DET points and the per-group
threshold for the intended FMR equal a brute-force sweep over the verified scores of the raw records
(latest primary revision, weights 1 / inclusion_prob, independent reviews never counted); too little
evidence is said, never a number; suppressed groups stay out; expected failures are one `error:` line."""

from __future__ import annotations

import json
import math
import uuid
from contextlib import closing
from datetime import timedelta

import pytest
from fairwatch.audit.report import build_report
from fairwatch.audit.report_render import to_html
from fairwatch.audit.report_scores import fnmr_text
from fairwatch.audit.window import Window
from fairwatch.cli import app
from fairwatch.core.config import CoreConfig
from fairwatch.store.clickhouse import open_store
from fairwatch.testing.oracles import sweep_interval, sweep_sums, sweep_threshold
from fairwatch.testing.stack import server_url
from fairwatch.testing.workload import (
    T0,
    contrary_reviews,
    make_workload,
    rank_records,
    store_workload,
    verified_score_records,
)
from typer.testing import CliRunner

TARGET = 0.05
CONFIG = CoreConfig(intersections=(("sex", "race"),), target_fmr=TARGET)
WINDOW = Window(T0, T0 + timedelta(hours=2))
FROM, TO = "2026-11-25T06:00:00Z", "2026-11-25T08:00:00Z"


@pytest.fixture(scope="module")
def workload():
    return make_workload(1_200, seed=5, hours=2, revision_share=0.08, sampled_share=0.4)


@pytest.fixture(params=[pytest.param("server", marks=pytest.mark.services), "embedded"])
def seeded(request, tmp_path, workload):
    """The URL of a store holding the workload, a database on ClickHouse 18.16 or a chDB directory
    (closed: the CLI opens it itself)."""
    if request.param == "embedded":
        url = f"chdb://{tmp_path}/store"
    else:
        url = server_url(request.getfixturevalue("stack")["FAIRWATCH_CLICKHOUSE_MIGRATOR"],
                         f"fw_scores_{uuid.uuid4().hex[:10]}")
    with closing(open_store(url)) as store:
        store_workload(store, workload, CONFIG, contrary_reviews(workload, 2))
    yield url
    if request.param == "server":
        with closing(open_store(url)) as store:
            store.execute(f"DROP DATABASE IF EXISTS {store.database}")


def _report(url: str, min_group_size: int = 0):
    with closing(open_store(url)) as store:
        return build_report(store, WINDOW, CONFIG, min_group_size=min_group_size, plots=False, evidence_origin=None)


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def _oracle(workload) -> tuple[dict, dict]:
    """Per group: its (impostor, genuine or None) records; per scope: the candidates (every usable score)."""
    raw = verified_score_records(workload, WINDOW.start, WINDOW.end)  # a mate not listed: score -inf
    groups: dict[tuple, list] = {}
    for (*key, truth), rows in raw.items():
        sides = groups.setdefault(tuple(key), [[], []])
        sides[0 if truth == "impostor" else 1] = rows
    candidates: dict[tuple, set] = {}
    for key, (impostors, genuine) in groups.items():
        candidates.setdefault(key[:3], set()).update(s for s, _ in impostors + genuine if s > float("-inf"))
    return groups, {scope: sorted(values) for scope, values in candidates.items()}


def _exact(genuine, t) -> bool:
    """FNIR(t) is exact where no mate without a score (-inf) is in the population, or t is at or above
    the workload's threshold (every list was cut there)."""
    return t >= 0.6 or all(s > float("-inf") for s, _ in genuine)


def _check_section(section: dict, workload, hidden: set = frozenset()) -> None:
    groups, candidates = _oracle(workload)
    statuses = set()
    rows = {tuple(r[f] for f in ("deployment", "algorithm", "mode", "attribute", "group")): r
            for r in section["thresholds"]}
    assert set(rows) == set(groups) - set(hidden)
    for key, row in rows.items():
        impostors, genuine = groups[key]
        want = sweep_threshold(candidates[key[:3]], impostors, genuine, TARGET)
        statuses.add(want["status"])
        assert row["status"] == want["status"], key
        if row["status"] == "too_little_evidence":
            assert row["threshold"] is row["low"] is row["high"] is row["fmr"] is row["fnmr"] is None
            continue
        for name, value in want.items():
            assert name == "status" or _close(row[name], value), (key, name, row[name], value)
        assert row["fnmr_exact"] == _exact(genuine, row["low"])
    assert statuses == {"found", "too_little_evidence"}
    # DET points: every group at every point of its scope, as the sweep gives them
    assert section["det"]
    for p in section["det"]:
        key = tuple(p[f] for f in ("deployment", "algorithm", "mode", "attribute", "group"))
        impostors, genuine = groups[key]
        assert _close(p["fmr"], sweep_interval(sweep_sums(impostors, p["threshold"], True))[0])
        assert _close(p["fmr_high"], sweep_interval(sweep_sums(impostors, p["threshold"], True))[2])
        if not genuine:
            assert p["fnmr"] is None
        else:
            assert _close(p["fnmr_low"], sweep_interval(sweep_sums(genuine, p["threshold"], False))[1])
            assert p["fnmr_exact"] == _exact(genuine, p["threshold"])
    # FNIR at rank <= R: every group and rank, as a loop over the raw searches gives them
    searches = rank_records(workload, WINDOW.start, WINDOW.end)
    ranks = {(r["deployment"], r["algorithm"], r["attribute"], r["group"], r["rank"]): r for r in section["ranks"]}
    want_keys = {key for key in searches if (key[0], key[1], "identification", *key[2:]) not in hidden}
    assert {k[:4] for k in ranks} == want_keys
    for key, row in ranks.items():
        records = searches[key[:4]]
        assert row["rank"] <= max(longest for scope, rows in searches.items() if scope[:2] == key[:2]
                                  for _, _, longest in rows)
        n = errors = w = w_err = w2 = w2_err = 0.0
        for identified, weight, _ in records:
            miss = identified == 0 or identified > row["rank"]
            n, w, w2 = n + 1, w + weight, w2 + weight * weight
            errors, w_err, w2_err = errors + miss, w_err + weight * miss, w2_err + weight * weight * miss
        rate, low, high = sweep_interval((n, errors, w, w_err, w2, w2_err))
        assert (row["mated"], row["missed"]) == (n, errors)
        assert _close(row["fnir"], rate) and _close(row["fnir_low"], low) and _close(row["fnir_high"], high), key
    assert {r["rank"] for r in section["ranks"]} == {1, 2, 3, 4, 5}  # the workload's lists: list_length 5
    points = {p["point"] for p in section["det"]}
    assert any("decision threshold" in p for p in points) and any("intended FMR" in p for p in points)
    # the global threshold of a DET point is the overall row's own threshold for the intended FMR
    overall = {key[:3]: row["threshold"] for key, row in rows.items() if key[3] == "*"}
    for p in section["det"]:
        if "intended FMR" in p["point"]:
            assert p["threshold"] == overall[(p["deployment"], p["algorithm"], p["mode"])] is not None


def test_the_report_section_equals_a_brute_force_sweep(seeded, workload):
    report = _report(seeded)
    section = report.document["scores"]
    _check_section(section, workload)
    assert section["target_fmr"] == TARGET and section["groups_left_out"] == 0
    # histograms: the weighted shares of each population sum to 1, on one set of edges per scope
    for h in section["histograms"]:
        assert len(h["edges"]) == 21 and math.isclose(sum(h["shares"]) + h.get("not_listed_share", 0.0), 1.0)
    assert any(h.get("not_listed") for h in section["histograms"])
    html = to_html(report)
    assert "5. Scores and thresholds" in html and "too little evidence (" in html
    assert "FNIR(t) from the mate&#x27;s own score" in html or "FNIR(t) from the mate's own score" in html
    assert "FNIR at rank &lt;= R" in html and "FNIR rank &lt;= 5 [CI]" in html
    json.dumps(report.document, allow_nan=False)


def test_suppressed_groups_stay_out_of_the_section(seeded, workload):
    report = _report(seeded, min_group_size=40)
    hidden = {tuple(g[f] for f in ("deployment", "algorithm", "mode", "attribute", "group"))
              for g in report.document["groups"] if g["status"] == "suppressed"}
    assert hidden
    section = report.document["scores"]
    _check_section(section, workload, hidden)
    assert section["groups_left_out"] == len(hidden)
    for rows in (section["det"], section["histograms"], section["ranks"]):
        assert not {tuple(r[f] for f in ("deployment", "algorithm", "mode", "attribute", "group")) for r in rows} & hidden


def test_the_cli_prints_the_report_s_numbers(seeded, workload):
    url = seeded
    want = _report(url).document["scores"]
    args = ["audit", "scores", "--store", url, "--from", FROM, "--to", TO, "--target-fmr", str(TARGET)]
    result = CliRunner().invoke(app, [*args, "--json"], env={"FAIRWATCH_INTERSECTIONS": ""})
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["window"] == {"from": FROM, "to": TO}
    assert any(r["attribute"] == "sex&race" for r in document["thresholds"])
    assert {k: document[k] for k in ("thresholds", "det", "histograms", "ranks", "rank_headline")} == {
        k: want[k] for k in ("thresholds", "det", "histograms", "ranks", "rank_headline")}  # the stored intersections
    tables = CliRunner().invoke(app, args)
    assert tables.exit_code == 0, tables.output
    lines = tables.stdout.splitlines()
    assert lines[0].startswith("# threshold at which each group's FMR")
    too_little = [line for line in lines if "\ttoo little evidence\t" in line]
    assert too_little and all("at least 72 needed" in line for line in too_little)
    # identification: FNIR at rank <= R per scope, rank 1 to the longest list (5)
    ranked = [i for i, line in enumerate(lines) if line.startswith("# FNIR at rank <= R, ")]
    assert ranked and lines[ranked[0] + 1].split("\t") == ["attribute", "group", "mated searches", "rank 1",
                                                          "rank <= 2", "rank <= 3", "rank <= 4", "rank <= 5"]
    # without a target: the DET points alone, said plainly
    plain = CliRunner().invoke(app, args[:-2])
    assert plain.exit_code == 0 and "no intended FMR" in plain.stdout and "# DET points" in plain.stdout


def test_an_fnir_below_a_list_s_cut_is_shown_as_an_upper_bound():
    row = {"fnmr": 0.25, "fnmr_low": 0.1, "fnmr_high": 0.5}
    assert fnmr_text({**row, "fnmr_exact": False}) == "0.25 [0.1, 0.5] (upper bound)"
    assert fnmr_text({**row, "fnmr_exact": True}) == fnmr_text(row) == "0.25 [0.1, 0.5]"
    assert fnmr_text({"fnmr": None, "fnmr_exact": None}) == "-"


@pytest.mark.parametrize("extra, code, message", [
    (["--from", "2026-11-20T00:00:00Z", "--to", "2026-11-20T01:00:00Z"], 1, "no verified comparisons in"),
    (["--from", FROM, "--to", TO, "--target-fmr", "2"], 2, "target_fmr must be in (0, 1)"),
    (["--from", FROM, "--to", TO, "--intersections", "sex"], 2, "two or more attributes"),
    (["--from", TO, "--to", FROM], 2, ""),
])
def test_expected_failures_are_one_error_line(seeded, extra, code, message):
    url = seeded
    result = CliRunner().invoke(app, ["audit", "scores", "--store", url, *extra])
    assert result.exit_code == code, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line
