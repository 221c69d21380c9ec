"""The post-market monitoring report (`fairwatch report --kind monitoring`, issue 29 item 4), on a
replayed simulation with identification searches (some acted on by one verifier only), acquisition
attempts (one group failing more) and an algorithm rollout. Oracles, independent of the report:
loops over the raw JSON lines for the acquisition counts, the two-person exceptions, the
(algorithm, threshold) segments and the events per mode; the section list against the obligations
docs/regulation.md names; the HTML's sections and statements, and that the PDF is one."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.testing.cli_runs import invoke, one_error
from fairwatch.testing.oracles import attempts_by_group, final_verdicts

SCENARIO = {
    "start": "2026-11-25T06:00:00Z", "duration_hours": 6, "events": 12000,
    "attributes": {"sex": {"F": 0.5, "M": 0.5}, "race": {"White": 0.6, "Black": 0.4}},
    "algorithms": {"search-v3": {"fmr": 1e-3, "fnmr": 0.02, "fpir": 0.01, "fnir": 0.03},
                   "search-v4": {"fmr": 1e-3, "fnmr": 0.02, "fpir": 0.005, "fnir": 0.03}},
    "deployments": [{"name": "watch", "algorithm": "search-v3", "threshold": 3.0, "identification_share": 1.0,
                     "impostor_share": 0.5, "list_length": 5, "gallery_size": 10000}],
    "verification": {"match_prob": 1.0, "non_match_prob": 0.3, "reviewers": 6, "action_prob": 0.3,
                     "single_verifier_prob": 0.1, "delay_hours": {"median": 0.2, "sigma": 0.3}},
    "drifts": [{"name": "v4", "kind": "rollout", "at": "2026-11-25T09:00:00Z", "from": "search-v3",
                "to": "search-v4"}],
    "acquisition": {"fta": {"base": 0.02, "factors": {"race": {"Black": 3.0}}}, "encounter_correlation": 0.1},
    "uses": {"hours": 2, "reference_database": "watchlist-eu", "operator_role": "duty-officer"},
}
WINDOW = ["--from", "2026-11-25T05:00:00Z", "--to", "2026-11-25T13:00:00Z"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    out = tmp_path_factory.mktemp("monitoring")
    paths = write_jsonl(simulate(parse_scenario(SCENARIO), seed=3), out / "sim")
    url = f"chdb://{out / 'store'}"
    done = invoke("replay", paths["events"], paths["outcomes"], "--acquisitions", paths["acquisitions"],
                  "--uses", paths["uses"], "--store", url, "--json")
    assert done.exit_code == 0, done.output
    report = invoke("report", "--kind", "monitoring", *WINDOW, "--store", url, "--format", "json")
    assert report.exit_code == 0, report.output
    return {"paths": paths, "url": url, "out": out, "document": json.loads(report.stdout)}


def test_a_section_per_obligation_and_the_numbers_of_the_raw_lines(replayed):
    doc, paths = replayed["document"], replayed["paths"]
    assert [s["key"] for s in doc["sections"]] == ["system", "period", "data", "performance", "acquisition",
                                                   "disparities", "incidents", "two_person", "changes", "evidence"]
    events = [json.loads(line) for line in paths["events"].read_bytes().splitlines()]
    # system: the (algorithm, threshold) segments, with their events and first / last times
    segments = defaultdict(list)
    for e in events:
        segments[e["deployment"], e["algorithm"], e["mode"], e["threshold"]].append(e["occurred_at"])
    assert {(s["deployment"], s["algorithm"], s["mode"], s["threshold"]): s["events"]
            for s in doc["system"]["segments"]} == {k: len(v) for k, v in segments.items()}
    # failure to acquire per group equals a loop over the attempt lines; the higher group is named
    # (the attempts carry their event's algorithm: rows per algorithm, summed here)
    raw = attempts_by_group(paths["acquisitions"].read_bytes().splitlines())
    got = defaultdict(lambda: [0, 0])
    for g in doc["acquisition"]["groups"]:
        got[g["attribute"], g["group"]][0] += g["attempts"]
        got[g["attribute"], g["group"]][1] += g["failures"]
    assert dict(got) == {k: [len(v), sum(r[1] for r in v)] for k, v in raw.items()}
    assert {g["algorithm"] for g in doc["acquisition"]["groups"]} == {"search-v3", "search-v4"}
    assert {(h["attribute"], h["group"]) for h in doc["acquisition"]["highest"] if h["distinguishable"]} == {
        ("race", "Black")}
    # two-person: the exceptions are the acted-on searches whose final verdict names fewer than two verifiers
    verdicts = final_verdicts(paths["outcomes"].read_bytes().splitlines())
    expected = sorted(i for i, v in verdicts.items() if v.get("action_taken") and len(set(v.get("verifiers", []))) < 2)
    [watch] = doc["two_person"]["deployments"]
    assert sorted(x["event_id"] for x in watch["exceptions"]) == expected and expected
    assert watch["acted"] == sum(1 for v in verdicts.values() if v.get("action_taken"))
    assert all("verifiers" in x and isinstance(x["verifiers"], int) for x in watch["exceptions"])  # counts, not ids
    # changes: the rollout, with the FPIR of each side and a verdict that says what the intervals allow
    [change] = doc["changes"]["changes"]
    assert (change["from"]["algorithm"], change["to"]["algorithm"]) == ("search-v3", "search-v4")
    first = min(e["occurred_at"] for e in events if e["algorithm"] == "search-v4")
    assert change["at"] == first[:19] + "Z"  # stored to the second
    assert set(change["rates"]) == {"FPIR", "FNIR"}
    for side in change["rates"].values():
        assert side["before"]["low"] <= side["before"]["rate"] <= side["before"]["high"]
        assert side["verdict"].startswith(("higher", "lower", "not distinguishable"))
    # data: events per mode
    assert doc["data"]["events"] == [{"mode": "identification", "events": len(events),
                                      "with_candidate_lists": sum(1 for e in events if e.get("candidates"))}]
    # period: the three uses of two hours, each with its events (a loop over the events' times)
    ended = [json.loads(line) for line in paths["uses"].read_bytes().splitlines() if b"ended_at" in line]
    assert [(u["use_id"], u["started_at"], u["ended_at"]) for u in doc["period"]["uses"]] == [
        (r["use_id"], r["started_at"], r["ended_at"]) for r in ended]
    for use in doc["period"]["uses"]:
        inside = [e for e in events if use["started_at"] <= e["occurred_at"][:19] + "Z" < use["ended_at"]]
        assert use["events"] == {"identification": len(inside)}
    assert sum(u["two_person"]["acted"] for u in doc["period"]["uses"]) == watch["acted"]
    assert doc["period"]["attempts_with_use"] == doc["period"]["attempts"] - sum(
        1 for line in paths["acquisitions"].read_bytes().splitlines() if b"use_id" not in line)


def test_the_report_renders_and_says_what_the_data_cannot_support(replayed, tmp_path):
    url = replayed["url"]
    html = invoke("report", "--kind", "monitoring", *WINDOW, "--store", url)
    assert html.exit_code == 0, html.output
    page = html.stdout
    for title in ("System and versions", "Failure to acquire", "Two-person verification",
                  "Changes of algorithm or threshold", "Evidence checkpoint"):
        assert f"<h2>{title}</h2>" in page
    assert "<title>fairwatch post-market monitoring report</title>" in page
    assert "watch search-v4 race: highest failure to acquire in group Black, set apart" in page
    assert "watch search-v4 sex: no group set apart by the intervals" in page
    assert "not confirmed by two people: watch" in page
    assert "3 uses ran in the window" in page and "watchlist-eu" in page
    pdf = invoke("report", "--kind", "monitoring", *WINDOW, "--store", url, "--format", "pdf", "--out",
                 tmp_path / "m.pdf")
    assert pdf.exit_code == 0, pdf.output
    assert (tmp_path / "m.pdf").read_bytes().startswith(b"%PDF")
    # a window without data: every section says so, nothing is judged
    empty = invoke("report", "--kind", "monitoring", "--from", "2025-01-01T00:00:00Z", "--to",
                   "2025-01-02T00:00:00Z", "--store", url, "--format", "json")
    assert empty.exit_code == 0, empty.output
    doc = json.loads(empty.stdout)
    assert "no verified outcomes" in doc["performance"]["statement"]
    assert "no acquisition attempt" in doc["acquisition"]["statement"]
    assert "no identification search" in doc["two_person"]["statement"]
    assert doc["changes"]["changes"] == [] and doc["system"]["segments"] == [] and doc["period"]["uses"] == []
    one_error(invoke("report", "--kind", "monitoring", *WINDOW, "--store", url, "--format", "csv"), 2, "CSV")
    one_error(invoke("report", "--kind", "quarterly", *WINDOW, "--store", url), 2, "--kind")
