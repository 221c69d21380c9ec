"""Reports bound to evidence, on chDB and on the ClickHouse server: a report names the signed
checkpoint of each deployment's evidence log, and ``fairwatch audit verify-report`` verifies the
logs up to those checkpoints and recomputes the report's numbers from the rows sealed by then.

The oracle for "equal" is the report itself, made by the CLI from the stored (derived) tables; the
recomputation reads the sealed evidence rows instead. Each failing case changes one known thing
(a verdict's truth, a derived table, a number of the JSON, the checkpoint) and expects it named.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fairwatch.audit.evidence_log import seal
from fairwatch.audit.report import build_report
from fairwatch.audit.report_evidence import NOT_SEALED
from fairwatch.audit.report_render import to_pdf
from fairwatch.audit.report_verify import compare
from fairwatch.audit.window import resolve_window
from fairwatch.cli import app
from fairwatch.contracts.keys import generate_key
from fairwatch.contracts.records import format_timestamp
from fairwatch.contracts.signed_note import open_note
from fairwatch.core.config import CoreConfig
from fairwatch.sim.scenario import load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.sink import ClickHouseSink
from fairwatch.stream.replay import REPLAY_PARTITION, replay
from fairwatch.testing.stack import INSERT_EVENT, INSERT_OUTCOME
from typer.testing import CliRunner

BASE = "test.fairwatch"
KEY = generate_key("operator")
FROM, TO = "2026-11-25T00:00:00Z", "2026-11-27T00:00:00Z"
OK = "ok: the report's numbers are those of the signed evidence"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sim")
    paths = write_jsonl(simulate(load_scenario("default"), seed=5, events=1500), out)
    # corrections that arrive later: a higher revision with the other truth, for 40 events verdicted once
    outcomes = [json.loads(line) for line in paths["outcomes"].read_text().splitlines()]
    once = Counter(o["event_id"] for o in outcomes)
    corrections = []
    for outcome in [o for o in outcomes if once[o["event_id"]] == 1][:40]:
        later = datetime.fromisoformat(outcome["verified_at"].replace("Z", "+00:00")) + timedelta(hours=2)
        corrections.append(json.dumps({**outcome, "revision": outcome["revision"] + 1, "verified_at":
                                       format_timestamp(later), "truth": {"genuine": "impostor",
                                                                          "impostor": "genuine"}[outcome["truth"]]}))
    paths["corrections"] = out / "corrections.jsonl"
    paths["corrections"].write_text("\n".join(corrections) + "\n")
    return paths


@pytest.fixture
def sealed(migrated_store, files, tmp_path):
    replay(migrated_store, files["events"], files["outcomes"])
    outside = tmp_path / "checkpoints"
    result = seal(migrated_store, KEY, base=BASE, outside=outside)
    return migrated_store, outside, result


def _report(store, path: Path, fmt: str = "json") -> Path:
    result = CliRunner().invoke(app, ["report", "--store", store.url, "--from", FROM, "--to", TO, "--format", fmt,
                                      "--origin", BASE, "--out", str(path), "--force"])
    assert result.exit_code == 0, result.output
    return path


def _verify_report(store, path: Path, *extra: str):
    return CliRunner().invoke(app, ["audit", "verify-report", str(path), "--store", store.url,
                                    "--key", KEY.verifier.text(), *extra])


def _late_corrections(store, files) -> None:
    """The corrections, through the worker's batch step (their events again, so the join pairs them)."""
    replay(store, files["events"], files["corrections"])


def _flip_derived_tables(store) -> str:
    """The writer's attack on the derived tables: one labelled outcome's truth flipped by a
    superseding insert, and the per-group counts of its bucket recomputed from it, so that
    labeled_outcomes and group_counts agree with each other. Returns the event id."""
    event_id, bucket = store.query_values(
        "SELECT event_id, toUInt32(bucket) FROM labeled_outcomes FINAL WHERE deployment = 'gate-a'"
        " AND truth = 'impostor' ORDER BY event_id LIMIT 1")[0]
    store.execute(
        "INSERT INTO labeled_outcomes SELECT event_id, occurred_at, occurred_at_us, bucket, deployment, algorithm, mode,"
        " subject_keys, subject_values, decision, 'genuine', revision, weight, kafka_partition"
        " FROM labeled_outcomes FINAL WHERE event_id = %(e)s", {"e": event_id})
    assert store.query_values("SELECT toString(truth) FROM labeled_outcomes FINAL WHERE event_id = %(e)s",
                              {"e": event_id}) == [["genuine"]]
    ClickHouseSink(store, CoreConfig()).recompute({REPLAY_PARTITION: {int(bucket)}})
    return event_id


def _flip_verdict(store, event_id: str) -> int:
    """A superseding verified_outcomes row of the event's counted revision, with the other truth."""
    (revision,), = store.query_values("SELECT max(revision) FROM verified_outcomes FINAL WHERE event_id = %(e)s",
                                      {"e": event_id})
    store.execute(
        f"{INSERT_OUTCOME} SELECT event_id, verified_at, if(truth = 'genuine', 'impostor', 'genuine'),"
        " reviewer, revision, inclusion_prob, ingested_at + 1 FROM verified_outcomes FINAL"
        " WHERE event_id = %(e)s AND revision = %(r)s", {"e": event_id, "r": revision})
    return int(revision)


def test_a_report_made_after_sealing_names_its_checkpoints_and_verifies(sealed, tmp_path):
    store, outside, sealing = sealed
    document = json.loads(_report(store, tmp_path / "report.json").read_text())
    evidence = document["evidence"]
    assert evidence["base_origin"] == BASE
    assert evidence["labeled_outcomes_not_sealed"] == evidence["match_events_not_sealed"] == 0
    deployments = sorted({g["deployment"] for g in document["groups"]})
    assert [log["deployment"] for log in evidence["logs"]] == deployments and len(deployments) == 3
    for log in evidence["logs"]:
        checkpoint = sealing.checkpoints[log["origin"]]  # the newest checkpoint of the log, as signed
        assert log["sealed"] is True
        assert (log["tree_size"], log["root_hash"]) == (checkpoint.size, base64.b64encode(checkpoint.root_hash).decode())
        assert open_note(log["note"], [KEY.verifier]).text == checkpoint.text()
    assert "verify-report" in evidence["statement"] and KEY.text() not in json.dumps(document)
    # the HTML and the PDF say it in the provenance part: one line per deployment
    html = _report(store, tmp_path / "report.html", "html").read_text()
    provenance = html[html.index("1. Scope and data provenance"):html.index("2. Error rates by group")]
    for log in evidence["logs"]:
        assert f"{log['origin']}: size {log['tree_size']}, root {log['root_hash']}" in provenance
    report = build_report(store, resolve_window(None, FROM, TO, 60), CoreConfig(), evidence_origin=BASE, plots=False)
    import pypdfium2

    pdf = pypdfium2.PdfDocument(to_pdf(report))
    text = " ".join(page.get_textpage().get_text_range() for page in pdf).replace("\r\n", " ").replace("\n", " ")
    pdf.close()
    for log in evidence["logs"]:
        assert f"size {log['tree_size']}, root {log['root_hash']}" in text
    # untouched: the logs verify up to the checkpoints and every number is recomputed equal
    checked = _verify_report(store, tmp_path / "report.json", "--checkpoints", str(outside))
    assert checked.exit_code == 0, checked.output
    assert OK in checked.output and "DIFFERS" not in checked.output
    for log in evidence["logs"]:
        assert f"{log['origin']}: checkpoint size {log['tree_size']}, signed by {KEY.key_id}" in checked.output
    as_json = json.loads(_verify_report(store, tmp_path / "report.json", "--json").stdout)
    assert as_json["ok"] and as_json["differences"] == [] and as_json["numbers_compared"] > 1000


def test_outcomes_stored_after_the_report_change_nothing(sealed, files, tmp_path):
    store, outside, _ = sealed
    path = _report(store, tmp_path / "report.json")
    _late_corrections(store, files)
    later = seal(store, KEY, base=BASE, outside=outside)
    assert later.leaves == 40  # the corrections, sealed after the report's checkpoints
    now = json.loads(_report(store, tmp_path / "now.json").read_text())
    assert now["groups"] != json.loads(path.read_text())["groups"]  # the store's numbers moved
    checked = _verify_report(store, path)  # the report, as of its checkpoints, still holds
    assert checked.exit_code == 0, checked.output
    assert OK in checked.output
    # and the new report is bound to the new checkpoints
    assert _verify_report(store, tmp_path / "now.json").exit_code == 0


def test_rows_stored_after_the_last_seal_are_said_and_are_not_bound(sealed, files, tmp_path):
    store, _, _ = sealed
    _late_corrections(store, files)  # stored, not sealed yet, and a new event
    store.execute(
        f"{INSERT_EVENT} SELECT concat(event_id, '-new'), occurred_at, occurred_at_us, deployment, algorithm,"
        " mode, score, threshold, decision, subject_keys, subject_values, reference_keys, reference_values, context,"
        " now(), cluster_id FROM match_events FINAL WHERE deployment = 'gate-b' ORDER BY event_id LIMIT 1")
    path = _report(store, tmp_path / "report.json")
    evidence = json.loads(path.read_text())["evidence"]
    assert evidence["labeled_outcomes_not_sealed"] == 40 and evidence["match_events_not_sealed"] == 1
    assert "not bound to the signed evidence" in evidence["statement"]
    checked = _verify_report(store, path)
    assert checked.exit_code == 1, checked.output
    assert "DIFFERS groups[" in checked.output and "NOT VERIFIED" in checked.output
    assert "DIFFERS provenance.events: report 1501, recomputed 1500" in checked.output


def test_a_changed_truth_fails_the_report(sealed, tmp_path):
    store, _, _ = sealed
    path = _report(store, tmp_path / "report.json")
    event_id = _flip_derived_tables(store)
    revision = _flip_verdict(store, event_id)
    checked = _verify_report(store, path)
    assert checked.exit_code == 1, checked.output
    assert f"EDITED {BASE}/deployment/gate-a" in checked.output
    assert f"verified_outcomes (event_id={event_id}, revision={revision})" in checked.output
    # the recomputation reads the edited verdict, so the numbers differ from the report's too
    assert "DIFFERS groups[" in checked.output and "NOT VERIFIED" in checked.output


def test_derived_tables_changed_before_the_report_are_caught(sealed, tmp_path):
    """The evidence is intact, so `audit verify` passes; the report read the edited derived tables,
    and its numbers are not those of the evidence."""
    store, _, _ = sealed
    honest = json.loads(_report(store, tmp_path / "honest.json").read_text())
    _flip_derived_tables(store)
    path = _report(store, tmp_path / "report.json")
    tampered = json.loads(path.read_text())
    assert tampered["groups"] != honest["groups"]
    checked = _verify_report(store, path)
    assert checked.exit_code == 1, checked.output
    assert "rows checked" in checked.output and ": ok" in checked.output  # the evidence itself verifies
    differs = [line for line in checked.output.splitlines() if line.startswith("DIFFERS")]
    assert differs and all("gate-a" in line for line in differs if line.startswith("DIFFERS groups["))
    # what differs is what the honest report says
    result = json.loads(_verify_report(store, path, "--json").stdout)
    first = next(d for d in result["differences"] if d["path"].startswith("groups[") and d["path"].endswith(".impostor"))
    index = int(first["path"][len("groups["):first["path"].index("]")])
    row = tampered["groups"][index]
    again = next(g for g in honest["groups"] if all(g[k] == row[k] for k in ("deployment", "algorithm", "mode",
                                                                            "attribute", "group")))
    assert (first["report"], first["recomputed"]) == (row["impostor"], again["impostor"])


def test_an_edited_report_fails(sealed, tmp_path):
    store, _, _ = sealed
    document = json.loads(_report(store, tmp_path / "report.json").read_text())
    index, row = next((i, g) for i, g in enumerate(document["groups"]) if g["fmr"])
    edited = json.loads(json.dumps(document))
    edited["groups"][index]["fmr"] = row["fmr"] * 0.5
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    checked = _verify_report(store, tmp_path / "edited.json")
    assert checked.exit_code == 1, checked.output
    assert f"DIFFERS groups[{index}].fmr" in checked.output
    assert f"report {row['fmr'] * 0.5!r}, recomputed {row['fmr']!r}" in checked.output
    # a checkpoint of the report that is not what its note signs, and a note that is not signed
    logs = document["evidence"]["logs"]
    for change in ({"root_hash": logs[1]["root_hash"]}, {"note": logs[0]["note"].replace(logs[0]["root_hash"],
                                                                                         logs[1]["root_hash"])}):
        edited = json.loads(json.dumps(document))
        edited["evidence"]["logs"][0].update(change)
        (tmp_path / "edited.json").write_text(json.dumps(edited))
        checked = _verify_report(store, tmp_path / "edited.json")
        assert checked.exit_code == 1, checked.output
        assert logs[0]["origin"] in checked.output and "NOT VERIFIED" in checked.output


def test_a_report_of_an_unsealed_store_says_not_sealed(migrated_store, files, tmp_path):
    replay(migrated_store, files["events"], files["outcomes"])
    path = _report(migrated_store, tmp_path / "report.json")
    evidence = json.loads(path.read_text())["evidence"]
    assert evidence["logs"] and all(log["sealed"] is False and log["statement"].startswith(NOT_SEALED)
                                    for log in evidence["logs"])
    assert "not bound to signed evidence" in evidence["statement"]
    html = _report(migrated_store, tmp_path / "report.html", "html").read_text()
    assert html.count(NOT_SEALED) == len(evidence["logs"])
    checked = _verify_report(migrated_store, path)
    assert checked.exit_code == 1, checked.output
    assert NOT_SEALED in checked.output and "NOT VERIFIED" in checked.output


def test_compare_matches_rows_by_name_and_numbers_within_a_relative_1e_9():
    report = {"groups": [{"deployment": "d", "group": "A", "fmr": 0.1, "status": "ok"},
                         {"deployment": "d", "group": "B", "fmr": 0.2, "status": "ok"}]}
    same = {"groups": [{"deployment": "d", "group": "B", "fmr": 0.2 * (1 + 1e-12), "status": "ok"},
                       {"deployment": "d", "group": "A", "fmr": 0.1, "status": "ok"}]}
    assert compare(report, same) == (2, [])
    other = {"groups": [{"deployment": "d", "group": "A", "fmr": 0.1 * (1 + 1e-6), "status": "above_target"}]}
    count, differences = compare(report, other)
    assert count == 1
    assert [(d.path, d.row) for d in differences] == [
        ("groups[0].fmr", "d / A"), ("groups[0].status", "d / A"), ("groups[1]", "d / B")]
