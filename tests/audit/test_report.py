"""`fairwatch report`: the same numbers as `fairwatch metrics` and as a brute-force recount of the stored
per-event labeled outcomes, provenance against the workload, privacy of what leaves the system, the
auditor's read-only access on the real 18.16 server, and PDF/HTML that render.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import urlparse

import numpy as np
import pytest
from fairwatch.audit.estimates import metrics_document
from fairwatch.audit.report import build_report
from fairwatch.audit.report_render import to_html, to_pdf
from fairwatch.audit.suppression import SUPPRESSED
from fairwatch.audit.window import resolve_window
from fairwatch.cli import app
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.layout import GroupKey
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.processor import BatchProcessor, RawMessage
from fairwatch.testing.stack import server_url
from fairwatch.testing.workload import make_workload, process_in_batches
from typer.testing import CliRunner

CONFIG = CoreConfig(intersections=(("sex", "race"),))
# a window that cuts through buckets at both ends: it widens to [06:30, 07:46)
FROM, TO = "2026-11-25T06:30:20Z", "2026-11-25T07:45:40Z"
START = datetime(2026, 11, 25, 6, 30, tzinfo=timezone.utc)
END = datetime(2026, 11, 25, 7, 46, tzinfo=timezone.utc)


def seed_with_late_outcomes(store, workload) -> Counter:
    """Events and first outcomes, then (a second batch, after the counts were written) the rest of
    the outcomes: late ones and revisions that replace labels already counted. Returns the
    rejections by reason the pipeline reported."""
    migrate(store)
    early, late = [], []
    seen_outcome: set[bytes] = set()
    for kind, key, value in workload.messages:
        if kind == "verified-outcomes" and (key in seen_outcome or hash(key) % 3 == 0):
            late.append((kind, key, value))
        else:
            if kind == "verified-outcomes":
                seen_outcome.add(key)
            early.append((kind, key, value))
    assert sum(1 for _, _, v in late if b'"revision": 1' in v) > 10
    return process_in_batches(store, CONFIG, (early, late))


@pytest.fixture(scope="module")
def workload():
    # without searches' lists: a workload whose groups leave two ratios undefined (a test below needs them)
    return make_workload(3_000, seed=77, hours=2, revision_share=0.05, search_share=0)


@pytest.fixture(params=[pytest.param("server", marks=pytest.mark.services), "embedded"])
def seeded(request, tmp_path, workload):
    if request.param == "embedded":
        store = open_store(f"chdb://{tmp_path}/chdb")
    else:
        stack = request.getfixturevalue("stack")
        store = open_store(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_report_{tmp_path.name[-12:].replace('-', '_')}"))
    rejected = seed_with_late_outcomes(store, workload)
    yield store, rejected
    if request.param == "server":
        store.execute(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


def recount_from_labeled_outcomes(store) -> dict:
    """Brute force over the stored per-event rows (latest revision each): 12 sums per group."""
    rows = store.query(
        "SELECT event_id, deployment, algorithm, toString(mode), subject_keys, subject_values, toString(decision),"
        " toString(truth), weight FROM labeled_outcomes FINAL WHERE bucket >= %(s)s AND bucket < %(e)s",
        {"s": START, "e": END})
    assert len({r[0] for r in rows}) == len(rows)  # one row per event
    counts: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 12)
    for _, deployment, algorithm, mode, keys, values, decision, truth, weight in rows:
        subject = dict(zip(keys, values))
        groups = [("*", "*"), *subject.items(), ("sex&race", f"{subject['sex']}&{subject['race']}")]
        impostor = truth == "impostor"
        error = decision == ("match" if impostor else "non_match")
        base = 0 if impostor else 6
        for attribute, group in groups:
            c = counts[(deployment, algorithm, mode, attribute, group)]
            for i, v in enumerate((1, error, weight, weight * error, weight * weight, weight * weight * error)):
                c[base + i] += v
    return counts


def report_document(store, min_group_size=0, **kwargs):
    window = resolve_window(None, FROM, TO, CONFIG.bucket_seconds)
    return build_report(store, window, CONFIG, min_group_size=min_group_size, plots=False, **kwargs).document


@pytest.mark.services
def test_report_equals_metrics_equals_a_recount_of_labeled_outcomes(seeded, workload):
    store, _ = seeded
    result = CliRunner().invoke(app, ["report", "--store", store.url, "--from", FROM, "--to", TO, "--format", "json",
                                      "--min-group-size", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # the reproducibility command, as printed, against the same store
    command = report["reproducibility"]["command"].split()
    assert command[:2] == ["fairwatch", "metrics"] and "--without-labels" in command
    metrics = CliRunner().invoke(app, [*command[1:], "--store", store.url])
    assert metrics.exit_code == 0, metrics.output
    document = json.loads(metrics.stdout)
    assert "labels" not in document
    labelled = CliRunner().invoke(app, ["metrics", "--store", store.url, "--from", FROM, "--to", TO, "--json"])
    assert json.loads(labelled.stdout)["labels"] == report["labels"]
    # 1. report == fairwatch metrics, number for number, and the hash says so
    assert report["scope"]["window"] == document["window"] == {"from": "2026-11-25T06:30:00Z",
                                                                 "to": "2026-11-25T07:46:00Z"}
    assert report["groups"] == document["groups"]
    assert report["differentials"] == document["differentials"]
    assert report["homogeneity"] == document["homogeneity"] and len(document["homogeneity"]) >= 2
    assert report["reproducibility"]["metrics_sha256"] == hashlib.sha256(metrics.stdout.encode()).hexdigest()
    # 2. == a recount of the stored per-event rows through the core's estimator
    counts = recount_from_labeled_outcomes(store)
    keys = [GroupKey(*k) for k in counts]
    frame = GroupFrame.from_counts(keys, np.array([counts[k] for k in counts]), CONFIG)
    recount = metrics_document(frame, resolve_window(None, FROM, TO, 60))
    assert len(recount["groups"]) == len(report["groups"])
    for mine, theirs in [*zip(report["groups"], recount["groups"]),
                         *zip(report["differentials"], recount["differentials"]),
                         *zip(report["homogeneity"], recount["homogeneity"])]:
        assert list(mine) == list(theirs)
        for field in mine:
            if isinstance(mine[field], float):
                assert mine[field] == pytest.approx(theirs[field], rel=1e-9), (field, mine)
            else:
                assert mine[field] == theirs[field], (field, mine)
    # 3. and the stored rows are the workload's final labels (late outcomes in, revisions replacing)
    final = {}
    for event_id, event in workload.events.items():
        occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        if event_id in workload.outcomes and START <= occurred.replace(second=0, microsecond=0) < END:
            final[event_id] = max(workload.outcomes[event_id], key=lambda d: d["revision"])["truth"]
    stored = dict(store.query("SELECT event_id, toString(truth) FROM labeled_outcomes FINAL"
                              " WHERE bucket >= %(s)s AND bucket < %(e)s", {"s": START, "e": END}))
    assert stored == final
    assert any(max(d["revision"] for d in workload.outcomes[e]) == 1 for e in final)


@pytest.mark.services
def test_provenance_against_the_workload(seeded, workload):
    store, rejected = seeded
    report = report_document(store)
    prov = report["provenance"]
    in_window, covered = Counter(), Counter()
    delays = []
    for event_id, event in workload.events.items():
        occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        if not START <= occurred < END:
            continue
        labeled = event_id in workload.outcomes
        for attribute, group in event["subject"].items():
            in_window[(event["deployment"], event["mode"], attribute, group)] += 1
            covered[(event["deployment"], event["mode"], attribute, group)] += labeled
        if labeled:
            outcome = max(workload.outcomes[event_id], key=lambda d: d["revision"])
            verified = datetime.fromisoformat(outcome["verified_at"].replace("Z", "+00:00"))
            delays.append(int(verified.timestamp()) - int(occurred.timestamp()))
    assert prov["events"] == sum(1 for e in workload.events.values()
                                 if START <= datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) < END)
    assert prov["verified_outcomes"] == len(delays)
    assert {(c["deployment"], c["mode"], c["attribute"], c["group"]): (c["events"], c["verified"])
            for c in prov["coverage_by_group"]} == {k: (in_window[k], covered[k]) for k in in_window}
    edges = [0, 1, 6, 24, 72, 168, 720]
    expected_bins = [sum(d < 0 for d in delays)] + [
        sum(lo * 3600 <= d < hi * 3600 for d in delays) for lo, hi in zip(edges, edges[1:])] + [
        sum(d >= 720 * 3600 for d in delays)]
    assert [h["outcomes"] for h in prov["label_delay"]["histogram"]] == expected_bins
    assert prov["label_delay"]["max_hours"] == pytest.approx(max(delays) / 3600)
    assert prov["label_delay"]["p50_hours"] == pytest.approx(np.median(delays) / 3600, rel=0.05)
    # dead letters: what the pipeline rejected, by reason (all rejected "now", inside a wide window)
    wide = build_report(store, resolve_window(None, "2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z", 60), CONFIG,
                        plots=False).document
    assert {d["reason_code"]: d["messages"] for d in wide["provenance"]["dead_letters_by_reason"]} == {
        reason: n for reason, n in rejected.items()}
    assert report["alerts"] == []


@pytest.mark.services
def test_small_groups_are_suppressed_and_no_identifier_leaves(seeded, workload):
    store, _ = seeded
    full = report_document(store, min_group_size=0)
    k = 40
    cut = report_document(store, min_group_size=k)
    small = {(g["deployment"], g["mode"], g["attribute"], g["group"]) for g in full["groups"]
             if g["impostor"] + g["genuine"] < k}
    assert small and len(small) < len(full["groups"])
    for before, after in zip(full["groups"], cut["groups"]):
        key = (before["deployment"], before["mode"], before["attribute"], before["group"])
        if key in small:
            assert after["status"] == SUPPRESSED and after["fmr"] is None and after["impostor"] is None
        else:
            assert after == before
    assert cut["privacy"]["suppressed_groups"] == len(small)
    small_sets = {(d, m, a) for d, m, a, _ in small}
    for before, after in zip(full["differentials"], cut["differentials"]):
        if (before["deployment"], before["mode"], before["attribute"]) in small_sets:
            assert after["status"] == SUPPRESSED and after["value"] is None
        else:
            assert after == before
    for c in cut["provenance"]["coverage_by_group"]:
        assert (c["status"] == SUPPRESSED) == ((c["verified"] or 0) < k) and (c["status"] != SUPPRESSED or
                                                                               c["events"] is None)
    # no event ids, reviewer ids or alert ids in any export
    identifiers = set(workload.events) | {d["reviewer"] for docs in workload.outcomes.values() for d in docs}
    for fmt, scope in (("json", []), ("csv", []), ("html", ["--attribute", "sex&race"])):  # html: fewer plots
        out = CliRunner().invoke(app, ["report", "--store", store.url, "--from", FROM, "--to", TO, "--format", fmt,
                                       "--min-group-size", str(k), *scope])
        assert out.exit_code == 0, out.output
        found = set(re.findall(r"(?:ev|rev|orphan)-[0-9-]+", out.stdout))
        assert not (found & identifiers), (fmt, sorted(found)[:5])
        assert "suppressed" in out.stdout


@pytest.mark.services
def test_auditor_reads_and_cannot_write_on_the_real_server(stack, workload, tmp_path):
    database = f"fw_auditor_{tmp_path.name[-12:].replace('-', '_')}"
    url = server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], database)
    store = open_store(url)
    try:
        seed_with_late_outcomes(store, workload)
        from fairwatch.store.auditlog import append_records

        append_records(store, "alert", [{"n": 1}], now=START)
        auditor = server_url(stack["FAIRWATCH_CLICKHOUSE_AUDITOR"], database)
        assert urlparse(auditor).username == "auditor"
        result = CliRunner().invoke(app, ["report", "--store", auditor, "--from", FROM, "--to", TO, "--format", "json",
                                          "--min-group-size", "0"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["groups"] == report_document(store)["groups"]
        verified = CliRunner().invoke(app, ["audit", "verify-chain", "--store", auditor, "--from", "2026-11-25T00:00:00Z",
                                            "--to", "2026-11-26T00:00:00Z", "--json"])
        assert verified.exit_code == 0 and json.loads(verified.stdout)["records_checked"] == 1
        # the report tells auditors to rerun `fairwatch metrics`: it runs as this read-only user too
        metrics = CliRunner().invoke(app, ["metrics", "--store", auditor, "--from", FROM, "--to", TO, "--json"])
        assert metrics.exit_code == 0, metrics.output
        counts = lambda rows: sorted((g["deployment"], g["attribute"], g["group"], g["impostor"], g["false_match"],  # noqa: E731
                                      g["genuine"], g["false_non_match"]) for g in rows)
        assert counts(json.loads(metrics.stdout)["groups"]) == counts(json.loads(result.stdout)["groups"])
        from fairwatch.audit.report import open_for_reading

        reader = open_for_reading(auditor)
        with pytest.raises(Exception, match="readonly"):
            reader.insert("audit_log", ["chain", "seq", "kind", "recorded_at", "content", "prev_hash", "hash", "mac"],
                          [("alert", 2, "alert", START, "{}", "0" * 64, "0" * 64, "")])
        with pytest.raises(Exception, match="readonly"):
            reader.execute("ALTER TABLE audit_log DELETE WHERE seq = 1")
        assert store.query("SELECT count() FROM audit_log") == [(1,)]
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {database}")


def test_empty_window_gives_a_message_not_a_file(tmp_path):
    store = open_store(f"chdb://{tmp_path}/chdb")
    migrate(store)
    store.close()
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", "--store", f"chdb://{tmp_path}/chdb", "--from", FROM, "--to", TO,
                                      "--format", "html", "--out", str(out)])
    assert result.exit_code == 1
    assert "no verified outcomes in [2026-11-25T06:30:00Z, 2026-11-25T07:46:00Z)" in result.output
    assert not out.exists()
    # an --out into a folder that does not exist: one error line before any work, no traceback
    missing = tmp_path / "no" / "such" / "r.html"
    result = CliRunner().invoke(app, ["report", "--store", f"chdb://{tmp_path}/chdb", "--from", FROM, "--to", TO,
                                      "--out", str(missing)])
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
    assert "does not exist" in result.output and "Traceback" not in result.output and not missing.parent.exists()


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images, self.tables = [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)
        self.images += tag == "img" and dict(attrs)["src"].startswith("data:image/png;base64,")
        self.tables += tag == "table"

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag


def test_html_and_pdf_carry_the_same_blocks_and_render(tmp_path, workload):
    import pypdfium2

    store = open_store(f"chdb://{tmp_path}/chdb")
    try:
        seed_with_late_outcomes(store, workload)
        window = resolve_window(None, FROM, TO, 60)
        report = build_report(store, window, CoreConfig(intersections=CONFIG.intersections, target_fmr=0.01),
                              deployment="site-0", attribute="race")
    finally:
        store.close()
    assert {g["attribute"] for g in report.document["groups"]} == {"*", "race"}
    images = [b for b in report.blocks if b[0] == "img"]
    assert len(images) == 2 + 2 + 2  # per mode: each group over the window, rates over time (race), differentials
    parser = _Tags()
    parser.feed(to_html(report))
    assert parser.stack == [] and parser.images == len(images)
    assert parser.tables == sum(1 for b in report.blocks if b[0] == "table" and b[2])
    pdf = pypdfium2.PdfDocument(to_pdf(report))
    assert len(pdf) >= 3
    for page in pdf:
        pixels = np.asarray(page.render(scale=0.5).to_pil().convert("L"))
        assert (pixels < 200).mean() > 0.005  # ink on every page
    text = "".join(page.get_textpage().get_text_range() for page in pdf)
    pdf.close()
    for block in report.blocks:  # every heading and table cell of the HTML is in the PDF too
        if block[0] in ("h1", "h2"):
            assert block[1] in text
    for g in report.document["groups"]:
        assert g["group"] in text


@pytest.mark.services
def test_alert_history_without_ids_and_small_groups_hidden(seeded):
    store, _ = seeded
    full = report_document(store)
    small = next(g for g in full["groups"] if g["attribute"] == "sex&race"
                 and g["impostor"] + g["genuine"] < 40)
    columns = ["id", "type", "severity", "deployment", "algorithm", "group_label", "metric", "value_estimate",
               "value_low", "value_high", "baseline", "detector", "evidence_n", "state", "opened_at", "resolved_at",
               "runbook_url", "dashboard_url", "version"]
    at = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
    before = datetime(2026, 11, 25, 5, 0, tzinfo=timezone.utc)
    rows = [  # open in the window; open before and resolved inside; resolved before the window starts
        ("alert-secret-1", "disparity_breach", "critical", "site-0", "algo-1", "race=Black", "fmr", 0.03, 0.02,
         0.04, 0.01, "sr", 500.0, "firing", at, None, "http://runbook", "http://dash", 1),
        ("alert-secret-2", "error_rate_drift", "warning", small["deployment"], "algo-1", small["group"], "fmr", 0.2,
         0.1, 0.3, 0.01, "sr", 9.0, "resolved", before, at, "", "", 1),
        ("alert-secret-3", "label_backlog", "info", "site-1", "algo-1", "*", "backlog", 1.0, None, None, None, "n",
         1.0, "resolved", before, before + timedelta(minutes=30), "", "", 1),
    ]
    store.insert("alerts", columns, rows)
    alerts = report_document(store, min_group_size=40)["alerts"]
    assert [(a["type"], a["group"]) for a in alerts] == [("error_rate_drift", small["group"]),
                                                         ("disparity_breach", "race=Black")]
    assert alerts[0]["value"] is None and alerts[0]["state"] == "resolved (suppressed)"
    assert (alerts[1]["value"], alerts[1]["low"], alerts[1]["high"]) == (0.03, 0.02, 0.04)
    assert alerts[1]["opened_at"] == "2026-11-25T07:00:00Z" and alerts[1]["resolved_at"] is None
    text = json.dumps(alerts)
    assert "alert-secret" not in text and "http://" not in text


def test_policy_file_sets_targets_and_is_hashed(tmp_path, workload):
    from pathlib import Path

    policy = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "policy" / "gate-a.yaml"
    url = f"chdb://{tmp_path}/chdb"
    store = open_store(url)
    seed_with_late_outcomes(store, workload)
    store.close()
    result = CliRunner().invoke(app, ["report", "--store", url, "--from", FROM, "--to", TO, "--format", "json",
                                      "--min-group-size", "0", "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["methods"]["policy"]["sha256"] == hashlib.sha256(policy.read_bytes()).hexdigest()
    assert "target_fmr: 1.0e-3" in policy.read_text() and report["methods"]["thresholds"]["target_fmr"] == 0.001
    metrics = CliRunner().invoke(app, ["metrics", "--store", url, "--from", FROM, "--to", TO, "--json",
                                       "--target-fmr", "0.001", "--target-fnmr", "0.02"])
    assert report["groups"] == json.loads(metrics.stdout)["groups"]
    assert "--target-fmr 0.001 --target-fnmr 0.02" in report["reproducibility"]["command"]
    # the policy's ratio floors: named on every ratio row, in the thresholds and in the command
    assert "ratio_floor: {fmr: 1.0e-5, fnmr: 1.0e-3}" in policy.read_text()
    assert (report["methods"]["thresholds"]["ratio_floor_fmr"], report["methods"]["thresholds"]["ratio_floor_fnmr"]) \
        == (1e-5, 1e-3)
    ratios = [d for d in report["differentials"] if d["metric"] in ("max_min_ratio", "max_geomean", "ir")]
    assert ratios and all(d["fmr_floor"] == (1e-5 if d["rate"] != "fnmr" else None) for d in ratios)
    assert all(d["fmr_floor"] is None and d["fnmr_floor"] is None for d in report["differentials"]
               if d["metric"] in ("fdr", "garbe"))
    command = report["reproducibility"]["command"].split()
    assert "--ratio-floor-fmr 1e-05 --ratio-floor-fnmr 0.001" in report["reproducibility"]["command"]
    again = CliRunner().invoke(app, command[1:] + ["--store", url])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["differentials"] == report["differentials"]


def test_html_renders_in_headless_chromium_and_the_pdf_in_pdftoppm(tmp_path, workload):
    import json
    import subprocess

    from fairwatch.testing.tools import RENDER_CHECK, debian_tool, headless
    from PIL import Image

    store = open_store(f"chdb://{tmp_path}/chdb")
    try:
        seed_with_late_outcomes(store, workload)
        report = build_report(store, resolve_window(None, FROM, TO, 60), CONFIG, deployment="site-0",
                              attribute="race")
    finally:
        store.close()
    figures = sum(1 for b in report.blocks if b[0] == "img")
    page = tmp_path / "report.html"
    page.write_text(to_html(report).replace("<head>", "<head>" + RENDER_CHECK, 1))
    dom = headless(debian_tool("chromium", "chromium"), "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    marker = dom.stdout.split('<pre id="render-check">', 1)[1].split("</pre>", 1)[0]
    assert json.loads(marker.replace("&quot;", '"')) == {"images": figures, "broken": [], "errors": []}
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(to_pdf(report))
    done = subprocess.run([debian_tool("pdftoppm", "poppler-utils"), "-png", "-r", "60", str(pdf),
                           str(tmp_path / "page")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 3
    for path in pages:  # A4 portrait, and not blank
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        height, width = pixels.shape
        assert abs(height / width - 297 / 210) < 0.02
        assert (pixels < 200).mean() > 0.005 and pixels.std() > 5


def test_differential_cells_say_a_missing_upper_bound_and_the_floors():
    from fairwatch.audit.report_blocks import differential_value

    unbounded = {"metric": "max_min_ratio", "rate": "fmr", "value": None, "low": 2.5, "high": None,
                 "fmr_floor": None, "fnmr_floor": None}
    assert differential_value(unbounded) == "at least 2.5 (no upper bound)"
    floored = {"metric": "ir", "rate": "combined", "value": 3.0, "low": 1.0, "high": 12.0, "fmr_floor": 1e-05,
               "fnmr_floor": 0.001}
    assert differential_value(floored) == "3 [1, 12] (FMR floor 1e-05, FNMR floor 0.001)"
    assert differential_value({**floored, "fmr_floor": None, "fnmr_floor": None}) == "3 [1, 12]"


# ---- users issue #27, item 4: frictions of the auditor report, each reproduced first ----------------


def _report_of(tmp_path, workload, config=CONFIG, **kwargs):
    store = open_store(f"chdb://{tmp_path}/chdb")
    try:
        seed_with_late_outcomes(store, workload)
        return build_report(store, resolve_window(None, FROM, TO, 60), config, **kwargs)
    finally:
        store.close()


def test_the_rerun_command_runs_as_printed(tmp_path, workload, monkeypatch):
    """Friction: the reproducibility command omitted --store and failed as printed."""
    import shlex

    monkeypatch.delenv("FAIRWATCH_CLICKHOUSE", raising=False)
    url = f"chdb://{tmp_path}/my store"  # a space: the command must quote it
    store = open_store(url)
    seed_with_late_outcomes(store, workload)
    store.close()
    result = CliRunner().invoke(app, ["report", "--store", url, "--from", FROM, "--to", TO, "--format", "json",
                                      "--min-group-size", "0", "--policy-ratio", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    command = shlex.split(report["reproducibility"]["command"])
    assert command[:2] == ["fairwatch", "metrics"] and command[command.index("--store") + 1] == url
    again = CliRunner().invoke(app, command[1:], env={"FAIRWATCH_CLICKHOUSE": ""})
    assert again.exit_code == 0, again.output
    assert hashlib.sha256(again.stdout.encode()).hexdigest() == report["reproducibility"]["metrics_sha256"]


def test_the_rerun_command_never_prints_a_password():
    """A password-protected store: the command has no --store (a redacted one would override the
    environment and fail), and the note says to set FAIRWATCH_CLICKHOUSE, naming the URL less its password."""
    from fairwatch.audit.report import rerun_command

    import shlex

    command, note = rerun_command("clickhouse://writer:s3cret@db:9440/fw?secure=1", ["--json"])
    assert "s3cret" not in command + note
    assert shlex.split(command) == ["fairwatch", "metrics", "--json"]
    assert "FAIRWATCH_CLICKHOUSE" in note and "clickhouse://writer@db:9440/fw?secure=1" in note
    command, note = rerun_command("chdb:///tmp/fw", ["--json"])
    assert command == "fairwatch metrics --store chdb:///tmp/fw --json" and note == ""
    command, note = rerun_command("clickhouse://auditor:@127.0.0.1:19000/fw", ["--json"])  # an empty password
    assert command == "fairwatch metrics --store clickhouse://auditor:@127.0.0.1:19000/fw --json" and note == ""


def test_a_redacted_rerun_command_runs_as_printed_with_the_store_in_the_environment(tmp_path, workload, monkeypatch):
    """Review finding: the note said 'or set FAIRWATCH_CLICKHOUSE' while the command passed the
    redacted --store, which overrides it. Here the store's URL is taken as holding a password (the
    redaction is stubbed: chDB has none); the command, pasted as printed with FAIRWATCH_CLICKHOUSE
    set as the note says, reprints the numbers whose hash the report gives."""
    import shlex

    from fairwatch.audit import report as report_module

    url = f"chdb://{tmp_path}/chdb"
    store = open_store(url)
    seed_with_late_outcomes(store, workload)
    store.close()
    monkeypatch.setattr(report_module, "redacted_url", lambda u: u.replace("chdb://", "chdb://REDACTED"))
    made = CliRunner().invoke(app, ["report", "--store", url, "--from", FROM, "--to", TO, "--json",
                                    "--min-group-size", "0"], env={"FAIRWATCH_CLICKHOUSE": ""})
    assert made.exit_code == 0, made.output
    repro = json.loads(made.stdout)["reproducibility"]
    assert "FAIRWATCH_CLICKHOUSE" in repro["command_note"] and "chdb://REDACTED" in repro["command_note"]
    command = shlex.split(repro["command"])
    assert command[:2] == ["fairwatch", "metrics"] and "--store" not in command
    again = CliRunner().invoke(app, command[1:], env={"FAIRWATCH_CLICKHOUSE": url})
    assert again.exit_code == 0, again.output
    assert hashlib.sha256(again.stdout.encode()).hexdigest() == repro["metrics_sha256"]


def test_intervals_keep_to_one_line_in_the_a4_pdf(tmp_path, workload):
    """Friction: the PDF wrapped intervals over three lines. Every interval of the group and
    differential tables is on one line of the PDF's text, and every page is A4."""
    import pypdfium2

    from fairwatch.audit.report_blocks import differential_value, rate_interval

    report = _report_of(tmp_path, workload, CoreConfig(intersections=CONFIG.intersections, policy_ratio=2.0),
                        plots=False, min_group_size=0)
    pdf = pypdfium2.PdfDocument(to_pdf(report))
    try:
        sizes = {tuple(round(v) for v in page.get_size()) for page in pdf}
        text = "\n".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()
    assert sizes == {(595, 842)}  # A4 in points
    lines = {line.strip() for line in text.splitlines()}
    cells = [rate_interval(g, rate) for g in report.document["groups"] for rate in ("fmr", "fnmr")]
    cells += [differential_value(d) for d in report.document["differentials"]]
    assert len(cells) > 100
    broken = [c for c in cells if not any(c in line for line in lines)]
    assert broken == [], broken[:5]


def test_every_metric_is_defined_where_it_is_used(tmp_path, workload):
    """Friction: GARBE, FDR and IR were never explained. The differentials section defines each
    metric its table shows, with the weights used, and the definitions are the formulas: FDR, IR
    and GARBE recomputed by hand from the group rows equal the rows'."""
    report = _report_of(tmp_path, workload, plots=False, min_group_size=0, deployment="site-0")
    blocks = report.blocks
    start = next(i for i, b in enumerate(blocks) if b[0] == "h2" and "Differentials" in b[1])
    end = next(i for i, b in enumerate(blocks) if i > start and b[0] == "h2")
    section = " ".join(str(x) for b in blocks[start:end] for x in b[1:] if isinstance(x, str))
    for name in ("max/min ratio", "max/geomean", "GARBE", "FDR", "IR"):
        assert f"{name}:" in section, name
    assert "alpha = 0.5" in section
    # no wall of bare 'ok': the differentials' evidence column says what it means
    evidence = {str(row[4]) for b in blocks[start:end] if b[0] == "table" and b[1][4:5] == ["evidence"]
                for row in b[2]}
    assert evidence and evidence <= {"sufficient", "insufficient", "undefined", "suppressed"}
    groups = report.document["groups"]
    for d in report.document["differentials"]:
        rows = [g for g in groups if (g["deployment"], g["algorithm"], g["mode"], g["attribute"]) ==
                (d["deployment"], d["algorithm"], d["mode"], d["attribute"])]
        fmr, fnmr = np.array([g["fmr"] for g in rows]), np.array([g["fnmr"] for g in rows])

        def gini(r):
            n = len(r)
            return n / (n - 1) * np.abs(r[:, None] - r[None, :]).sum() / (2 * n * n * r.mean())

        by_hand = {"fdr": 1 - (0.5 * (fmr.max() - fmr.min()) + 0.5 * (fnmr.max() - fnmr.min())),
                   "ir": (fmr.max() / fmr.min()) ** 0.5 * (fnmr.max() / fnmr.min()) ** 0.5,
                   "garbe": 0.5 * gini(fmr) + 0.5 * gini(fnmr)}
        if d["rate"] == "combined" and d["value"] is not None:
            assert d["value"] == pytest.approx(by_hand[d["metric"]], rel=1e-9), d
    # the group section defines its rates where it shows them
    start = next(i for i, b in enumerate(blocks) if b[0] == "h2" and "Error rates" in b[1])
    section = " ".join(str(x) for b in blocks[start:start + 8] for x in b[1:] if isinstance(x, str))
    assert "FMR:" in section and "FNMR:" in section


def _seed_events(store, events, outcomes):
    migrate(store)
    processor, sink = BatchProcessor(CONFIG), ClickHouseSink(store, CONFIG)
    messages = [RawMessage(k, k, 0, i, d["event_id"].encode(), json.dumps(d).encode())
                for i, (k, d) in enumerate([*(("match-events", e) for e in events),
                                            *(("verified-outcomes", o) for o in outcomes)])]
    result = processor.process(messages, lambda event_id, partition: None)
    assert not result.rejected, result.rejected
    sink.write(result.sink)


def test_weighted_cells_are_marked(tmp_path):
    """Friction: weighted cells were not marked. A rate is marked when its verified outcomes carry
    different weights (so errors / verified is not the rate): site-w verifies a quarter of its
    non-matches, site-u every comparison; the oracle reads the weights from the outcomes."""
    import random

    from fairwatch.audit.report_blocks import WEIGHTED_MARK

    rng = random.Random(5)
    events, outcomes = [], []
    for i in range(4000):
        deployment = "site-w" if i % 2 else "site-u"
        impostor = rng.random() < 0.6
        error = rng.random() < (0.05 if impostor else 0.1)
        match = error if impostor else not error
        occurred = START + timedelta(seconds=rng.uniform(0, 3600))
        event = {"event_id": f"w-{i}", "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
                 "deployment": deployment, "algorithm": "algo-1", "mode": "verification", "score": 0.5,
                 "threshold": 0.6, "decision": "match" if match else "non_match",
                 "subject": {"sex": rng.choice("FM")}}
        events.append(event)
        p = 1.0 if deployment == "site-u" or match else 0.25
        if rng.random() < p:
            outcomes.append({"event_id": event["event_id"], "verified_at": event["occurred_at"],
                             "truth": "impostor" if impostor else "genuine", "reviewer": "r", "revision": 0,
                             "inclusion_prob": p})
    store = open_store(f"chdb://{tmp_path}/chdb")
    try:
        _seed_events(store, events, outcomes)
        report = build_report(store, resolve_window(None, FROM, TO, 60), CONFIG, plots=False, min_group_size=0)
    finally:
        store.close()
    weights = defaultdict(set)
    by_id = {e["event_id"]: e for e in events}
    for o in outcomes:
        e = by_id[o["event_id"]]
        rate = "fmr" if o["truth"] == "impostor" else "fnmr"
        for group in ("*", e["subject"]["sex"]):
            weights[(e["deployment"], group, rate)].add(1 / o["inclusion_prob"])
    expected = {key for key, w in weights.items() if len(w) > 1}
    assert expected and {k[0] for k in expected} == {"site-w"}
    marked, unmarked = set(), set()
    for block in report.blocks:
        if block[0] == "h3":
            deployment = block[1].split(" / ")[0]
        if block[0] == "table" and block[1][:2] == ["attribute", "group"]:
            for row in block[2]:
                for column, rate in ((4, "fmr"), (7, "fnmr")):
                    (marked if str(row[column]).endswith(WEIGHTED_MARK) else unmarked).add(
                        (deployment, str(row[1]), rate))
    assert marked == expected and len(unmarked) == 6
    text = " ".join(b[1] for b in report.blocks if b[0] == "p")
    assert f"{WEIGHTED_MARK} weighted" in text


def test_the_headline_says_what_is_insufficient(tmp_path, workload):
    """'Too little evidence' is said out loud: with min_comparisons 150 the findings list exactly
    the rates a recount of the stored outcomes finds below 150, and the first page says so."""
    config = CoreConfig(intersections=CONFIG.intersections, min_comparisons=150)
    store = open_store(f"chdb://{tmp_path}/chdb")
    try:
        seed_with_late_outcomes(store, workload)
        report = build_report(store, resolve_window(None, FROM, TO, 60), config, plots=False, min_group_size=0)
        counts = recount_from_labeled_outcomes(store)
    finally:
        store.close()
    expected = {(*key, rate) for key, c in counts.items() for rate, n in (("fmr", c[0]), ("fnmr", c[6])) if n < 150}
    found = {(i["deployment"], i["algorithm"], i["mode"], i["attribute"], i["group"], i["rate"])
             for i in report.document["findings"]["insufficient"] if i["what"] == "rate"}
    assert expected and found == expected
    first = report.blocks[:next(i for i, b in enumerate(report.blocks) if b[0] == "pagebreak")]
    text = " ".join(str(b[1]) for b in first if b[0] in ("p", "li"))
    assert f"Too little evidence for {len(expected)} rates" in text
    # without a policy, an attribute set with a group below 150 has no homogeneity verdict, and the
    # page names it with the groups the recount finds below 150 (review finding: such sets were in no bullet)
    sets = defaultdict(dict)
    for (d, a, m, attribute, group), c in counts.items():
        if attribute != "*":
            for rate, n in (("fmr", c[0]), ("fnmr", c[6])):
                sets[(d, a, m, attribute, rate)][group] = n
    lacking = {key for key, groups in sets.items() if len(groups) > 1 and min(groups.values()) < 150}
    said = {(i["deployment"], i["algorithm"], i["mode"], i["attribute"], i["rate"]): i["reason"]
            for i in report.document["findings"]["insufficient"] if i["what"] == "homogeneity verdict"}
    assert lacking and set(said) == lacking
    for key, reason in said.items():
        few = sorted((n, g) for g, n in sets[key].items() if n < 150)
        named = ", ".join(f"{key[3]}={g} ({int(n)})" for n, g in few[:4])
        assert reason.startswith(f"fewer than 150 comparisons in {named}"), (key, reason)
    assert f"No homogeneity verdict for {len(lacking)} attribute rates" in text


def test_the_findings_keep_suppressed_groups_out(tmp_path, workload):
    """A suppressed group's attribute has no matrix, no highest or lowest group and no numbers on the
    first page; its rows are out of the weighting; the other attributes' findings are unchanged."""
    full = _report_of(tmp_path / "a", workload, plots=False, min_group_size=0).document
    cut = _report_of(tmp_path / "b", workload, plots=False, min_group_size=40)
    doc = cut.document
    hidden = {(g["deployment"], g["algorithm"], g["mode"], g["attribute"]) for g in doc["groups"]
              if g["status"] == SUPPRESSED}
    assert hidden
    scope = lambda row: (row["deployment"], row["algorithm"], row["mode"], row["attribute"])  # noqa: E731
    assert not [c for c in doc["comparisons"] if scope(c) in hidden]
    for mine, theirs in zip(doc["findings"]["disparities"], full["findings"]["disparities"]):
        if scope(mine) in hidden:
            assert mine["verdict"] == SUPPRESSED and mine["highest"] is mine["lowest"] is None
            assert mine["ratio"]["value"] is None and mine["higher"] == []
    kept = [d for d in doc["findings"]["disparities"] if scope(d) not in hidden]
    assert kept == [d for d in full["findings"]["disparities"] if scope(d) not in hidden]
    small = {(*scope(g), g["group"]) for g in doc["groups"] if g["status"] == SUPPRESSED}
    assert not [w for w in doc["weighting"] if (*scope(w), w["group"]) in small]
    first = cut.blocks[:next(i for i, b in enumerate(cut.blocks) if b[0] == "pagebreak")]
    [table] = [b for b in first if b[0] == "table"]
    rows = {(r[0], r[1], r[2]): r for r in table[2]}  # several scopes: scope, attribute, rate label first
    for d in doc["findings"]["disparities"]:
        row = rows[(f"{d['deployment']} / {d['algorithm']} / {d['mode']}", d["attribute"], d["rate_label"])]
        if scope(d) in hidden:
            assert row[3:7] == ["-", "-", SUPPRESSED, SUPPRESSED]


def _first_page_bullets(report) -> str:
    first = report.blocks[:next(i for i, b in enumerate(report.blocks) if b[0] == "pagebreak")]
    return "\n".join(str(b[1]) for b in first if b[0] == "li")


def test_an_undefined_ratio_is_said_to_have_a_lower_bound_only(tmp_path, workload, monkeypatch):
    """Review finding: a max/min ratio without an estimate (its lowest group has no observed error)
    was described as an 'estimate at or below' the policy ratio. The page says only a lower bound is
    known; the recount of the stored outcomes confirms the lowest group's zero errors, and every
    other not-distinguishable set is on the side of the policy ratio its group rows put it."""
    from fairwatch.audit import report_headline

    monkeypatch.setattr(report_headline, "MAX_LISTED", 100)
    store = open_store(f"chdb://{tmp_path}/chdb")
    try:
        seed_with_late_outcomes(store, workload)
        report = build_report(store, resolve_window(None, FROM, TO, 60),
                              CoreConfig(intersections=CONFIG.intersections, policy_ratio=2.0), plots=False,
                              min_group_size=0)
        counts = recount_from_labeled_outcomes(store)
    finally:
        store.close()
    lines = _first_page_bullets(report).splitlines()
    [below] = [line for line in lines if line.startswith("Not distinguishable from the policy ratio 2 with the estimate")]
    [unknown] = [line for line in lines if line.startswith("Not distinguishable from the policy ratio 2, with no estimate")]
    undefined = 0
    for d in report.document["findings"]["disparities"]:
        if d["verdict"] != "not_distinguishable":
            continue
        scope = (d["deployment"], d["algorithm"], d["mode"])
        name = f"{' / '.join(scope)}: {d['attribute']} {d['rate_label']}"
        n, errors = counts[(*scope, d["attribute"], d["lowest"]["group"])][:2] if d["rate"] == "fmr" else \
            counts[(*scope, d["attribute"], d["lowest"]["group"])][6:8]
        top = counts[(*scope, d["attribute"], d["highest"]["group"])]
        top_rate = top[3] / top[2] if d["rate"] == "fmr" else top[9] / top[8]
        if errors == 0:  # no estimate: a lower bound alone, never "at or below"
            undefined += 1
            assert d["ratio"]["value"] is None and d["ratio"]["high"] is None
            assert f"{name} at least {d['ratio']['low']:.3g} (no upper bound)" in unknown and name not in below
        else:
            low = counts[(*scope, d["attribute"], d["lowest"]["group"])]
            estimate = top_rate / (low[3] / low[2] if d["rate"] == "fmr" else low[9] / low[8])
            assert estimate == pytest.approx(d["ratio"]["value"], rel=1e-9)
            if estimate > 2:
                assert any(line.startswith(f"{name}: highest") and "the estimate is above it" in line for line in lines)
            else:
                assert name in below and name not in unknown
    assert undefined >= 2


def test_a_ratio_without_upper_bound_is_drawn_open_ended(tmp_path, monkeypatch):
    """Review finding: the default `fairwatch report` (HTML with plots) crashed when a max/min ratio
    had a value but no upper bound. sex=M's one verified impostor comparison is a false match and
    none of its non-matches is verified, so its FMR is 1 with bounds [0, 1]: the FMR ratio is
    1 / (10/200) = 20 with no upper bound. The report is written; the plot draws that interval as a
    dotted line from its lower bound to the top of the axis with a triangle there, no band, and the
    legend and caption say so."""
    import matplotlib.dates as mdates

    from fairwatch.audit import report_figures

    start = START + timedelta(seconds=30)  # every event in the plots' first step, so it equals the window
    events, outcomes = [], []

    def add(i, sex, impostor, match):
        event = {"event_id": f"o-{i}", "occurred_at": (start + timedelta(seconds=i % 60)).isoformat().replace(
                     "+00:00", "Z"), "deployment": "site-o", "algorithm": "algo-1", "mode": "verification",
                 "score": 0.5, "threshold": 0.6, "decision": "match" if match else "non_match", "subject": {"sex": sex}}
        events.append(event)
        outcomes.append({"event_id": event["event_id"], "verified_at": event["occurred_at"],
                         "truth": "impostor" if impostor else "genuine", "reviewer": "r", "revision": 0,
                         "inclusion_prob": 1.0})

    for i in range(200):
        add(i, "F", True, i < 10)  # FMR 10/200
    for i in range(200, 300):
        add(i, "F", False, i >= 205)  # FNMR 5/100
    add(300, "M", True, True)  # FMR 1/1, no verified non-match
    for i in range(301, 351):
        add(i, "M", False, True)  # FNMR 0/50: matches only
    url = f"chdb://{tmp_path}/chdb"
    store = open_store(url)
    try:
        _seed_events(store, events, outcomes)
    finally:
        store.close()
    out = tmp_path / "report.html"
    made = CliRunner().invoke(app, ["report", "--store", url, "--from", FROM, "--to", TO, "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert out.stat().st_size > 10_000

    seen = []
    monkeypatch.setattr(report_figures, "_png", lambda fig: seen.append(fig) or b"png")
    store = open_store(url)
    try:
        report = build_report(store, resolve_window(None, FROM, TO, 60), CoreConfig(), plots=True)
    finally:
        store.close()
    [row] = [d for d in report.document["differentials"] if (d["attribute"], d["metric"], d["rate"]) ==
             ("sex", "max_min_ratio", "fmr")]
    assert row["value"] == pytest.approx(1 / (10 / 200)) and row["high"] is None and row["low"] == 1.0
    [m] = [g for g in report.document["groups"] if g["group"] == "M"]
    assert (m["fmr"], m["fmr_low"], m["fmr_high"]) == (1.0, 0.0, 1.0)
    [(fig, ax)] = [(f, a) for f in seen for a in f.axes if a.get_title() == "max/min FMR ratio (1 = equal)"]
    [line] = [c for c in ax.collections if c.get_gid() == "open-ended sex"]
    [[(x0, y0), (x1, y1)]] = [seg.tolist() for seg in line.get_segments()]
    assert x0 == x1 and y0 == pytest.approx(row["low"]) and y1 == pytest.approx(ax.get_ylim()[1])
    assert y1 > row["value"]  # the line reaches above the estimate, to the top
    [tip] = [t for t in ax.lines if t.get_gid() == "open-ended top sex"]
    assert tip.get_marker() == "^" and tip.get_ydata()[0] == pytest.approx(y1)
    assert mdates.date2num(tip.get_xdata()[0]) == pytest.approx(x0)
    assert not [c for c in ax.collections if c.get_gid() == "band sex"]  # no band with an invented top
    assert "no upper bound" in [t.get_text() for t in ax.get_legend().get_texts()]
    [caption] = [b[2] for b in report.blocks if b[0] == "img" and b[2].startswith("Differentials")]
    assert "no upper bound" in caption and "open-ended" in caption
