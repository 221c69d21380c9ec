"""Use records (issue 29): what `fairwatch replay --uses` stores and the figures of each use, against
loops over the raw JSON lines: the uses (the end record replacing the start record), the events of
each use (those naming it, and those naming none between its start and end), its acted-on
identifications and how many two distinct verifiers confirmed, and the acquisition attempts that name it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.uses import read_uses, use_figures
from fairwatch.stream.replay import replay
from fairwatch.testing.oracles import final_verdicts

SCENARIO = {
    "start": "2026-11-25T06:00:00Z", "duration_hours": 3, "events": 3000,
    "attributes": {"race": {"White": 0.6, "Black": 0.4}},
    "algorithms": {"search-v3": {"fmr": 1e-3, "fnmr": 0.02, "fpir": 0.01, "fnir": 0.03}},
    "deployments": [{"name": "watch", "algorithm": "search-v3", "threshold": 3.0, "identification_share": 0.7,
                     "impostor_share": 0.5, "list_length": 5, "gallery_size": 10000}],
    "verification": {"match_prob": 1.0, "non_match_prob": 0.3, "action_prob": 0.3, "single_verifier_prob": 0.2,
                     "delay_hours": {"median": 0.2, "sigma": 0.3}},
    "acquisition": {"fta": 0.05},
    "uses": {"hours": 0.75, "reference_database": "watchlist-eu", "reference_version": "v7",
             "operator_role": "duty-officer"},
}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    paths = write_jsonl(simulate(parse_scenario(SCENARIO), seed=8), tmp_path_factory.mktemp("uses"))
    lines = paths["uses"].read_bytes().splitlines()
    conflicting = json.loads(lines[0])
    conflicting["reference_database"] = "another-list"
    bad = b'{"use_id": "u-bad", "deployment": "watch", "started_at": "2026-11-25T07:00:00Z"}'
    paths["uses"].write_bytes(b"\n".join([*lines, json.dumps(conflicting).encode(), bad]) + b"\n")
    # a few events of the first use's period name the second use: they are the second's
    second = json.loads(lines[1])["use_id"]
    events = paths["events"].read_bytes().splitlines()
    for k in (5, 9, 40):
        events[k] = json.dumps({**json.loads(events[k]), "use_id": second}, separators=(",", ":")).encode()
    paths["events"].write_bytes(b"\n".join(events) + b"\n")
    return {"paths": paths, "lines": lines, "named": second}


def test_uses_and_their_figures_equal_the_raw_lines(migrated_store, files):
    paths = files["paths"]
    report = replay(migrated_store, paths["events"], paths["outcomes"], CoreConfig(), acquisitions=paths["acquisitions"],
                    uses=paths["uses"])
    refused = sorted((line, reason.split(" ")[0]) for f, line, reason in report.rejected if f == str(paths["uses"]))
    assert refused == [(len(files["lines"]) + 1, "conflicting_duplicate"), (len(files["lines"]) + 2, "missing_field")]
    start, end = datetime(2026, 11, 25, 5, tzinfo=timezone.utc), datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    uses = read_uses(migrated_store, start, end)
    ended = [json.loads(line) for line in files["lines"] if b"ended_at" in line]
    assert len(ended) == 4  # three hours in uses of 45 minutes
    assert [(u["use_id"], u["started_at"], u["ended_at"], u["reference_database"], u["reference_version"],
             u["operator_role"]) for u in uses] == [
        (r["use_id"], r["started_at"], r["ended_at"], "watchlist-eu", "v7", "duty-officer") for r in ended]
    # a window that cuts the second use keeps it whole; one before every use has none
    assert [u["use_id"] for u in read_uses(migrated_store, _time(ended[1]["started_at"]) + timedelta(minutes=5),
                                           _time(ended[1]["ended_at"]))] == [ended[1]["use_id"]]
    assert read_uses(migrated_store, start, start + timedelta(minutes=30)) == []

    events = [json.loads(line) for line in paths["events"].read_bytes().splitlines()]
    verdicts = final_verdicts(paths["outcomes"].read_bytes().splitlines())
    attempts = [json.loads(line) for line in paths["acquisitions"].read_bytes().splitlines()]
    singles = 0
    for use in uses:
        lo, hi = _time(use["started_at"]), _time(use["ended_at"])
        inside = [e for e in events if e.get("use_id") == use["use_id"]
                  or ("use_id" not in e and lo <= _time(e["occurred_at"]).replace(microsecond=0) < hi)]
        figures = use_figures(migrated_store, use, end)
        modes = {}
        for e in inside:
            modes[e["mode"]] = modes.get(e["mode"], 0) + 1
        assert figures["events"] == modes
        acted = [verdicts[e["event_id"]] for e in inside if e["mode"] == "identification"
                 and verdicts.get(e["event_id"], {}).get("action_taken")]
        two = figures["two_person"]
        assert (two["acted"], two["confirmed"]) == (len(acted), sum(len(set(v["verifiers"])) >= 2 for v in acted))
        singles += two["acted"] - two["confirmed"]
        named = [a for a in attempts if a.get("use_id") == use["use_id"]]
        assert (figures["acquisition_attempts"], figures["acquisition_failures"]) == (
            len(named), sum(a["outcome"] != "acquired" for a in named))
        assert named
    assert singles > 0
    assert sum(e.get("use_id") == files["named"] for e in events) == 3
