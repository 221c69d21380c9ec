"""Simulated acquisition attempts: before each event's probe was acquired, the tries that failed.

Each event of a :class:`~fairwatch.sim.simulator.Simulation` is an encounter that ended with a face
acquired. Before it, the camera failed ``F`` times, each try failing with the encounter's own
probability ``p`` and the first success ending the encounter: ``F`` is geometric, ``P(F = f) =
p^f (1 - p)``. ``p`` is the cell's rate (:class:`~fairwatch.sim.scenario.AcquisitionSpec`), or with
``encounter_correlation`` ``rho > 0`` drawn from a Beta of mean ``m`` (the cell's rate) and
``a = m (1 - rho) / rho``, ``b = (1 - m)(1 - rho) / rho``.

The true attempt-level rate of a cell (the share of its attempts that fail, in the long run) is
``E[F] / E[F + 1]``: ``m`` when ``rho = 0``, and ``a / (a + b - 1)`` under the Beta (``E[p/(1-p)] =
a / (b - 1)``, ``E[1/(1-p)] = (a + b - 1) / (b - 1)``); a group's pools its cells by their expected
attempts (:func:`true_fta`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from datetime import datetime, timedelta, timezone

import numpy as np

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
        self.failures = rng.negative_binomial(1, 1 - p)  # failures before the first success
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
    a, b = m * (1 - rho) / rho, (1 - m) * (1 - rho) / rho
    if np.any(b <= 1):
        raise ValueError(f"acquisition.encounter_correlation {rho} with an FTA up to {m.max():.3g} gives encounters "
                         "that retry without end on average (the Beta's b must exceed 1): lower either")
    return a, b


def true_fta(model, spec: AcquisitionSpec) -> dict[tuple[str, str], float]:
    """(attribute, group) -> the true attempt-level FTA (module docstring), overall as ``("*", "*")``."""
    m = model.base_rates(spec.fta)
    rho = spec.encounter_correlation
    if rho > 0:
        a, b = _beta(m, rho)
        failures, attempts = a / (b - 1), (a + b - 1) / (b - 1)
    else:
        failures, attempts = m / (1 - m), 1 / (1 - m)
    weight = model.cell_prob
    groups = {(OVERALL, OVERALL): np.ones(model.n_cells, dtype=bool)}
    for k, attribute in enumerate(model.attribute_names):
        for label in model.labels[k]:
            groups[(attribute, label)] = model.cell_mask({attribute: label})
    return {g: float((weight * failures)[mask].sum() / (weight * attempts)[mask].sum()) for g, mask in groups.items()}


def truth_records(model, spec: AcquisitionSpec) -> list[dict[str, Any]]:
    """The true FTA per group as ``truth.json`` records it."""
    return [{"attribute": a, "group": g, "fta": rate} for (a, g), rate in true_fta(model, spec).items()]
