"""Two-person verification: does the interval of the share of acted-on identifications confirmed by two
people hold the simulator's true share?

Run by ``make bench`` (not a test): ``benchmarks/bench_two_person.py`` (200 seeds per regime) or
``--quick`` (40). Writes ``benchmarks/results/two_person.json``.

Per seed, the packaged ``identification`` scenario (shortened to ``events``) with
``verification.action_prob`` and ``single_verifier_prob`` set is simulated
(:func:`fairwatch.sim.simulator.simulate`); its outcome lines are decoded by the contract's decoder,
the counted verdict of each search (the latest primary revision) with an action becomes an
:class:`~fairwatch.core.two_person.ActedVerdict` (as :func:`fairwatch.store.two_person.read_acted_verdicts`
reads them; ``tests/store/test_two_person.py`` holds the two equal), and
:func:`~fairwatch.core.two_person.two_person_compliance` gives each deployment's share and its 95%
interval. The truth: every action is confirmed by two people with probability
``1 - single_verifier_prob`` (the simulator's draw). Coverage: the share of (seed, deployment) pairs
with at least one action whose interval holds it. Regimes: few actions (``action_prob`` 0.01), a
common share of single-verifier actions (0.1), a rare one (0.01), a bad process (0.4).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from fairwatch.contracts.records import PRIMARY, decode_match_event, decode_verified_outcome
from fairwatch.core.two_person import ActedVerdict, two_person_compliance
from fairwatch.sim.scenario import load_scenario, parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.testing.bench import coverage_arguments, over_seeds, write_results
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "two_person.json"
REGIMES = {  # name: (events, action_prob, single_verifier_prob)
    "few_actions": (20_000, 0.01, 0.1),
    "common_single": (20_000, 0.2, 0.1),
    "rare_single": (20_000, 0.2, 0.01),
    "bad_process": (20_000, 0.2, 0.4),
}


def run_seed(regime: str, seed: int) -> list[dict]:
    events, action_prob, single = REGIMES[regime]
    scenario = load_scenario("identification").to_dict()
    scenario["events"] = events
    scenario["verification"].update(action_prob=action_prob, single_verifier_prob=single)
    sim = simulate(parse_scenario(scenario), seed=seed)
    searches = {}
    for line in sim.event_lines(np.arange(sim.n_events)):
        e = decode_match_event(line)
        if e.mode == "identification":
            searches[e.event_id] = e
    counted = {}
    for line in sim.outcome_lines(np.arange(sim.n_outcomes)):
        o = decode_verified_outcome(line)
        if o.review == PRIMARY and (o.event_id not in counted or o.revision > counted[o.event_id].revision):
            counted[o.event_id] = o
    acted = [ActedVerdict(searches[i].deployment, searches[i].algorithm, i, o.truth, list(o.verifiers or ()))
             for i, o in counted.items() if i in searches and o.action_taken]
    truth = 1 - single
    return [{"deployment": c.deployment, "acted": c.acted, "share": c.share, "low": c.low, "high": c.high,
             "covered": c.low <= truth <= c.high}
            for c in two_person_compliance(acted, {e.deployment for e in searches.values()}) if c.acted]


def main() -> None:
    args = coverage_arguments(__doc__.split("\n")[0], REGIMES, seeds=200, quick_seeds=40)
    seeds = args.seeds
    started = time.perf_counter()
    summary = {}
    print(f"{'regime':>14} {'pairs':>6} {'actions':>8} {'coverage':>9} {'mean width':>11}")
    with ProcessPoolExecutor(args.workers) as pool:
        for regime in args.regimes:
            rows = [r for rs in over_seeds(pool, run_seed, regime, seeds) for r in rs]
            coverage = float(np.mean([r["covered"] for r in rows]))
            width = float(np.mean([r["high"] - r["low"] for r in rows]))
            actions = float(np.mean([r["acted"] for r in rows]))
            summary[regime] = {"pairs": len(rows), "coverage": coverage, "mean_width": width,
                               "mean_actions": actions, "settings": REGIMES[regime]}
            print(f"{regime:>14} {len(rows):6d} {actions:8.1f} {coverage:9.3f} {width:11.3f}")
    worst = min(summary.items(), key=lambda kv: kv[1]["coverage"])
    print(f"\nminimum coverage: {worst[1]['coverage']:.3f} ({worst[0]})")
    write_results(RESULTS, {"seeds": seeds, "regimes": summary}, started)


if __name__ == "__main__":
    main()
