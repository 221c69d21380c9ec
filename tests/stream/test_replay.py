"""`fairwatch replay`: JSONL files through the worker's batch step into the embedded store."""

from __future__ import annotations

import base64
import json

from fairwatch.cli import app
from fairwatch.store.clickhouse import open_store
from fairwatch.testing.live import assert_counts_equal, stored_counts
from fairwatch.testing.workload import make_workload, oracle_counts
from typer.testing import CliRunner


def test_replay_counts_equal_the_oracle_and_bad_lines_are_reported(tmp_path):
    workload = make_workload(5_000, seed=41, malformed_share=0)
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    with events.open("wb") as e, outcomes.open("wb") as o:
        for kind, _, value in workload.messages:
            (e if kind == "match-events" else o).write(value + b"\n")
        e.write(b'{"event_id": "broken"\n')  # the last line of the events file
        o.write(b"\n" + b'{"event_id": "x", "truth": "maybe"}\n')
    bad_event_line = sum(1 for _ in events.open("rb"))
    store = f"chdb://{tmp_path}/store"
    result = CliRunner().invoke(app, ["replay", str(events), str(outcomes), "--store", store,
                                      "--intersections", "sex&race", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(r["file"].rsplit("/", 1)[1], r["line"]) for r in summary["rejected"]] == [
        ("events.jsonl", bad_event_line), ("outcomes.jsonl", sum(1 for _ in outcomes.open("rb")))]
    assert "invalid_json" in summary["rejected"][0]["reason"]
    assert_counts_equal(stored_counts(open_store(store)), oracle_counts(workload))


def test_rejections_are_capped_and_a_replay_of_nothing_valid_fails(tmp_path):
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    events.write_bytes(b"".join(b'{"event_id": "e%d"\n' % i for i in range(30)))  # 30 broken lines
    outcomes.write_bytes(b'{"event_id": "x", "truth": "maybe"}\n')
    runner = CliRunner()
    result = runner.invoke(app, ["replay", str(events), str(outcomes), "--store", f"chdb://{tmp_path}/s",
                                 "--max-errors", "5"])
    assert result.exit_code == 2, result.output
    diagnostics = [line for line in result.output.splitlines() if line.startswith(("match-events:", str(events)))]
    assert len(diagnostics) == 5, result.output
    assert "... and 26 more rejected lines" in result.output
    assert result.output.count("error:") == 1 and "every one of the 31 lines was rejected" in result.output
    # the JSON summary still lists every rejected line
    full = runner.invoke(app, ["replay", str(events), str(outcomes), "--store", f"chdb://{tmp_path}/t", "--json"])
    assert full.exit_code == 2 and len(json.loads(full.stdout.strip().splitlines()[-1])["rejected"]) == 31


def test_lines_replayed_in_envelopes_are_refused_by_their_own_line(tmp_path):
    """Replay hands runs of valid lines to the processor as batch envelopes: a line the decoder
    refuses, and a record the join refuses inside an envelope (a conflicting duplicate), are
    still reported and stored with their own line number and bytes."""
    workload = make_workload(3_000, seed=43, malformed_share=0)
    event_lines = [value for kind, _, value in workload.messages if kind == "match-events"]
    outcome_lines = [value for kind, _, value in workload.messages if kind != "match-events"]
    first = json.loads(event_lines[10])
    conflicting = json.dumps({**first, "score": first["score"] / 2 + 0.001}).encode()
    event_lines.insert(1500, conflicting)  # line 1501, amid valid lines: an envelope holds it
    event_lines.insert(2500, b'{"event_id": "broken"')  # line 2501: its run goes line by line
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    events.write_bytes(b"\n".join(event_lines) + b"\n")
    outcomes.write_bytes(b"\n".join(outcome_lines) + b"\n")
    store_url = f"chdb://{tmp_path}/store"
    result = CliRunner().invoke(app, ["replay", str(events), str(outcomes), "--store", store_url,
                                      "--intersections", "sex&race", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rejected = sorted(summary["rejected"], key=lambda r: r["line"])
    assert [r["line"] for r in rejected] == [1501, 2501]
    assert "conflicting_duplicate" in rejected[0]["reason"] and "invalid_json" in rejected[1]["reason"]
    store = open_store(store_url)
    letters = store.query("SELECT kafka_offset, record_index, value_b64, reason_code FROM dead_letters"
                          " ORDER BY kafka_offset")
    assert [(offset, index, base64.b64decode(value), code) for offset, index, value, code in letters] == [
        (1501, -1, conflicting, "conflicting_duplicate"), (2501, -1, b'{"event_id": "broken"', "invalid_json")]
    try:
        assert_counts_equal(stored_counts(store), oracle_counts(workload))
    finally:
        store.close()
