"""A deterministic deployment simulator: match events, verified outcomes and their ground truth.

A scenario (YAML) describes deployments, the algorithms they run, who is compared (demographic
attributes and their proportions) and how often each group is misjudged. Scores are drawn from
per-group normal distributions *calibrated* so that, at the deployment's threshold, the chance of
a false match (or false non-match) is exactly the configured rate:

* impostor scores ~ Normal(t - isf(FMR), 1), so P(score >= t) = FMR;
* genuine scores ~ Normal(t + isf(FNMR), 1), so P(score < t) = FNMR.

A cell (one label of every attribute, e.g. ``F & Black & 30-49``) has the rate
``base * product of the factors of its labels``; a group such as ``race=Black`` has the mixture of
its cells' rates, weighted by their proportions, which :func:`simulate` reports as its target.
In identification mode the same words mean FPIR and FNIR.

Everything is drawn from one seeded ``numpy.random.Generator`` in a fixed order, vectorized, so
the same scenario and seed give byte-identical files and a million events take seconds.

The scenario keys are documented one by one in ``fairwatch/sim/scenarios/default.yaml``; the shape
of ``truth.json`` in :meth:`Simulation.truth`. Outputs: :mod:`fairwatch.sim.writers` (files, or Kafka).

Examples
--------
>>> from fairwatch.sim.scenario import parse_scenario
>>> scenario = parse_scenario('''
... start: "2026-11-25T06:00:00Z"
... duration_hours: 1
... events: 2000
... attributes: {race: {Black: 0.5, White: 0.5}}
... algorithms:
...   algo-1:
...     fmr: {base: 0.01, factors: {race: {Black: 3}}}
...     fnmr: 0.02
... deployments: [{name: gate-a, algorithm: algo-1, threshold: 3.0, impostor_share: 0.5}]
... drifts: [{name: lighting, kind: rate, at: 0.5, metric: fmr, factor: 3, group: {race: Black}}]
... ''')
>>> sim = simulate(scenario, seed=7)
>>> sim.n_events, sim.event_ids[:2]
(2000, ['sim-7-0000', 'sim-7-0001'])
>>> truth = sim.truth()
>>> [(r["label"], r["segment"], r["target_fmr"]) for r in truth["groups"] if r["attribute"] == "race"]
[('Black', 0, 0.03), ('White', 0, 0.01), ('Black', 1, 0.09), ('White', 1, 0.01)]
>>> line = sim.event_lines(range(1))[0]
>>> from fairwatch.contracts.records import decode_match_event
>>> decode_match_event(line).event_id
'sim-7-0000'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import numpy as np

from fairwatch.contracts.records import format_timestamp
from fairwatch.sim.scenario import (
    MAX_EVENTS,
    METRICS,
    MODES,
    OVERALL,
    LogNormal,
    RateDrift,
    RateModel,
    Rollout,
    Scenario,
    ScenarioError,
    calibrate,
)

SCORE_DECIMALS = 6  # the decision is taken on the written (rounded) score, so the two agree
_INDEPENDENT_FIELD = '"review":"independent",'  # keys stay sorted: after inclusion_prob
_US_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)



# ---- the rate model --------------------------------------------------------------------------------


# ---- the simulation --------------------------------------------------------------------------------


class Simulation:
    """The generated events and outcomes as columns, with their ground truth.

    Build it with :func:`simulate`. ``event_lines(idx)`` / ``outcome_lines(idx)`` render records
    (compact JSON, keys sorted, as the contracts' ``to_json``); ``truth()`` and ``summary()``
    are JSON-ready dictionaries.
    """

    def __init__(self, scenario: Scenario, seed: int, n_events: int):  # use simulate()
        self.scenario = scenario
        self.seed = seed
        self.model = model = RateModel(scenario)
        rng = np.random.default_rng(seed)
        n = self.n_events = n_events
        D, C = len(model.deployments), model.n_cells
        start_us = _to_us(scenario.start)
        span_us = round(scenario.duration_hours * _US_PER_HOUR)

        # The draws below happen in a fixed order, each for all n events, so that the output
        # depends on the seed and the scenario only.
        self.time = start_us + np.sort(rng.integers(0, span_us, n, dtype=np.int64))
        dep_share = np.array([d.share for d in model.deployments])
        self.deployment = rng.choice(D, n, p=dep_share / dep_share.sum()).astype(np.int16)
        self.cell = rng.choice(C, n, p=model.cell_prob).astype(np.int32)
        ident = np.array([d.identification_share for d in model.deployments])
        self.mode = (rng.random(n) < ident[self.deployment]).astype(np.int8)
        imp = np.array([d.impostor_share for d in model.deployments])
        self.genuine = rng.random(n) >= imp[self.deployment]
        same = rng.random(n) < scenario.impostor_same_demographics
        other = rng.choice(C, n, p=model.cell_prob).astype(np.int32)
        self.reference = np.where(self.genuine | same, self.cell, other)

        algo_of_dep = np.array([model.algorithms.index(d.algorithm) for d in model.deployments])
        self.algorithm = algo_of_dep[self.deployment].astype(np.int16)
        for rollout in model.rollouts:
            u = rng.random(n)
            ramp_us = rollout.ramp_hours * _US_PER_HOUR
            elapsed = (self.time - _to_us(rollout.at)).astype(float)
            share = np.clip(elapsed / ramp_us, 0.0, 1.0) if ramp_us > 0 else (elapsed >= 0).astype(float)
            deps = [i for i, d in enumerate(model.deployments) if rollout.deployments is None or d.name in rollout.deployments]
            switch = ((self.algorithm == model.algorithms.index(rollout.source)) & np.isin(self.deployment, deps)
                      & (elapsed >= 0) & (u < share))
            self.algorithm[switch] = model.algorithms.index(rollout.target)

        bounds = np.array([_to_us(t) for t in model.boundaries[1:-1]], dtype=np.int64)
        self.segment = np.searchsorted(bounds, self.time, side="right").astype(np.int16)
        metric = np.where(self.genuine, 1, 0)
        rate = model.rates[self.segment, metric, self.deployment, self.algorithm, self.mode, self.cell]
        thresholds = np.array([d.threshold for d in model.deployments])[self.deployment]
        mu_impostor, mu_genuine = calibrate(thresholds, rate, rate)
        z = rng.standard_normal(n)
        self._cluster_json: list[str] | None = None
        if scenario.subjects is not None:  # its own generator: scenarios without it keep their output
            z = self._returning_subjects(z, scenario.subjects, seed, C)
        self.score = np.round(np.where(self.genuine, mu_genuine, mu_impostor) + z, SCORE_DECIMALS)
        self.match = self.score >= thresholds
        self._cell_json = [
            json.dumps(dict(zip(model.attribute_names, labels)), sort_keys=True, separators=(",", ":"))
            for labels in model.cell_labels
        ]
        # identified: a genuine comparison judged a match; a mated search with a list, its mate listed
        self.hit = self.match.copy()
        self.mate_rank = np.zeros(n, np.int16)
        self._search_json: dict[int, tuple[str, str]] = {}
        lengths = np.array([d.list_length or 0 for d in model.deployments])[self.deployment]
        listed = np.flatnonzero((self.mode == 1) & (lengths > 0))
        if len(listed):  # its own generator: scenarios without lists keep their output
            self._candidate_lists(listed, lengths[listed], thresholds[listed], seed)

        v = scenario.verification
        inclusion = np.where(self.match, v.match_prob, v.non_match_prob)
        verified = np.flatnonzero(rng.random(n) < inclusion)
        k = len(verified)
        delay = _lognormal_us(rng, v.delay_hours, k)
        reviewer = rng.integers(0, v.reviewers, k)
        wrong = rng.random(k) < v.error_prob
        fix = np.flatnonzero(wrong)
        fix_delay = _lognormal_us(rng, v.correction_delay_hours, len(fix))
        fix_reviewer = rng.integers(0, v.reviewers, len(fix))

        first_at = self.time[verified] + delay
        o_event = np.concatenate([verified, verified[fix]])
        o_time = np.concatenate([first_at, first_at[fix] + fix_delay])
        o_genuine = np.concatenate([self.genuine[verified] ^ wrong, self.genuine[verified[fix]]])
        o_revision = np.concatenate([np.zeros(k, np.int32), np.ones(len(fix), np.int32)])
        o_reviewer = np.concatenate([reviewer, fix_reviewer])
        o_independent = np.zeros(len(o_event), bool)
        if v.independent_review_prob > 0:  # drawn only then: scenarios without them keep their output
            again = np.flatnonzero(rng.random(k) < v.independent_review_prob)
            again_wrong = rng.random(len(again)) < v.error_prob
            again_delay = _lognormal_us(rng, v.delay_hours, len(again))
            # another reviewer than the first verdict's (when there is another)
            again_reviewer = (reviewer[again] + 1 + rng.integers(0, max(v.reviewers - 1, 1), len(again))) % v.reviewers
            o_event = np.concatenate([o_event, verified[again]])
            o_time = np.concatenate([o_time, first_at[again] + again_delay])
            o_genuine = np.concatenate([o_genuine, self.genuine[verified[again]] ^ again_wrong])
            o_revision = np.concatenate([o_revision, np.zeros(len(again), np.int32)])
            o_reviewer = np.concatenate([o_reviewer, again_reviewer])
            o_independent = np.concatenate([o_independent, np.ones(len(again), bool)])
        order = np.lexsort((o_independent, o_revision, o_event, o_time))  # arrival order, ties broken stably
        self.o_event = o_event[order]
        self.o_time = o_time[order]
        self.o_genuine = o_genuine[order]
        self.o_revision = o_revision[order]
        self.o_reviewer = o_reviewer[order]
        self.o_independent = o_independent[order]
        self.n_independent = int(o_independent.sum())
        self.o_inclusion = inclusion[self.o_event]
        self.n_outcomes = len(order)
        self.n_corrections = len(fix)
        self.acted = self.single = self.o_second = None
        if v.action_prob > 0:  # its own generator: scenarios without actions keep their output
            self._actions(v, seed)

        width = len(str(max(n - 1, 0)))
        self._id_prefix = f"sim-{seed}-"
        self._id_width = width
        self._dep_json = [json.dumps(d.name) for d in model.deployments]
        self._algo_json = [json.dumps(a) for a in model.algorithms]
        self._thr_json = [repr(float(d.threshold)) for d in model.deployments]
        self._reviewer_width = len(str(max(v.reviewers - 1, 0)))

    def _actions(self, v, seed: int) -> None:
        """Per event, whether it was acted on (a verified identification search that returned a
        match, with probability ``action_prob``) and confirmed by one verifier only; per verdict, the
        second verifier (another reviewer than its own)."""
        rng = np.random.default_rng([seed, 0xAC])
        n = len(self.mode)
        searched_match = (self.mode == 1) & self.match
        self.acted = searched_match & (rng.random(n) < v.action_prob)
        self.single = self.acted & (rng.random(n) < v.single_verifier_prob)
        self.o_second = (self.o_reviewer + 1 + rng.integers(0, max(v.reviewers - 1, 1), self.n_outcomes)) % v.reviewers

    def _candidate_lists(self, listed: np.ndarray, lengths: np.ndarray, thresholds: np.ndarray, seed: int) -> None:
        """Candidate lists of the searches ``listed``, as a search service returns them: the
        candidates at or above the threshold, best first, at most the deployment's list_length.

        The calibrated score stays the one that decides the error: a non-mated search's best
        impostor (P(listed) = FPIR), a mated search's mate (P(mate below threshold) = FNIR). Other
        impostors score below the best by exponential gaps; in a tenth of mated searches one
        impostor outscores the mate, which is then listed at rank 2 (list_length >= 2 keeps FNIR
        at rank <= list_length calibrated; rank-1 misses are more frequent)."""
        rng = np.random.default_rng([seed, 0x1D])
        m, width = len(listed), int(lengths.max())
        genuine = self.genuine[listed]
        top = self.score[listed]
        outranked = genuine & (rng.random(m) < 0.1)
        gaps = rng.exponential(0.5, (m, width))
        scores = top[:, None] - np.cumsum(gaps, axis=1) + gaps[:, :1]  # column 0: the calibrated score
        scores[outranked, 1:] = scores[outranked, :-1]
        scores[outranked, 0] = top[outranked] + gaps[outranked, 0]  # an impostor above the mate
        scores = np.round(scores, SCORE_DECIMALS)
        within = np.arange(width)[None, :] < lengths[:, None]
        above = (scores >= thresholds[:, None]) & within
        count = above.sum(axis=1)  # a prefix: scores do not increase with rank
        mate_at = np.where(genuine, outranked.astype(np.int64), -1)  # 0-based position of the mate
        mate_rank = np.where(genuine & (mate_at < count), mate_at + 1, 0)
        other = rng.choice(self.model.n_cells, (m, width), p=self.model.cell_prob)
        cells = self._cell_json
        fmt = f"%.{SCORE_DECIMALS}f"
        sizes = {d: dep.gallery_size for d, dep in enumerate(self.model.deployments)}
        for j, i in enumerate(listed.tolist()):
            entries = []
            for k in range(int(count[j])):
                if k == mate_at[j]:
                    group = self.cell[i]
                elif k == 0:
                    group = self.reference[i]  # the best impostor: the scenario's reference demographics
                else:
                    group = other[j, k]
                entries.append(f'{{"candidate_id":"cand-{i}-{k + 1}","groups":{cells[group]},"rank":{k + 1},'
                               f'"score":{fmt % scores[j, k]}}}')
            size = sizes[int(self.deployment[i])]
            self._search_json[i] = (f'"candidates":[{",".join(entries)}],',
                                    (f'"gallery_size":{size},' if size is not None else "")
                                    + f'"list_length":{int(lengths[j])},')
        self.score[listed] = scores[:, 0]
        self.match[listed] = count > 0
        self.hit[listed] = np.where(genuine, mate_rank > 0, count > 0)
        self.mate_rank[listed] = mate_rank

    def _returning_subjects(self, z: np.ndarray, subjects, seed: int, cells: int) -> np.ndarray:
        """Each event's probe drawn among its cell's subjects; their shared latent shift mixed into
        the score noise (still standard normal: the rates stay calibrated). Keeps the subjects'
        pseudonymous keys (a keyed BLAKE2b of cell and subject: no id leaves the simulator)."""
        sub_rng = np.random.default_rng([seed, 0x5B])
        per_group, rho = subjects.per_group, subjects.correlation
        subject = self.cell.astype(np.int64) * per_group + sub_rng.integers(0, per_group, len(z))
        latent = sub_rng.standard_normal(cells * per_group)
        used, self._cluster = np.unique(subject, return_inverse=True)
        key = seed.to_bytes(8, "little")
        self._cluster_json = [f'"cluster_id":"{hashlib.blake2b(str(u).encode(), key=key, digest_size=8).hexdigest()}",'
                              for u in used.tolist()]
        return np.sqrt(1 - rho) * z + np.sqrt(rho) * latent[subject]

    @property
    def event_ids(self) -> list[str]:
        return [self._event_id(i) for i in range(self.n_events)]

    def _event_id(self, i: int) -> str:
        return f"{self._id_prefix}{i:0{self._id_width}d}"

    def event_lines(self, idx: Iterable[int] | np.ndarray) -> list[bytes]:
        """Match events ``idx`` as compact JSON (no trailing newline)."""
        idx = np.asarray(idx if isinstance(idx, np.ndarray) else list(idx), dtype=np.int64)
        stamps = _stamps(self.time[idx])
        dep, algo, cell, ref = (self.deployment[idx].tolist(), self.algorithm[idx].tolist(),
                                self.cell[idx].tolist(), self.reference[idx].tolist())
        mode, match, score = self.mode[idx].tolist(), self.match[idx].tolist(), self.score[idx].tolist()
        dj, aj, tj, cj = self._dep_json, self._algo_json, self._thr_json, self._cell_json
        prefix, w = self._id_prefix, self._id_width
        fmt = f"%.{SCORE_DECIMALS}f"
        clusters = ([self._cluster_json[c] for c in self._cluster[idx].tolist()] if self._cluster_json is not None
                    else [""] * len(idx))
        searches, plain = self._search_json, ("", "")
        out = []
        for j, i in enumerate(idx.tolist()):
            listed, bounds = searches.get(i, plain)
            out.append((
                f'{{"algorithm":{aj[algo[j]]},{listed}{clusters[j]}"decision":"{"match" if match[j] else "non_match"}",'
                f'"deployment":{dj[dep[j]]},"event_id":"{prefix}{i:0{w}d}",{bounds}"mode":"{MODES[mode[j]]}",'
                f'"occurred_at":"{stamps[j]}","reference":{cj[ref[j]]},"score":{fmt % score[j]},'
                f'"subject":{cj[cell[j]]},"threshold":{tj[dep[j]]}}}'
            ).encode())
        return out

    def outcome_lines(self, idx: Iterable[int] | np.ndarray) -> list[bytes]:
        """Verified outcomes at positions ``idx`` of the arrival order, as compact JSON."""
        idx = np.asarray(idx if isinstance(idx, np.ndarray) else list(idx), dtype=np.int64)
        stamps = _stamps(self.o_time[idx])
        event, genuine = self.o_event[idx].tolist(), self.o_genuine[idx].tolist()
        revision, reviewer = self.o_revision[idx].tolist(), self.o_reviewer[idx].tolist()
        inclusion, independent = self.o_inclusion[idx].tolist(), self.o_independent[idx].tolist()
        # a verdict "mated" on a truly mated search names the mate's rank when the mate was listed
        ranks = np.where(self.o_genuine[idx] & ~self.o_independent[idx] & self.genuine[self.o_event[idx]],
                         self.mate_rank[self.o_event[idx]], 0).tolist()
        mates = [f'"mate_rank":{rank},' if rank else "" for rank in ranks]
        prefix, w, rw = self._id_prefix, self._id_width, self._reviewer_width
        actions, verifiers = [""] * len(idx), [""] * len(idx)  # keys in sorted order, as everywhere here
        if self.acted is not None:  # a search's primary verdicts name their verifiers and the action
            events = self.o_event[idx]
            searches = (self.mode[events] == 1) & ~self.o_independent[idx]
            acted, single = self.acted[events].tolist(), self.single[events].tolist()
            second = self.o_second[idx].tolist()
            for j in np.flatnonzero(searches).tolist():
                names = [f'"rev-{reviewer[j]:0{rw}d}"']
                if acted[j] and not single[j]:
                    names.append(f'"rev-{second[j]:0{rw}d}"')
                actions[j] = f'"action_taken":{"true" if acted[j] else "false"},'
                verifiers[j] = f'"verifiers":[{",".join(names)}],'
        return [(
            f'{{{actions[j]}"event_id":"{prefix}{event[j]:0{w}d}","inclusion_prob":{inclusion[j]!r},'
            f'{mates[j]}'
            f'{_INDEPENDENT_FIELD if independent[j] else ""}'
            f'"reviewer":"rev-{reviewer[j]:0{rw}d}","revision":{revision[j]},'
            f'"truth":"{"genuine" if genuine[j] else "impostor"}",{verifiers[j]}"verified_at":"{stamps[j]}"}}'
        ).encode() for j in range(len(idx))]

    def event_keys(self, idx: Iterable[int]) -> list[bytes]:
        return [self._event_id(int(i)).encode() for i in idx]

    def outcome_keys(self, idx: Iterable[int]) -> list[bytes]:
        return [self._event_id(int(e)).encode() for e in self.o_event[np.asarray(list(idx), dtype=np.int64)]]

    # ---- ground truth ----------------------------------------------------------------------------

    def _counts(self) -> np.ndarray:
        """``[4, segment, deployment, algorithm, mode, cell]``: impostors, false matches, genuines, false non-matches."""
        m = self.model
        shape = (len(m.boundaries) - 1, len(m.deployments), len(m.algorithms), 2, m.n_cells)
        flat = np.ravel_multi_index((self.segment, self.deployment, self.algorithm, self.mode, self.cell), shape)
        size = int(np.prod(shape))
        imp, gen = ~self.genuine, self.genuine
        counts = [np.bincount(flat[mask], minlength=size) for mask in
                  (imp, imp & self.match, gen, gen & ~self.hit)]
        return np.stack(counts).reshape((4, *shape))

    def truth(self) -> dict[str, Any]:
        """The ground truth: true per-group rates by time segment, drifts, and realized counts.

        ``groups`` has one row per (segment, deployment, algorithm, mode, attribute, label) with
        traffic; attribute and label ``"*"`` is the whole population. ``target_fmr`` /
        ``target_fnmr`` are the true rates (FPIR / FNIR in identification mode); ``impostors``,
        ``false_matches``, ``genuines``, ``false_non_matches`` count every generated event
        (verified or not). ``cells`` has the same per full intersection of labels.
        """
        m = self.model
        counts = self._counts()
        segments = [{"index": s, "start": format_timestamp(a), "end": format_timestamp(b)}
                    for s, (a, b) in enumerate(zip(m.boundaries[:-1], m.boundaries[1:]))]
        groups, cells = [], []
        for s, d, a, mode in np.ndindex(counts.shape[1:5]):
            c = counts[:, s, d, a, mode]
            if c[0].sum() + c[2].sum() == 0:
                continue
            key = {"segment": s, "deployment": m.deployments[d].name, "algorithm": m.algorithms[a], "mode": MODES[mode]}
            fm, fnm = m.rates[s, 0, d, a, mode], m.rates[s, 1, d, a, mode]
            for (attribute, label, t_fm), (_, _, t_fnm) in zip(m.group_targets(fm), m.group_targets(fnm)):
                mask = np.ones(m.n_cells, bool) if attribute == OVERALL else m.cell_mask({attribute: label})
                groups.append({**key, "attribute": attribute, "label": label,
                               "target_fmr": _round(t_fm), "target_fnmr": _round(t_fnm),
                               **_count_fields(c[:, mask].sum(axis=1))})
            for cell in range(m.n_cells):
                cells.append({**key, "subject": dict(zip(m.attribute_names, m.cell_labels[cell])),
                              "target_fmr": _round(fm[cell]), "target_fnmr": _round(fnm[cell]),
                              **_count_fields(c[:, cell])})
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "start": format_timestamp(self.scenario.start),
            "end": format_timestamp(self.scenario.end),
            "events": self.n_events,
            "outcomes": self.n_outcomes,
            "corrections": self.n_corrections,
            **({"independent_reviews": self.n_independent} if self.n_independent else {}),
            "score_model": "impostor ~ Normal(threshold - isf(fmr), 1), genuine ~ Normal(threshold + isf(fnmr), 1); "
                           "match when score >= threshold",
            "drifts": [self._drift_truth(x) for x in sorted(self.scenario.drifts, key=lambda x: x.at)],
            "segments": segments,
            "groups": groups,
            "cells": cells,
            "scenario_spec": self.scenario.to_dict(),
        }

    def _drift_truth(self, drift: RateDrift | Rollout) -> dict[str, Any]:
        out: dict[str, Any] = {"name": drift.name, "kind": drift.kind, "at": format_timestamp(drift.at),
                               "until": format_timestamp(drift.until) if drift.until else None}
        m = self.model
        if isinstance(drift, Rollout):
            deps = [d for d, dep in enumerate(m.deployments) if drift.deployments is None or dep.name in drift.deployments]
            out.update({"from": drift.source, "to": drift.target, "ramp_hours": drift.ramp_hours,
                        "deployments": [m.deployments[d].name for d in deps]})
            # The rates of the deployments' traffic change with the algorithm (drifts at `at` applied).
            table, a0, a1 = m.rate_table(drift.at), m.algorithms.index(drift.source), m.algorithms.index(drift.target)
            out["effects"] = [
                {"deployment": m.deployments[d].name, "mode": MODES[mode], "metric": metric,
                 "attribute": attribute, "label": label, "before": _round(before), "after": _round(after),
                 "ratio": _round(after / before)}
                for d in deps for mode in range(2) for k, metric in enumerate(METRICS)
                for (attribute, label, before), (_, _, after) in zip(m.group_targets(table[k, d, a0, mode]),
                                                                     m.group_targets(table[k, d, a1, mode]))
            ]
            return out
        out.update({"metric": drift.metric, "factor": drift.factor, "group": drift.group,
                    "deployments": list(drift.deployments) if drift.deployments else None,
                    "algorithms": list(drift.algorithms) if drift.algorithms else None,
                    "modes": list(drift.modes) if drift.modes else None})
        # Which groups' true rates the drift changes (a group containing the drifted cells moves too).
        k = METRICS.index(drift.metric)
        with_, without = m.rate_table(drift.at)[k], m.rate_table(drift.at, without=drift)[k]
        effects = []
        for d, a, mode in np.ndindex(with_.shape[:3]):
            for (attribute, label, after), (_, _, before) in zip(m.group_targets(with_[d, a, mode]),
                                                                 m.group_targets(without[d, a, mode])):
                if abs(after / before - 1) > 1e-12:
                    effects.append({"deployment": m.deployments[d].name, "algorithm": m.algorithms[a],
                                    "mode": MODES[mode], "attribute": attribute, "label": label,
                                    "before": _round(before), "after": _round(after), "ratio": _round(after / before)})
        out["effects"] = effects
        return out

    def summary(self) -> dict[str, Any]:
        """Counts, and per (algorithm, mode, group) the realized FMR / FNMR over the whole run vs the target.

        The target is the traffic-weighted mean of the true rates of the segments and
        deployments the group's comparisons fell in.
        """
        acc: dict[tuple, list[float]] = {}
        for row in self.truth()["groups"]:
            key = (row["algorithm"], row["mode"], row["attribute"], row["label"])
            a = acc.setdefault(key, [0, 0, 0.0, 0, 0, 0.0])
            a[0] += row["impostors"]
            a[1] += row["false_matches"]
            a[2] += row["target_fmr"] * row["impostors"]
            a[3] += row["genuines"]
            a[4] += row["false_non_matches"]
            a[5] += row["target_fnmr"] * row["genuines"]
        groups = []
        for (algorithm, mode, attribute, label), (ni, fm, tfm, ng, fnm, tfnm) in acc.items():
            groups.append({"algorithm": algorithm, "mode": mode, "attribute": attribute, "label": label,
                           "impostors": ni, "false_matches": fm,
                           "realized_fmr": _ratio(fm, ni), "target_fmr": _ratio(tfm, ni),
                           "genuines": ng, "false_non_matches": fnm,
                           "realized_fnmr": _ratio(fnm, ng), "target_fnmr": _ratio(tfnm, ng)})
        return {"scenario": self.scenario.name, "seed": self.seed, "events": self.n_events,
                "outcomes": self.n_outcomes, "corrections": self.n_corrections,
                "start": format_timestamp(self.scenario.start), "end": format_timestamp(self.scenario.end),
                "drifts": [{"name": d.name, "kind": d.kind, "at": format_timestamp(d.at)} for d in self.scenario.drifts],
                "groups": groups}


def _round(x: float) -> float:
    return float(f"{float(x):.12g}")  # float noise of the mixtures off, for readable JSON


def _ratio(num: float, den: float) -> float | None:
    return _round(num / den) if den else None


def _count_fields(c: np.ndarray) -> dict[str, int]:
    return {"impostors": int(c[0]), "false_matches": int(c[1]), "genuines": int(c[2]), "false_non_matches": int(c[3])}


def _to_us(t: datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _stamps(us: np.ndarray) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(us.astype("datetime64[us]"), unit="us").tolist()]


def _lognormal_us(rng: np.random.Generator, spec: LogNormal, n: int) -> np.ndarray:
    hours = spec.median * np.exp(spec.sigma * rng.standard_normal(n))
    return np.maximum(1, np.round(hours * _US_PER_HOUR)).astype(np.int64)  # strictly after


def simulate(scenario: Scenario, *, seed: int | None = None, events: int | None = None) -> Simulation:
    """Generate a scenario's events and outcomes (deterministic given the seed).

    Parameters
    ----------
    scenario
        From :func:`load_scenario` or :func:`parse_scenario`.
    seed
        Overrides the scenario's ``seed``.
    events
        Overrides the number of events (the duration stays; the event rate changes).

    Notes
    -----
    The overrides are written into ``Simulation.scenario``, so ``truth.json`` records the run.
    """
    if events is not None:
        if not 1 <= events <= MAX_EVENTS:
            raise ScenarioError("events", f"must be between 1 and {MAX_EVENTS}, got {events}")
        scenario = replace(scenario, events=events, events_per_second=events / (scenario.duration_hours * 3600))
    if seed is not None:
        scenario = replace(scenario, seed=seed)
    return Simulation(scenario, scenario.seed, scenario.n_events)


ProgressFn = Callable[[int], None]  # called with the number of records just written


# ---- command line ----------------------------------------------------------------------------------


