"""Workers on the cluster (issue 30 item 2): three Kafka brokers (replication factor 3,
min.insync.replicas 2) and ClickHouse as two shards x two replicas (`scripts/stack up --cluster`).

The topics job, the migrate job and the workers run with the settings deploy/external-clusters.yml
gives them, this cluster being the external one. Three workers share 12 input partitions; while traffic flows one is killed with kill -9, another
joins, one broker stops and one ClickHouse replica stops. Oracles: the workload's own brute-force
recount (fairwatch.testing.workload.oracle_counts) against the counts read back through the
Distributed tables, and against a file replay of the same messages into the embedded store (the
three-way consistency: worker on the cluster == replay == recount, and `fairwatch metrics` gives the
same document from both); every malformed message in the dead-letter topic once; nothing valid lost
or counted twice. The workers run a detection policy: the incidents the replay finds are on record
once each, and the alerts topic holds each incident on record in its state on record. Run alone:
`pytest -m cluster`."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import pytest
from fairwatch.contracts import ALERTS, MATCH_EVENTS
from fairwatch.contracts.records import format_timestamp
from fairwatch.detect.reads import read_alerts
from fairwatch.store.clickhouse import open_store
from fairwatch.testing.cli_runs import invoke
from fairwatch.testing.live import LiveSetup, assert_counts_equal, stored_counts
from fairwatch.testing.stack import cluster_as_stack, configured_cluster_dir, ensure_cluster, run_stack
from fairwatch.testing.workload import make_workload, oracle_counts

from tests.deploy.compose import EXTERNAL_CLUSTERS, example_env, external_clusters_from, load_with, moved_env, run_service

pytestmark = [pytest.mark.services, pytest.mark.cluster, pytest.mark.xdist_group("cluster")]  # one fault test stops cluster nodes


def _cluster_pid(name: str) -> int:
    return int((configured_cluster_dir() / "run" / f"{name}.pid").read_text())


def _stop(name: str) -> None:
    pid = _cluster_pid(name)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} (pid {pid}) did not stop")


def _wait_owned(workers, timeout: float = 120.0) -> list[set]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = [w.health() for w in workers]
        if all(h and h["input_partitions"] for h in health):
            return [set(map(tuple, h["input_partitions"])) for h in health]
        time.sleep(0.5)
    raise AssertionError(f"partitions not assigned to every worker within {timeout}s: {health}")


# race=Black's FMR five times higher from 3.5 h on: an error-rate drift for the policy to find
POLICY = ("deployment: site-0\nattributes: [race]\nmetrics: [fmr]\nbaseline: {duration: 2h}\nmin_evidence: 100\n"
          "score_drift: false\n")
HOURS = 6


def _wait_for_a_cycle_after(store, instant: datetime, timeout: float = 120.0) -> None:
    """Until a detection cycle that began after ``instant`` has written its detector states."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = store.query("SELECT max(cycle_at) FROM detector_state")[0][0]
        if last is not None and last.replace(tzinfo=timezone.utc) > instant:
            return
        time.sleep(1.0)
    raise AssertionError(f"no detection cycle after {instant} within {timeout}s")


def _overlap(a, b) -> bool:
    never = datetime.max.replace(tzinfo=timezone.utc)
    return a.opened_at < (b.resolved_at or never) and b.opened_at < (a.resolved_at or never)


def _topic_states(setup: LiveSetup) -> dict[tuple[str, str], str]:
    """(id, opened_at) -> state, as a consumer of the alerts topic knows it: resolved once any record
    of the incident says so."""
    states: dict[tuple[str, str], str] = {}
    for record in setup.output_records(ALERTS):
        key = (record["id"], record["opened_at"])
        states[key] = "resolved" if "resolved" in (states.get(key), record["state"]) else record["state"]
    return states


# a compose worker's settings that are not about the clusters: the test's own (no Alertmanager or
# Grafana here, a port and a data directory per worker process, a static group member id per compose
# service, which four processes cannot share); the shorter session timeout of the live tests and the
# intersection the oracle counts are kept
NOT_FROM_COMPOSE = ("FAIRWATCH_ALERTMANAGER", "FAIRWATCH_GRAFANA", "FAIRWATCH_WEB_HOST", "FAIRWATCH_WEB_PORT",
                    "FAIRWATCH_DATA_DIR", "FAIRWATCH_INSTANCE_ID", "FAIRWATCH_SESSION_TIMEOUT", "FAIRWATCH_INTERSECTIONS")


def _as_compose_runs_them(stack, setup: LiveSetup, tmp_path) -> dict[str, str]:
    """Run the topics and migrate jobs of docker-compose.yml + deploy/external-clusters.yml against
    this cluster; return the compose worker's settings for the workers."""
    database = urlparse(setup.store_url).path.lstrip("/")
    env = {**example_env(), **external_clusters_from(stack, tmp_path / "secrets", database),
           "FAIRWATCH_TOPIC_PREFIX": setup.prefix, "FAIRWATCH_APP_ID": setup.app_id,
           "FAIRWATCH_PARTITIONS": str(setup.partitions)}
    model = load_with(EXTERNAL_CLUSTERS, env)
    for job in ("topics", "migrate"):  # idempotent: the setup made the topics and the tables already
        done = run_service(model, job)
        assert done.returncode == 0, f"{job}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    worker = {k: v for k, v in moved_env(model["services"]["worker"]).items()
              if not k.startswith(NOT_FROM_COMPOSE)}
    assert worker["FAIRWATCH_KAFKA"] == stack["FAIRWATCH_KAFKA"] and "cluster=" in worker["FAIRWATCH_CLICKHOUSE"]
    return worker


def _replay(workload, tmp_path, policy) -> str:
    """The same messages as two files, replayed into the embedded store with the same policy."""
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    with events.open("wb") as e, outcomes.open("wb") as o:
        for kind, _, value in workload.messages:
            (e if kind == MATCH_EVENTS else o).write(value.replace(b"\n", b" ") + b"\n")
    url = f"chdb://{tmp_path / 'replayed'}"
    done = invoke("replay", str(events), str(outcomes), "--store", url, "--policy", str(policy),
                  "--intersections", "sex&race", "--json")
    assert done.exit_code == 0, done.output
    return url


@pytest.mark.timeout(900)
def test_three_workers_a_kill_a_join_a_broker_and_a_replica_down_keep_counts_and_alerts_exact(tmp_path):
    if os.environ.get("FAIRWATCH_CLUSTER_CLICKHOUSE_MIGRATOR"):
        pytest.skip("stops services of the local cluster; FAIRWATCH_CLUSTER_* points at an external one")
    stack = cluster_as_stack(ensure_cluster())
    # event time ending now: the workers' detection cycles look back from the clock
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=HOURS)
    workload = make_workload(20_000, seed=30, start=start, hours=HOURS, deployments=1, drift=("Black", 5.0, 3.5))
    setup = LiveSetup(stack, tmp_path, partitions=12, replication=3, table_store="rocksdb://")
    policy = tmp_path / "site-0.yaml"
    policy.write_text(POLICY)
    setup.env.update(_as_compose_runs_them(stack, setup, tmp_path))
    setup.env.update(FAIRWATCH_POLICIES=str(policy), FAIRWATCH_DETECT_SECONDS="3")
    thirds = len(workload.messages) // 3
    workers = [setup.start_worker(name) for name in ("a", "b", "c")]
    stopped: list[str] = []
    try:
        owned = _wait_owned(workers)
        assert all(owned) and sum(len(o) for o in owned) == len({p for o in owned for p in o})  # no partition twice
        setup.produce(workload.messages[:thirds])
        time.sleep(2)
        # the detecting one (it owns partition 0 of match-events): its partitions and the detection
        # move to the others, its uncommitted work is redone, its successor re-sends what stands
        detecting = next(w for w, o in zip(workers, owned) if (MATCH_EVENTS, 0) in o)  # /healthz names kinds
        detecting.kill9()
        workers = [w for w in workers if w is not detecting] + [setup.start_worker("d")]
        # a broker and two replicas stop while traffic flows: the second of shard 2, and the first of
        # shard 1 (reads and inserts move to its second; back, it is passed over until it caught up)
        for name in ("kafka-3", "clickhouse-s2r2", "clickhouse-s1r1"):
            _stop(name)
            stopped.append(name)
        setup.produce(workload.messages[thirds:2 * thirds])
        time.sleep(2)
        setup.produce(workload.messages[2 * thirds:])
        # the broker and the replica come back while the workers drain (the replica catches up)
        with ThreadPoolExecutor(1) as pool:
            recovered = pool.submit(run_stack, "up", cluster=True)
            setup.wait_drained(workers, timeout=600)
            assert recovered.result().returncode == 0, recovered.result().stderr
        stopped.clear()
        drained = datetime.now(timezone.utc)
        expected = oracle_counts(workload)
        replayed = _replay(workload, tmp_path, policy)
        with closing(open_store(setup.store_url, create=False)) as store, closing(open_store(replayed)) as replay:
            assert_counts_equal(stored_counts(store), expected)
            assert_counts_equal(stored_counts(replay), expected)
            _wait_for_a_cycle_after(store, drained)  # it read every count
            live, oracle_incidents = read_alerts(store), read_alerts(replay)
        window = ["--from", format_timestamp(start), "--to", format_timestamp(start + timedelta(hours=HOURS + 1)),
                  "--json"]
        documents = []
        for url in (setup.store_url, replayed):
            done = invoke("metrics", "--store", url, *window)
            assert done.exit_code == 0, done.output
            document = json.loads(done.stdout.replace(url, "STORE"))
            for moment in ("as_of", "mature_before"):  # when it was asked, and that less the maturity
                document["labels"].pop(moment)
            documents.append(document)
        assert documents[0] == documents[1] and documents[0]["groups"]
        # alerts: each incident of the whole history (the replay's) was raised live, once: one live
        # incident of its alert overlaps it
        assert "site-0/algo-1/error_rate_drift/fmr/race=Black" in {a.id for a in oracle_incidents}
        for incident in oracle_incidents:
            assert len([a for a in live if a.id == incident.id and _overlap(a, incident)]) == 1, (incident, live)
        by_id: dict[str, list] = {}
        for a in live:
            by_id.setdefault(a.id, []).append(a)
        for incidents in by_id.values():  # at most one open at a time, none overlapping another
            incidents.sort(key=lambda a: a.opened_at)
            assert sum(a.state == "firing" for a in incidents) <= 1, incidents
            assert all(a.resolved_at is not None and a.resolved_at <= b.opened_at
                       for a, b in zip(incidents, incidents[1:])), incidents
        # the alerts topic (at least once; resolved is final for an id and opened_at): every incident
        # on record in its state on record, and none that is not (its deliveries leave in background
        # threads: until they agree, or 60 s)
        on_record = {(a.id, format_timestamp(a.opened_at)): a.state for a in live}
        deadline = time.monotonic() + 60
        while (sent := _topic_states(setup)) != on_record and time.monotonic() < deadline:
            time.sleep(1)
        assert sent == on_record
        letters = setup.dead_letters()  # redeliveries collapsed by (topic, partition, offset, record)
        assert {value for _, _, value in workload.malformed} <= {base64.b64decode(r["value_b64"]) for r in letters.values()}
        assert len(letters) == len(workload.malformed), "only the malformed messages belong in dead-letter"
    finally:
        for w in workers:
            w.stop()
        if stopped:  # the test failed before they came back: the cluster whole again for what follows
            assert run_stack("up", cluster=True).returncode == 0
