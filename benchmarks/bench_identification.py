"""Identification (1:N) searches: do the per-group 95% intervals of FPIR and FNIR cover the simulator's true rates?

Run by ``make bench`` (not a test): ``benchmarks/bench_identification.py`` (100 seeds per regime on
two processes) or ``--quick`` (10 seeds). Writes ``benchmarks/results/identification.json`` and
prints one row per regime, then the minimum.

Per seed, a regime's scenario (below) is simulated in memory with the project's simulator
(:func:`fairwatch.sim.simulator.simulate`: one deployment whose every event is a 1:N search with a
candidate list of ``list_length`` 10, the best impostor's and the mate's scores calibrated to the
cell's FPIR and FNIR at the threshold). Its records are rendered as the JSONL the simulator writes,
decoded by the contract's decoder in batch envelopes and fed, events first and outcomes in arrival
order, to :class:`~fairwatch.core.monitor.Monitor`: the label join (FNIR: the mate not listed at or
above the threshold; FPIR: a non-mated search listing anyone at or above it) and the bucket counts
the sink writes to ``group_counts``, then :meth:`~fairwatch.core.groupframe.GroupFrame.from_counts`
over the whole run with ``fairwatch metrics``' settings (95% Clopper-Pearson on the two-phase design,
the regime's intersections; where events carry a ``cluster_id``, the intervals of
:mod:`fairwatch.core.clusters`, with the design effect the Monitor's cluster sums give). No ClickHouse: ``--check-store`` replays each regime's first seed into
chDB (``fairwatch replay``'s path) and checks that ``fairwatch metrics``' numbers
(:func:`fairwatch.audit.estimates.window_metrics`) are the same.

Truth: the scenario's rates are per cell (one label of every attribute); a group's true FPIR (FNIR) is
the mixture of its cells' rates weighted by the cells' proportions (``Simulation.truth()`` gives the
single attributes; intersections are mixed here the same way, checked against it). The realized rate
(errors among every generated search of the group, verified or not) is given too. Rank 1: in a tenth
of the mated searches the simulator puts an impostor above the mate (``_candidate_lists``), so the
true rank-1 FNIR is ``0.1 + 0.9 FNIR``; its intervals come from
:class:`fairwatch.core.identification_ranks.RankCurve` over the final primary verdicts.

For every (group, rate) with at least one verified search: is the truth in ``[low, high]``? Per
regime: the share over all pairs (``FPIR``, ``FNIR``, ``rank-1``), the worst group's share over the
seeds (``worst``), the share of FPIR and FNIR pairs holding the realized rate (``realized``), before
the corrections (``first v.``), among pairs without a verified error (``no err.``), and ``var x``:
the larger, over FPIR and FNIR, of the median over groups of the estimates' variance across seeds
over the binomial variance at the true rate (about 1 for independent searches). Regimes (one
deployment, threshold 3, lists of 10):

- ``reference``: sex x race (8 cells), FPIR 1e-2 (race Black 3x, Asian 2x), FNIR 3e-2 (sex F 1.5x,
  race Indigenous 1.3x), 20,000 searches, 30% mated, every search verified;
- ``few_errors``: FPIR 1e-3 (race Black 3x, Asian 2x, age 18-29 1.5x), FNIR 1e-2 (sex F 1.5x),
  sex x race x age (24 cells), 6,000 searches: groups of a few hundred non-mated searches, many with
  no false positive at all;
- ``sampled_50`` / ``sampled_10``: the reference with the non-matches (rank-1 score below the
  threshold) verified with probability 0.5 / 0.1, every match verified;
- ``noisy_reviewers``: the reference, non-matches verified at 0.5, 3% of first verdicts wrong and
  corrected about a day later (the matured labels count; ``first verdicts`` is the coverage before
  the corrections arrive);
- ``many_groups``: sex x race x age with intersections sex&race and race&age (30 groups), 40,000
  searches, non-matches verified at 0.25;
- ``returning_subjects`` / ``returning_heavy``: the reference with 250 / 25 returning subjects per
  cell (about 10 / 100 searches each) whose scores share a latent shift (correlation 0.5): errors
  cluster by subject, so the realized rates scatter more than binomially around the true ones;
- ``returning_verification``: ``returning_heavy``'s people and rates compared 1:1 (verification
  events: FMR and FNMR, reported in the FPIR and FNIR columns; no rank).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from fairwatch.contracts.envelopes import decode_message
from fairwatch.contracts.records import PRIMARY, Rejection
from fairwatch.core.config import CoreConfig
from fairwatch.core.groupframe import GroupFrame
from fairwatch.core.identification_ranks import IdentificationRanks, RankCurve, RankTally, identified_rank
from fairwatch.core.layout import INTERSECTION_SEP, OVERALL, GroupKey
from fairwatch.core.monitor import Monitor
from fairwatch.sim.scenario import parse_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.testing.bench import envelopes, feed, write_results

RESULTS = Path(__file__).parent / "results" / "identification.json"
ENVELOPE_RECORDS = 1_000  # records per batch envelope: under the 1 MB message limit with candidate lists
BATCH = 10_000
OUTRANKED = 0.1  # the simulator's share of mated searches with an impostor above the mate
MODE = "identification"

SEX = "sex: {F: 0.5, M: 0.5}"
RACE = "race: {White: 0.55, Black: 0.2, Asian: 0.15, Indigenous: 0.1}"
AGE = 'age: {"18-29": 0.3, "30-49": 0.45, "50+": 0.25}'


def scenario(events: int, attributes: list[str], fpir: str, fnir: str, non_match_prob: float = 1.0,
             error_prob: float = 0.0, extra: str = "", impostor_share: float = 0.7, searches: float = 1.0) -> str:
    return f"""
start: "2026-11-25T06:00:00Z"
duration_hours: 24
events: {events}
attributes: {{{", ".join(attributes)}}}
algorithms:
  algo-1: {{fmr: {fpir}, fnmr: {fnir}, fpir: {fpir}, fnir: {fnir}}}
deployments:
  - {{name: watch, algorithm: algo-1, threshold: 3.0, identification_share: {searches}, impostor_share: {impostor_share},
     list_length: 10, gallery_size: 100000}}
verification: {{match_prob: 1.0, non_match_prob: {non_match_prob}, error_prob: {error_prob}, reviewers: 10,
  delay_hours: {{median: 6, sigma: 1.0}}, correction_delay_hours: {{median: 24, sigma: 0.5}}}}
{extra}
"""


REF_FPIR = "{base: 0.01, factors: {race: {Black: 3.0, Asian: 2.0}}}"
REF_FNIR = "{base: 0.03, factors: {sex: {F: 1.5}, race: {Indigenous: 1.3}}}"
REGIMES: dict[str, tuple[str, tuple[tuple[str, ...], ...]]] = {
    "reference": (scenario(20_000, [SEX, RACE], REF_FPIR, REF_FNIR), ()),
    "few_errors": (scenario(6_000, [SEX, RACE, AGE], "{base: 1.0e-3, factors: {race: {Black: 3.0, Asian: 2.0},"
                            " age: {\"18-29\": 1.5}}}", "{base: 0.01, factors: {sex: {F: 1.5}}}"), ()),
    "sampled_50": (scenario(20_000, [SEX, RACE], REF_FPIR, REF_FNIR, non_match_prob=0.5), ()),
    "sampled_10": (scenario(20_000, [SEX, RACE], REF_FPIR, REF_FNIR, non_match_prob=0.1), ()),
    "noisy_reviewers": (scenario(20_000, [SEX, RACE], REF_FPIR, REF_FNIR, non_match_prob=0.5, error_prob=0.03), ()),
    "many_groups": (scenario(40_000, [SEX, RACE, AGE], REF_FPIR, REF_FNIR, non_match_prob=0.25),
                    (("sex", "race"), ("race", "age"))),
    "returning_subjects": (scenario(20_000, [SEX, RACE], REF_FPIR, REF_FNIR,
                                    extra="subjects: {per_group: 250, correlation: 0.5}"), ()),
    "returning_heavy": (scenario(20_000, [SEX, RACE], REF_FPIR, REF_FNIR,
                                 extra="subjects: {per_group: 25, correlation: 0.5}"), ()),
    # 1:1 comparisons of the same people (FMR and FNMR at the reference's rates, in the FPIR / FNIR columns)
    "returning_verification": (scenario(20_000, [SEX, RACE], REF_FPIR, REF_FNIR, searches=0.0,
                                        extra="subjects: {per_group: 25, correlation: 0.5}"), ()),
}
MODES = {"returning_verification": "verification"}  # the regimes whose events are not searches
RATES = ("fpir", "fnir", "rank1")


def decode(lines: list[bytes], kind: str) -> list:
    """Records through the contract's decoder, in batch envelopes (searches with candidate lists take
    its full path: the fast one leaves them out)."""
    records = []
    for lo, raw in envelopes(lines, ENVELOPE_RECORDS):
        _, items = decode_message(raw, kind)
        bad = [i.record for i in items if isinstance(i.record, Rejection)]
        if bad:
            raise RuntimeError(f"simulated {kind} records at {lo} refused: {bad[0]}")
        records += [i.record for i in items]
    return records


def group_labels(sim, intersections) -> dict[tuple[str, str], np.ndarray]:
    """(attribute, group) -> the cells in it, for the overall row, each attribute and each intersection."""
    m = sim.model
    out = {(OVERALL, OVERALL): np.ones(m.n_cells, bool)}
    for k, attribute in enumerate(m.attribute_names):
        for label in m.labels[k]:
            out[(attribute, label)] = m.cell_mask({attribute: label})
    for combo in intersections:
        ks = [m.attribute_names.index(a) for a in combo]
        for labels in {tuple(m.labels[k][i] for k, i in zip(ks, row)) for row in m.cell_index[:, ks].tolist()}:
            out[(INTERSECTION_SEP.join(combo), INTERSECTION_SEP.join(labels))] = m.cell_mask(dict(zip(combo, labels)))
    return out


def truths(sim, intersections, mode: str = MODE) -> dict[tuple[str, str], dict[str, float]]:
    """Per group: the true FPIR and FNIR (cell rates mixed by the cells' proportions), the true rank-1
    FNIR, and the realized rates of every generated search (``truth.json``'s counts per cell)."""
    m = sim.model
    m_index = 1 if mode == MODE else 0
    fpir, fnir = m.rates[0, 0, 0, 0, m_index], m.rates[0, 1, 0, 0, m_index]  # segment, metric, deployment, algorithm, mode
    truth = sim.truth()
    index = {tuple(labels): i for i, labels in enumerate(m.cell_labels)}
    counts = np.zeros((4, m.n_cells))  # impostors, false positives, genuines, misses per cell
    for row in truth["cells"]:
        if row["mode"] == mode:
            cell = index[tuple(row["subject"][a] for a in m.attribute_names)]
            counts[:, cell] += [row["impostors"], row["false_matches"], row["genuines"], row["false_non_matches"]]
    out = {}
    for key, mask in group_labels(sim, intersections).items():
        share = np.where(mask, m.cell_prob, 0.0) / m.cell_prob[mask].sum()
        c = counts[:, mask].sum(axis=1)
        out[key] = {"fpir": float(fpir @ share), "fnir": float(fnir @ share),
                    "rank1": OUTRANKED + (1 - OUTRANKED) * float(fnir @ share),
                    "fpir_realized": c[1] / c[0] if c[0] else np.nan, "fnir_realized": c[3] / c[2] if c[2] else np.nan}
    for row in truth["groups"]:  # the simulator's own targets and counts for the single attributes
        if row["mode"] == mode:
            mine = out[(row["attribute"], row["label"])]
            assert abs(mine["fpir"] - row["target_fmr"]) <= 1e-9 * row["target_fmr"], row
            assert abs(mine["fnir"] - row["target_fnmr"]) <= 1e-9 * row["target_fnmr"], row
            assert mine["fpir_realized"] == row["false_matches"] / row["impostors"], row
    return out


def rank1_curves(events: list, outcomes: list, intersections, confidence: float) -> dict[tuple[str, str], RankCurve]:
    """Per group: FNIR at rank <= R of the mated searches by their final primary verdicts (the
    searches keyed by their subject's ``cluster_id``, as the store reads them)."""
    final = {}
    for o in outcomes:
        if o.review == PRIMARY and (o.event_id not in final or o.revision > final[o.event_id].revision):
            final[o.event_id] = o
    ranks: dict[tuple[str, str], tuple[list, list, list]] = {}
    for e in events:
        o = final.get(e.event_id)
        if o is None or o.truth != "genuine" or e.candidates is None:
            continue
        rank = identified_rank(o.mate_rank, [c.score for c in e.candidates], e.threshold)
        subject = e.subject
        keys = [(OVERALL, OVERALL), *subject.items()]
        keys += [(INTERSECTION_SEP.join(c), INTERSECTION_SEP.join(subject[a] for a in c)) for c in intersections]
        for key in keys:
            got = ranks.setdefault(key, ([], [], []))
            got[0].append(rank)
            got[1].append(1.0 / o.inclusion_prob)
            got[2].append(e.cluster_id)
    scope = ("watch", "algo-1", MODE)
    tallies = {GroupKey(*scope, *key): RankTally.of(r, w, clusters=c) for key, (r, w, c) in ranks.items()}
    curves = IdentificationRanks(tallies, confidence)
    return {key[3:]: curves.curve(key) for key in tallies}


def run_seed(regime: str, seed: int, check_store: bool = False) -> dict:
    started = time.perf_counter()
    text, intersections = REGIMES[regime]
    sim = simulate(parse_scenario(text), seed=seed)
    config = CoreConfig(intersections=intersections)  # fairwatch metrics' defaults otherwise
    events = decode(sim.event_lines(np.arange(sim.n_events)), "match_event")
    outcomes = decode(sim.outcome_lines(np.arange(sim.n_outcomes)), "verified_outcome")
    truth = truths(sim, intersections, MODES.get(regime, MODE))
    matured = Monitor(config)
    feed(matured, events, BATCH)
    monitors = {"matured": matured}
    if sim.n_corrections:  # the corrections not yet in: first verdicts alone
        monitors["first_verdicts"] = copy.deepcopy(matured)
        feed(monitors["first_verdicts"], [o for o in outcomes if o.revision == 0], BATCH)
    feed(matured, outcomes, BATCH)
    rank1 = rank1_curves(events, outcomes, intersections, config.confidence)
    rows = []
    for variant, monitor in monitors.items():
        frame = monitor.snapshot()
        for key, group in [*((GroupKey(*k, OVERALL, OVERALL), g) for k, g in frame.overall.items()),
                           *frame.by_group.items()]:
            true = truth[(key.attribute, key.group)]
            for rate, estimate in (("fpir", group.fmr), ("fnir", group.fnmr)):
                if estimate.n == 0:
                    continue
                rows.append({"variant": variant, "group": f"{key.attribute}={key.group}", "rate": rate,
                             "n": estimate.n, "n_eff": estimate.n_eff, "errors": estimate.errors,
                             "estimate": estimate.rate,
                             "low": estimate.low, "high": estimate.high, "true": true[rate],
                             "covered": bool(estimate.low <= true[rate] <= estimate.high),
                             "covered_realized": bool(estimate.low <= true[f"{rate}_realized"] <= estimate.high)})
    for (attribute, group), curve in rank1.items():
        true = truth[(attribute, group)]["rank1"]
        rows.append({"variant": "matured", "group": f"{attribute}={group}", "rate": "rank1", "n": int(curve.sums[0, 0]),
                     "n_eff": float(curve.n_eff[0]), "errors": int(curve.sums[0, 1]), "estimate": float(curve.fnir[0]), "low": float(curve.low[0]),
                     "high": float(curve.high[0]), "true": true, "covered": bool(curve.low[0] <= true <= curve.high[0]),
                     "covered_realized": None})
    result = {"regime": regime, "seed": seed, "events": sim.n_events, "outcomes": sim.n_outcomes, "rows": rows}
    if check_store:
        result["store_check"] = check_against_store(sim, matured.snapshot(), config)
    result["seconds"] = time.perf_counter() - started
    return result


def check_against_store(sim, frame: GroupFrame, config: CoreConfig) -> str:
    """Replay the seed into chDB as ``fairwatch replay`` does and compare ``fairwatch metrics``' groups."""
    import tempfile

    from fairwatch.audit.estimates import window_metrics
    from fairwatch.audit.window import Window
    from fairwatch.store.clickhouse import open_store
    from fairwatch.stream.replay import replay

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        (path / "events.jsonl").write_bytes(b"\n".join(sim.event_lines(np.arange(sim.n_events))) + b"\n")
        (path / "outcomes.jsonl").write_bytes(b"\n".join(sim.outcome_lines(np.arange(sim.n_outcomes))) + b"\n")
        store = open_store(f"chdb://{path}/store")
        try:
            replay(store, path / "events.jsonl", path / "outcomes.jsonl", config=config)
            stored, _ = window_metrics(store, Window(sim.scenario.start, sim.scenario.end), config, with_labels=False,
                                       with_reviews=False)
        finally:
            store.close()
    mine = {tuple(r[f] for f in ("attribute", "group")): r for r in frame.to_records()}
    theirs = {tuple(r[f] for f in ("attribute", "group")): r for r in stored.to_records()}
    if mine.keys() != theirs.keys():
        return f"different groups: {sorted(set(mine) ^ set(theirs))[:5]}"
    fields = ("impostor", "false_match", "genuine", "false_non_match", "fmr_low", "fmr_high", "fnmr_low", "fnmr_high")
    for key, row in mine.items():
        for f in fields:
            a, b = row[f], theirs[key][f]
            if not (a == b or (a is not None and b is not None and abs(a - b) <= 1e-9 * max(abs(a), abs(b)))):
                return f"{key} {f}: {a} in memory, {b} in the store"
    return f"same {len(mine)} groups"


def coverage(rows: list[dict], field: str = "covered") -> dict:
    """Per rate: pairs, their coverage, the worst group's coverage over the seeds, pairs with no error."""
    out = {}
    for rate in RATES:
        mine = [r for r in rows if r["rate"] == rate and r[field] is not None]
        if not mine:
            continue
        by_group: dict[str, list[bool]] = {}
        for r in mine:
            by_group.setdefault(r["group"], []).append(r[field])
        worst = min(by_group, key=lambda g: np.mean(by_group[g]))
        out[rate] = {"pairs": len(mine), "coverage": float(np.mean([r[field] for r in mine])),
                     "worst_group": worst, "worst_group_coverage": float(np.mean(by_group[worst])),
                     "worst_group_seeds": len(by_group[worst]),
                     "no_error_pairs": sum(r["errors"] == 0 for r in mine),
                     "no_error_coverage": float(np.mean([r[field] for r in mine if r["errors"] == 0]))
                     if any(r["errors"] == 0 for r in mine) else None}
    return out


def variance_inflation(rows: list[dict], rate: str) -> float | None:
    """Median over groups of the variance of the estimates across seeds over the binomial variance
    ``p (1 - p) / n_eff`` at the true rate: about 1 when the searches' errors are independent, above
    it when they cluster (returning subjects)."""
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        if r["rate"] == rate and r["n_eff"] > 0:
            by_group.setdefault(r["group"], []).append(r)
    ratios = [np.var([r["estimate"] for r in mine], ddof=1)
              / np.mean([r["true"] * (1 - r["true"]) / r["n_eff"] for r in mine])
              for mine in by_group.values() if len(mine) >= 10]
    return float(np.median(ratios)) if ratios else None


def fmt(covered: list[bool]) -> str:
    return f"{np.mean(covered):.3f}" if covered else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="simulated runs per regime (default 100; 10 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="first seed; the runs use seed, seed + 1, ...")
    parser.add_argument("--regimes", default=",".join(REGIMES), help="comma-separated regimes")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    parser.add_argument("--quick", action="store_true", help="10 seeds per regime")
    parser.add_argument("--check-store", action="store_true",
                        help="replay each regime's first seed into chDB and compare fairwatch metrics' numbers")
    args = parser.parse_args()
    seeds = args.seeds or (10 if args.quick else 100)
    regimes = [r for r in args.regimes.split(",") if r]
    unknown = set(regimes) - set(REGIMES)
    if unknown:
        parser.error(f"unknown regimes {sorted(unknown)}; known: {', '.join(REGIMES)}")
    started = time.perf_counter()
    print(f"identification searches, {seeds} seeds per regime from {args.seed}; share of (group, rate) pairs whose"
          " 95% interval holds the true rate (worst group: its share over the seeds)")
    print(f"{'regime':>22} {'events':>7} {'pairs':>6} {'FPIR':>6} {'worst':>6} {'FNIR':>6} {'worst':>6}"
          f" {'rank-1':>6} {'worst':>6} {'realized':>8} {'first v.':>8} {'no err.':>7} {'var x':>5} {'s':>6}")
    tasks = [(regime, seed, args.check_store and seed == args.seed) for regime in regimes
             for seed in range(args.seed, args.seed + seeds)]
    runs: dict[str, list[dict]] = {regime: [] for regime in regimes}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for run in pool.map(run_seed, *zip(*tasks)):
            runs[run["regime"]].append(run)
    summary = {}
    for regime in regimes:
        rows = [r for run in runs[regime] for r in run["rows"]]
        matured = [r for r in rows if r["variant"] == "matured"]
        first = [r for r in rows if r["variant"] == "first_verdicts"]
        c = coverage(matured)
        both = [r for r in matured if r["rate"] != "rank1"]
        summary[regime] = {
            "events": runs[regime][0]["events"], "intersections": [list(x) for x in REGIMES[regime][1]],
            "coverage": c, "coverage_realized": coverage(matured, "covered_realized"),
            "coverage_first_verdicts": coverage(first),
            "fpir_fnir_coverage": float(np.mean([r["covered"] for r in both])),
            "variance_inflation": {rate: variance_inflation(matured, rate) for rate in RATES},
            "seconds": sum(run["seconds"] for run in runs[regime]),
            "store_check": [run["store_check"] for run in runs[regime] if "store_check" in run],
            "missed": [{**r, "seed": run["seed"]} for run in runs[regime] for r in run["rows"]
                       if r["variant"] == "matured" and not r["covered"]][:200],
        }
        realized = float(np.mean([r["covered_realized"] for r in both]))
        firsts = [r["covered"] for r in first if r["rate"] != "rank1"]
        no_error = [r["covered"] for r in both if r["errors"] == 0]
        vif = summary[regime]["variance_inflation"]
        inflation = "-" if vif["fpir"] is None else f"{max(vif['fpir'], vif['fnir']):.1f}"
        rank1 = c.get("rank1")  # none in a regime of 1:1 comparisons
        rank1_cells = (f" {rank1['coverage']:6.3f} {rank1['worst_group_coverage']:6.3f}" if rank1
                       else f" {'-':>6} {'-':>6}")
        print(f"{regime:>22} {summary[regime]['events']:7d} {len(both):6d}"
              f" {c['fpir']['coverage']:6.3f} {c['fpir']['worst_group_coverage']:6.3f}"
              f" {c['fnir']['coverage']:6.3f} {c['fnir']['worst_group_coverage']:6.3f}"
              f"{rank1_cells}"
              f" {realized:8.3f} {fmt(firsts):>8} {fmt(no_error):>7} {inflation:>5}"
              f" {summary[regime]['seconds']:6.0f}")
    worst = min((summary[r]["coverage"][rate]["coverage"], r, rate) for r in regimes for rate in ("fpir", "fnir"))
    worst_group = min((summary[r]["coverage"][rate]["worst_group_coverage"], r, rate,
                       summary[r]["coverage"][rate]["worst_group"]) for r in regimes for rate in ("fpir", "fnir"))
    print(f"\nminimum coverage (FPIR, FNIR): {worst[0]:.3f} ({worst[1]}, {worst[2]});"
          f" worst single group: {worst_group[0]:.3f} ({worst_group[1]}, {worst_group[2]}, {worst_group[3]})")
    for regime in regimes:
        for check in summary[regime]["store_check"]:
            print(f"store check, {regime}: {check}")
    result = {"seeds": seeds, "first_seed": args.seed, "confidence": CoreConfig().confidence,
              "minimum_coverage": {"coverage": worst[0], "regime": worst[1], "rate": worst[2]},
              "minimum_group_coverage": {"coverage": worst_group[0], "regime": worst_group[1], "rate": worst_group[2],
                                         "group": worst_group[3]},
              "regimes": summary}
    write_results(RESULTS, result, started)


if __name__ == "__main__":
    main()
