"""Failure to acquire per group (issue 29): what `fairwatch replay --acquisitions` stores and
`fairwatch audit acquisition` reports, against loops over the raw JSON lines.

Oracles: the counts per (attribute, group) by a loop over the simulated lines (the last of two
identical deliveries counted once, refused lines not at all); the intervals and design effects by
hand from the encounters' clusters (:func:`fairwatch.testing.oracles.clustered_interval`, Kish and
Korn-Graubard with scipy's beta and t); the max / min ratio from the per-group rates.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import pytest
from fairwatch.core.config import CoreConfig
from fairwatch.core.layout import OVERALL
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.testing.cli_runs import invoke, one_error
from fairwatch.testing.oracles import attempts_by_group, cluster_roh, clustered_interval

SCENARIO = {
    "start": "2026-11-25T06:00:00Z", "duration_hours": 4, "events": 3000,
    "attributes": {"sex": {"F": 0.5, "M": 0.5}, "race": {"White": 0.6, "Black": 0.4}},
    "algorithms": {"algo-1": {"fmr": 0.01, "fnmr": 0.05}},
    "deployments": [{"name": "gate", "algorithm": "algo-1", "threshold": 3.0}],
    "acquisition": {"fta": {"base": 0.04, "factors": {"race": {"Black": 2.5}}}, "encounter_correlation": 0.3,
                    "low_quality_share": 0.4, "labelled_share": 0.8},
}
INTERSECTIONS = (("sex", "race"),)
BAD = [b'{"attempt_id": "x1", "occurred_at": "2026-11-25T07:00:00Z", "deployment": "gate", "algorithm": "algo-1",'
       b' "outcome": "blurry", "subject": {"sex": "F", "race": "Black"}}',
       b'{"attempt_id": "x2", "occurred_at": "2026-11-25T07:00:00Z", "deployment": "gate", "algorithm": "algo-1",'
       b' "outcome": "no_face", "face_crop": "iVBORw0KGgo="}',
       b"not json"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("acquisitions")
    paths = write_jsonl(simulate(parse_scenario(SCENARIO), seed=11), out)
    lines = paths["acquisitions"].read_bytes().splitlines()
    # a delivery twice, a conflicting one (same id, another outcome), and three bad lines
    twice = lines[5]
    changed = json.loads(lines[7])
    changed["outcome"] = "acquired" if changed["outcome"] != "acquired" else "no_face"
    fed = [*lines[:20], twice, json.dumps(changed).encode(), *BAD, *lines[20:]]
    paths["acquisitions"].write_bytes(b"\n".join(fed) + b"\n")
    return {"paths": paths, "lines": lines, "fed": fed, "truth": json.loads(paths["truth"].read_text())}


def test_failure_to_acquire_per_group_equals_the_raw_lines(migrated_store, files):
    from fairwatch.core.acquisition import acquisition_estimates
    from fairwatch.store.acquisitions import read_acquisition_counts, read_acquisition_moments
    from fairwatch.stream.replay import replay

    paths = files["paths"]
    report = replay(migrated_store, paths["events"], paths["outcomes"], CoreConfig(intersections=INTERSECTIONS),
                    acquisitions=paths["acquisitions"])
    refused = {line: reason for _, line, reason in report.rejected}
    # lines 22 (the conflicting delivery), 23-25 (the bad ones) refused with their reasons, nothing else
    assert sorted(refused) == [22, 23, 24, 25], refused
    assert refused[22].startswith("conflicting_duplicate (attempt_id)")
    assert refused[23].startswith("unknown_enum_value (outcome)") and refused[24].startswith("unknown_field (face_crop)")
    assert refused[25].startswith("invalid_json")
    dead = migrated_store.query("SELECT reason_code, toString(kafka_offset) FROM dead_letters FINAL ORDER BY kafka_offset")
    assert dead == [("conflicting_duplicate", "22"), ("unknown_enum_value", "23"), ("unknown_field", "24"),
                    ("invalid_json", "25")]

    truth = files["truth"]
    # the first retries come before the first event
    start, end = datetime_of(truth["start"]) - timedelta(hours=1), datetime_of(truth["end"])
    counts = read_acquisition_counts(migrated_store, start, end, INTERSECTIONS)
    moments = read_acquisition_moments(migrated_store, start, end, INTERSECTIONS)
    raw = attempts_by_group(files["lines"], INTERSECTIONS)
    assert {k[2:] for k in counts} == set(raw)
    for key, got in counts.items():
        rows = raw[key[2:]]
        assert got.tolist() == [len(rows), sum(r[1] for r in rows), sum(r[2] == "no_face" for r in rows),
                                sum(r[2] == "low_quality" for r in rows)]
    groups, differentials = acquisition_estimates(counts, CoreConfig(intersections=INTERSECTIONS), moments)
    overall_roh = cluster_roh([(c, y, 1.0) for c, y, _ in raw[OVERALL, OVERALL]])
    widened = 0
    for g in groups:
        deff, p, low, high = clustered_interval([(c, y, 1.0) for c, y, _ in raw[g.key[2:]]], overall_roh)
        assert math.isclose(g.fta.rate, p, rel_tol=1e-12)
        assert math.isclose(g.fta.design_effect, deff, rel_tol=1e-9)
        assert math.isclose(g.fta.low, low, rel_tol=1e-7, abs_tol=1e-12)
        assert math.isclose(g.fta.high, high, rel_tol=1e-7, abs_tol=1e-12)
        widened += deff > 1.2
    assert widened >= len(groups) / 2  # retries of one encounter fail together: the intervals widen
    race = next(d for d in differentials if d.scope.attribute == "race" and d.metric == "max_min_ratio")
    rates = {g: sum(r[1] for r in raw["race", g]) / len(raw["race", g]) for g in ("White", "Black")}
    assert (race.max_group, race.min_group) == ("Black", "White")
    assert math.isclose(race.value, rates["Black"] / rates["White"], rel_tol=1e-12)
    assert race.low <= race.value <= race.high


def datetime_of(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_audit_acquisition_reports_the_groups_and_says_when_evidence_is_too_little(files, tmp_path):
    paths = files["paths"]
    url = f"chdb://{tmp_path / 'store'}"
    replayed = invoke("replay", str(paths["events"]), str(paths["outcomes"]), "--acquisitions",
                      str(paths["acquisitions"]), "--store", url, "--json")
    assert replayed.exit_code == 0, replayed.output
    summary = json.loads(replayed.stdout)
    assert summary["acquisition_lines"] == len(files["fed"])
    assert len(summary["rejected"]) == 4
    window = ["--from", "2026-11-25T05:00:00Z", "--to", "2026-11-25T11:00:00Z", "--store", url]
    done = invoke("audit", "acquisition", *window, "--json")
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    raw = attempts_by_group(files["lines"], INTERSECTIONS)
    by_group = {(g["attribute"], g["group"]): g for g in document["groups"]}
    assert set(by_group) == {k for k in raw if "&" not in k[0]}  # no intersections asked
    for key, g in by_group.items():
        assert (g["attempts"], g["failures"]) == (len(raw[key]), sum(r[1] for r in raw[key]))
    text = invoke("audit", "acquisition", *window, "--intersections", "sex&race")
    assert text.exit_code == 0, text.output
    assert "FTA max_min_ratio" in text.stdout and "highest Black, lowest White" in text.stdout
    # a window with no attempt: said, exit 1; a bad confidence: one error line, exit 2
    empty = invoke("audit", "acquisition", "--from", "2025-01-01T00:00:00Z", "--to", "2025-01-02T00:00:00Z",
                   "--store", url)
    one_error(empty, 1, "no acquisition attempts", "nothing to judge")
    one_error(invoke("audit", "acquisition", *window, "--confidence", "1.5"), 2, "--confidence")
    few = invoke("audit", "acquisition", "--from", "2026-11-25T06:00:00Z", "--to", "2026-11-25T06:02:00Z",
                 "--store", url)
    assert few.exit_code == 0 and "too little evidence" in few.stdout
