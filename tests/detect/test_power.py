"""`fairwatch policy check`: the simulated power of a policy's detectors against an independent
simulation (scipy's binomial likelihoods, the Shiryaev-Roberts recursion written out), and the
command on a store filled by simulate + replay."""

from __future__ import annotations

import json
import math

import numpy as np
from fairwatch.detect.detectors import DEFAULT_GRID
from fairwatch.detect.power import simulate_power
from fairwatch.detect.streams import Stream
from scipy import stats


def _stream(rate: float, edge: float, volume: float, dispersion: float = 1.0, buckets: int = 24) -> Stream:
    return Stream("error_rate_drift", "a", "verification", "race", "g", "fmr", "sr_band", rate, edge,
                  dispersion=dispersion, baseline_counts=(rate * volume * buckets, volume * buckets),
                  baseline_buckets=buckets)


def _oracle_power(rate, edge, volume, dispersion, shift, threshold, steps, replicates, seed):
    """Share of replicates whose mixture SR statistic reaches the threshold within ``steps``."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(replicates):
        log_r = np.full(len(DEFAULT_GRID), -np.inf)
        for _ in range(steps):
            n = rng.poisson(volume)
            x = rng.binomial(n, min(shift * rate, 1.0))
            llr = np.array([stats.binom.logpmf(x, n, edge * k) - stats.binom.logpmf(x, n, edge)
                            for k in DEFAULT_GRID]) / dispersion
            log_r = np.logaddexp(log_r, 0.0) + llr
            if np.log(np.exp(log_r).mean()) >= math.log(threshold):
                hits += 1
                break
    return hits / replicates


def test_power_equals_an_independent_simulation():
    # hourly buckets: 24 steps in the day; 2,000 comparisons an hour at FMR 1e-2, edge 1.3e-2
    threshold, replicates = 1e4, 400
    # powers near 1, in between and near 0, so that a wrong rate, volume or dispersion would show
    cases = [(1e-2, 1.3e-2, 2000.0, 1.0, 2.0), (1e-2, 1.3e-2, 2000.0, 2.0, 2.0), (1e-2, 1.3e-2, 500.0, 1.0, 2.0),
             (1e-2, 1.3e-2, 300.0, 1.0, 2.0)]
    streams = [_stream(rate, edge, volume, phi) for rate, edge, volume, phi, _ in cases]
    rows = simulate_power(streams, threshold, 3600, shifts=(2.0,), replicates=replicates, seed=1)
    assert len(rows) == len(cases)
    for row, (rate, edge, volume, phi, shift) in zip(rows, cases):
        want = _oracle_power(rate, edge, volume, phi, shift, threshold, 24, replicates, seed=2)
        # two independent simulations of the same probability: within 4.5 standard errors
        se = math.sqrt(max(want * (1 - want), 1 / replicates) * 2 / replicates)
        assert abs(row.power_24h - want) <= 4.5 * se, (row, want)
        assert (row.baseline_rate, row.comparisons_per_bucket, row.dispersion) == (rate, volume, phi)
        assert math.isclose(row.edge_over_rate, edge / rate)
    # the dispersion slows it: same data, phi 2
    assert rows[1].median_delay_hours > rows[0].median_delay_hours


def test_volume_counts_only_the_buckets_that_hold_comparisons():
    from fairwatch.core.config import CoreConfig
    from fairwatch.core.layout import COLUMNS
    from fairwatch.detect.policy import parse_policy
    from fairwatch.detect.streams import build_streams

    # a 4-hour baseline with data in its first hour only: 600 comparisons a minute there
    policy = parse_policy("deployment: d\nattributes: [race]\nbaseline: {duration: 4h}\nmetrics: [fmr]\n")
    rows = []
    for t in range(60):
        row = [0.0] * len(COLUMNS)
        row[0:6] = [600.0, 6.0] * 3
        rows.append(("a", "verification", "race", "A", t * 60, *row))
    [stream] = [s for s in build_streams(policy, CoreConfig(), rows, [], 0, 4 * 3600, 4 * 3600, 4 * 3600 + 60)
                if s.type == "error_rate_drift"]
    [row] = simulate_power([stream], 1e4, 60, shifts=(3.0,), replicates=20, seed=4)
    assert stream.baseline_buckets == 60 and row.comparisons_per_bucket == 600.0


def test_a_shift_within_the_band_is_not_a_departure():
    # edge 1.5x the rate: a 1.2x shift stays below the edge, the detector's null: it must not alarm
    rows = simulate_power([_stream(1e-2, 1.5e-2, 5000.0)], 1e4, 3600, shifts=(1.2, 3.0), replicates=300, seed=3)
    within, beyond = rows
    assert within.power_24h <= 0.01 and within.median_delay_hours is None
    assert beyond.power_24h == 1.0 and beyond.median_delay_hours <= beyond.p95_delay_hours < 24


def test_policy_check_command_on_a_replayed_store(tmp_path):
    from fairwatch.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    sim = tmp_path / "sim"
    made = runner.invoke(app, ["simulate", "--scenario", "demo", "--events", "20000", "--out", str(sim)])
    assert made.exit_code == 0, made.output
    store = f"chdb://{tmp_path}/db"
    loaded = runner.invoke(app, ["replay", str(sim / "events.jsonl"), str(sim / "outcomes.jsonl"), "--store", store])
    assert loaded.exit_code == 0, loaded.output
    policy = tmp_path / "policy.yaml"
    policy.write_text("deployment: gate-a\nattributes: [sex, race]\nmetrics: [fmr]\nbaseline: {duration: 1h}\n"
                      "band: 1.2\nmin_evidence: 300\nscore_drift: false\n")
    result = runner.invoke(app, ["policy", "check", str(policy), "--store", store, "--replicates", "20",
                                 "--shift", "3", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    # the baseline's groups recounted from the replayed events: impostor comparisons of the first hour
    events = [json.loads(line) for line in (sim / "events.jsonl").read_text().splitlines()]
    outcomes = {o["event_id"]: o for o in map(json.loads, (sim / "outcomes.jsonl").read_text().splitlines())}
    assert document["baseline_from"].startswith("2026-11-25T06:00:00")
    tested = {(r["attribute"], r["group"]) for r in document["rows"]}
    thin = {t["group"] for t in document["insufficient"]}
    labels = {("sex", g) for g in ("F", "M")} | {("race", g) for g in ("White", "Black", "Asian", "Indigenous")}
    assert tested | {tuple(t.split("=")) for t in thin} == labels
    assert document["tested_streams"] == len(tested)
    assert all(r["shift"] == 3.0 and 0 <= r["power_24h"] <= 1 for r in document["rows"])
    assert len(events) == 20000 and outcomes  # the simulated inputs the store was filled from
    table = runner.invoke(app, ["policy", "check", str(policy), "--store", store, "--replicates", "20"])
    assert table.exit_code == 0 and "2x shift:" in table.stdout, table.output
    # a fixed baseline without data, a store without tables, no group with enough evidence: one error line each
    nobody = tmp_path / "nobody.yaml"
    nobody.write_text('deployment: nobody\nattributes: [sex]\nbaseline: {from: "2026-11-25T06:00:00Z",'
                      ' to: "2026-11-25T07:00:00Z"}\n')
    thin = tmp_path / "thin.yaml"
    thin.write_text("deployment: gate-a\nattributes: [sex]\nbaseline: {duration: 1h}\nmin_evidence: 100000000\n")
    for args, message in (([str(nobody), "--store", store], "no verified outcome of deployment 'nobody'"),
                          ([str(policy), "--store", f"chdb://{tmp_path}"], "is not a fairwatch store"),
                          ([str(thin), "--store", store], "nothing would be tested")):
        failed = runner.invoke(app, ["policy", "check", *args])
        assert failed.exit_code == 2 and failed.output.count("error:") == 1, failed.output
        assert message in " ".join(failed.output.split()), failed.output
        assert "Traceback" not in failed.output
