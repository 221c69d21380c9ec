"""Simulated acquisition attempts: before each event's probe was acquired, the tries that failed.

Each event of a :class:`~fairwatch.sim.simulator.Simulation` is an encounter that ended with a face
acquired, within the capture transaction's ``max_attempts`` tries. Before it, the camera failed
``F`` times, each try failing with the encounter's own probability ``p`` and the first success
ending the encounter: ``F`` is geometric truncated below ``max_attempts`` (``c``), ``P(F = f) =
p^f / (1 + p + ... + p^(c-1))`` for ``f < c`` (an encounter whose every try fails makes no event
and is not simulated). ``p`` is the cell's rate (:class:`~fairwatch.sim.scenario.AcquisitionSpec`),
or with ``encounter_correlation`` ``rho > 0`` drawn from a Beta of mean ``m`` (the cell's rate) and
``a = m (1 - rho) / rho``, ``b = (1 - m)(1 - rho) / rho``.

The true attempt-level rate of a cell (the share of its attempts that fail, in the long run) is
``E[F] / E[F + 1]``, the expectations over ``p``'s Beta computed by quadrature (:func:`true_fta`);
a group's pools its cells by their expected attempts. Without the cap the Beta's tail near 1 makes
some encounters retry hundreds of times (``F`` has a finite variance only when ``b > 2``), a regime
``benchmarks/bench_acquisition.py`` measures as a limit.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from datetime import datetime, timedelta, timezone

import numpy as np
from scipy import integrate, stats

from fairwatch.contracts.records import format_timestamp
from fairwatch.core.layout import OVERALL
from fairwatch.sim.scenario import AcquisitionSpec
from fairwatch.sim.uses import use_at

__all__ = ["AcquisitionAttempts", "simulate_acquisitions", "true_fta", "truth_records"]

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
RETRY_US = 2 * _US  # a failed try comes this long before the next


class AcquisitionAttempts:
    """The attempts as columns; :meth:`lines` renders them (compact JSON, keys sorted)."""

    def __init__(self, sim, spec: AcquisitionSpec, seed: int):
        self.sim, self.spec = sim, spec
        model = sim.model
        rng = np.random.default_rng([seed, 0xACC])
        m = model.base_rates(spec.fta)[sim.cell]
        rho = spec.encounter_correlation
        if rho > 0:
            p = rng.beta(*_beta(m, rho))
        else:
            p = m
        p = np.clip(p, 0.0, 1 - 1e-9)
        self.failures = _truncated_geometric(p, spec.max_attempts, rng.random(sim.n_events))
        self.labelled = rng.random(sim.n_events) < spec.labelled_share
        total = self.failures + 1
        self.event = np.repeat(np.arange(sim.n_events), total)
        self.try_index = np.arange(len(self.event)) - np.repeat(np.cumsum(total) - total, total)
        self.failed = self.try_index < self.failures[self.event]
        self.low_quality = self.failed & (rng.random(len(self.event)) < spec.low_quality_share)
        self.n_attempts = len(self.event)

    def occurred_us(self) -> np.ndarray:
        """Each attempt's time (epoch microseconds): its encounter's event time, less ``RETRY_US``
        for each try still to come."""
        before = self.failures[self.event] - self.try_index  # tries still to come in the encounter
        return self.sim.time[self.event].astype(np.int64) - before * RETRY_US

    def attempt_ids(self) -> list[str]:
        """Each attempt's ``attempt_id`` (its Kafka key): the event's id and the try's index."""
        sim = self.sim
        return [f"{sim._event_id(i)}-t{t}" for i, t in zip(self.event.tolist(), self.try_index.tolist())]

    def lines(self) -> list[bytes]:
        sim, model = self.sim, self.sim.model
        times, ids = self.occurred_us().tolist(), self.attempt_ids()
        out = []
        for k in range(self.n_attempts):
            i = int(self.event[k])
            event_id = sim._event_id(i)
            record: dict[str, Any] = {
                "attempt_id": ids[k],
                "occurred_at": format_timestamp(_from_us(times[k])),
                "deployment": model.deployments[sim.deployment[i]].name,
                "algorithm": model.algorithms[sim.algorithm[i]],
                "outcome": ("low_quality" if self.low_quality[k] else "no_face") if self.failed[k] else "acquired",
            }
            if self.labelled[i]:
                record["subject"] = dict(zip(model.attribute_names, model.cell_labels[sim.cell[i]]))
            use = use_at(sim.scenario, record["deployment"], _from_us(times[k]))
            if use is not None:
                record["use_id"] = use
            if self.spec.keyed:
                record["cluster_id"] = hashlib.blake2b(f"{sim.seed}:{event_id}".encode(), digest_size=16).hexdigest()
            out.append(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        return out


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def simulate_acquisitions(sim, seed: int | None = None) -> AcquisitionAttempts:
    """The attempts of ``sim``'s scenario (its ``acquisition`` block), drawn with ``seed`` (default the simulation's)."""
    spec = sim.scenario.acquisition
    if spec is None:
        raise ValueError("the scenario has no acquisition block")
    return AcquisitionAttempts(sim, spec, sim.seed if seed is None else seed)


def _beta(m: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    return m * (1 - rho) / rho, (1 - m) * (1 - rho) / rho


def _truncated_geometric(p: np.ndarray, cap: int, u: np.ndarray) -> np.ndarray:
    """Failures before the first success, fewer than ``cap``, by inverting ``P(F <= f) = (1 - p^(f+1))
    / (1 - p^cap)`` at uniforms ``u`` (log1p / expm1: ``p`` may lie within 1e-9 of 1)."""
    p = np.broadcast_to(np.asarray(p, dtype=float), u.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(p)
        tail = -np.expm1(cap * log_p)  # 1 - p^cap
        f = np.ceil(np.log1p(-u * tail) / log_p) - 1
    f = np.where(p > 0, f, 0.0)
    return np.clip(np.nan_to_num(f, nan=0.0), 0, cap - 1).astype(np.int64)


def _mean_failures(p: float, cap: int) -> float:
    """``E[F | p]`` of the truncated geometric: ``sum f p^f / sum p^f`` over ``f < cap``."""
    if p <= 0:
        return 0.0
    weights = np.exp(np.arange(cap) * np.log(p))
    return float(np.arange(cap) @ weights / weights.sum())


@functools.lru_cache(maxsize=4096)
def _expected_failures(m: float, rho: float, cap: int) -> float:
    """``E[F]`` over the encounter's ``p``: ``m`` itself, or its Beta, integrated over the Beta's
    quantiles (a bounded integrand, where the density is not)."""
    if rho <= 0:
        return _mean_failures(m, cap)
    law = stats.beta(*_beta(np.float64(m), rho))
    # where the cap starts to bind (p near 1 - 1/cap) is a sliver of quantiles near 1: split there
    edges = sorted({0.0, 1.0, *(float(law.cdf(1 - k / cap)) for k in (10.0, 1.0, 0.1) if k < cap)})
    return sum(integrate.quad(lambda u: _mean_failures(float(law.ppf(u)), cap), lo, hi, limit=200,
                              epsabs=1e-12, epsrel=1e-9)[0] for lo, hi in zip(edges, edges[1:]) if hi > lo)


def true_fta(model, spec: AcquisitionSpec) -> dict[tuple[str, str], float]:
    """(attribute, group) -> the true attempt-level FTA (module docstring), overall as ``("*", "*")``."""
    m = model.base_rates(spec.fta)
    failures = np.array([_expected_failures(float(x), spec.encounter_correlation, spec.max_attempts) for x in m])
    attempts = failures + 1
    weight = model.cell_prob
    groups = {(OVERALL, OVERALL): np.ones(model.n_cells, dtype=bool)}
    for k, attribute in enumerate(model.attribute_names):
        for label in model.labels[k]:
            groups[(attribute, label)] = model.cell_mask({attribute: label})
    return {g: float((weight * failures)[mask].sum() / (weight * attempts)[mask].sum()) for g, mask in groups.items()}


def truth_records(model, spec: AcquisitionSpec) -> list[dict[str, Any]]:
    """The true FTA per group as ``truth.json`` records it."""
    return [{"attribute": a, "group": g, "fta": rate} for (a, g), rate in true_fta(model, spec).items()]
