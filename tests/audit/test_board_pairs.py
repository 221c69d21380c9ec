"""The Disparity board's impostor-pair panel (FMR, or FPIR, by subject group x the other side's group)
on ClickHouse 18.16 and chDB, against a brute-force recount of the simulated JSONL written here: a
verification gate whose events carry the reference's labels, and an identification deployment whose
searches carry candidate lists. The panel's SQL is expanded as Grafana and the plugin expand it
(:func:`fairwatch.audit.boards.expand_macros`, :func:`~fairwatch.audit.boards.interpolate`)."""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from fairwatch.audit import boards as fd
from fairwatch.audit.snapshots import write_snapshots
from fairwatch.core.config import CoreConfig
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import write_jsonl
from fairwatch.store.clickhouse import open_store
from fairwatch.stream.replay import replay
from fairwatch.testing.stack import server_url

START = datetime(2026, 11, 25, 6, tzinfo=timezone.utc)
CONFIG = CoreConfig(min_comparisons=30)
SCENARIO = {
    "name": "pairs", "seed": 8, "start": "2026-11-25T06:00:00Z", "duration_hours": 2, "events": 6000,
    "impostor_same_demographics": 0.6,
    "attributes": {"sex": {"F": 0.5, "M": 0.5}, "race": {"White": 0.6, "Black": 0.4}},
    "algorithms": {"algo-1": {"fmr": {"base": 0.02, "factors": {"race": {"Black": 3}}}, "fnmr": 0.02,
                              "fpir": {"base": 0.05, "factors": {"race": {"Black": 3}}}, "fnir": 0.05}},
    "deployments": [{"name": "gate", "share": 0.5, "algorithm": "algo-1", "threshold": 3.0, "impostor_share": 0.6},
                    {"name": "watch", "share": 0.5, "algorithm": "algo-1", "threshold": 3.0,
                     "identification_share": 1.0, "impostor_share": 0.6, "list_length": 5, "gallery_size": 100000}],
    "verification": {"match_prob": 1.0, "non_match_prob": 0.5, "error_prob": 0.0, "reviewers": 3},
}


class Backend:
    def __init__(self, store, paths):
        self.store, self.paths = store, paths

    def typed(self, sql: str) -> tuple[list[str], list[tuple]]:
        if hasattr(self.store, "_client"):
            rows, columns = self.store._client.execute(sql, with_column_types=True)
            return [c[0] for c in columns], rows
        result = self.store._run(sql, "JSONCompact")
        document = json.loads(result.bytes() or b'{"meta": [], "data": []}')
        return [m["name"] for m in document["meta"]], [tuple(row) for row in document["data"]]


@pytest.fixture(scope="module", params=[pytest.param("clickhouse-18.16", marks=pytest.mark.services), "chdb"])
def backend(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "chdb":
        store = open_store(f"chdb://{tmp}/store")
    else:
        stack = request.getfixturevalue("stack")
        store = open_store(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], f"fw_pairs_{uuid.uuid4().hex[:8]}"))
    paths = write_jsonl(simulate(parse_scenario(SCENARIO)), tmp)
    replay(store, paths["events"], paths["outcomes"], CONFIG)
    write_snapshots(store, CONFIG, now=START + timedelta(hours=2))  # the board's variables list from snapshots
    yield Backend(store, paths)
    if request.param != "chdb":
        store.execute(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


def brute_force(paths, deployment: str, attribute: str, mode: str) -> dict[tuple[str, str], tuple]:
    """(subject group, other side's group) -> (comparisons, errors, rate) of the verified impostor
    comparisons (non-mated searches) of ``mode``, from the JSONL: the latest revision of each primary
    verdict, weight 1 / inclusion_prob. Verification: the pairs of a subject and a reference of those
    groups, over those pairs. Identification: the non-mated searches whose first candidate at or above
    the threshold is of that group, over every non-mated search of the subject's group."""
    parts = attribute.split("&")

    def label(labels):
        return "&".join(labels[a] for a in parts) if labels and all(a in labels for a in parts) else ""

    events = {e["event_id"]: e for e in map(json.loads, paths["events"].read_bytes().splitlines())}
    counted: dict[str, dict] = {}
    for o in map(json.loads, paths["outcomes"].read_bytes().splitlines()):
        if o.get("review", "primary") == "primary" and o["revision"] >= counted.get(o["event_id"], {"revision": -1})["revision"]:
            counted[o["event_id"]] = o
    cells, rows = defaultdict(lambda: [0, 0, 0.0, 0.0]), defaultdict(lambda: [0, 0.0])
    for event_id, o in counted.items():
        e = events[event_id]
        subject = label(e["subject"])
        if (e["deployment"], e["mode"], o["truth"]) != (deployment, mode, "impostor") or not subject:
            continue
        w = 1 / o["inclusion_prob"]
        rows[subject][0] += 1
        rows[subject][1] += w
        if mode == "verification":
            other, error = label(e.get("reference")), e["decision"] == "match"
        else:
            listed = [c for c in e.get("candidates", []) if c["score"] >= e["threshold"]]
            other, error = (label(listed[0].get("groups")) if listed else ""), bool(listed)
        if other:
            c = cells[(subject, other)]
            c[0] += 1
            c[1] += error
            c[2] += w
            c[3] += w * error
    if mode == "verification":
        return {k: (n, x, w_err / w) for k, (n, x, w, w_err) in cells.items()}
    return {k: (rows[k[0]][0], x, w_err / rows[k[0]][1]) for k, (_, x, _, w_err) in cells.items()}


def panel_rows(backend, **chosen) -> tuple[list[str], list[tuple]]:
    end = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    start, interval = START - timedelta(hours=1), 600
    [board] = [b for name, b in fd.generate().items() if name == "fairwatch-disparity.json"]
    [q] = [q for q in fd.panel_queries(board) if q.title.startswith("Impostor pairs of")]
    assert q.fmt == fd.FORMAT_TABLE and q.panel_type == "table"

    def expand(sql):
        return fd.expand_macros(sql, start, end, interval)

    values = fd.resolve_variables(board, backend.store.query, expand)
    return backend.typed(expand(fd.interpolate(q.sql, {**values, **chosen})))


def same(rows, expected) -> None:
    found = {(r[0], r[1]): r[2:] for r in rows}
    assert set(found) == set(expected)
    for key, (n, x, rate) in expected.items():
        comparisons, errors, shown = found[key]
        assert (comparisons, errors) == (n, x), key
        assert shown is None if n < fd.SCORE_MIN_COMPARISONS else math.isclose(shown, rate, rel_tol=1e-9), key


@pytest.mark.parametrize("attribute", ["race", "sex&race"])
def test_verification_pairs_equal_a_recount_of_the_simulated_records(backend, attribute):
    names, rows = panel_rows(backend, deployment="gate", algorithm="algo-1", mode="verification", attribute=attribute)
    assert names == ["subject", "reference", "comparisons", "errors", "rate"]
    expected = brute_force(backend.paths, "gate", attribute, "verification")
    same(rows, expected)
    assert any(g == h for g, h in expected) and any(g != h for g, h in expected)  # same-group and cross-group
    assert any(r[4] is not None and r[4] > 0 for r in rows)


@pytest.mark.parametrize("attribute", ["race", "sex&race"])
def test_identification_fpir_is_decomposed_by_the_rank_1_candidates_group(backend, attribute):
    _, rows = panel_rows(backend, deployment="watch", algorithm="algo-1", mode="identification", attribute=attribute)
    expected = brute_force(backend.paths, "watch", attribute, "identification")
    same(rows, expected)
    assert len(expected) >= 4 and any(r[4] is not None and r[4] > 0 for r in rows)
    # a row's cells share its denominator: every non-mated search of the subject's group
    for g in {g for g, _ in expected}:
        assert len({r[2] for r in rows if r[0] == g}) == 1
