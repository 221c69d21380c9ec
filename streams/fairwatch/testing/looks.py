"""Repeated looks at growing or trailing windows of simulated deployments: how often a status is
ever wrong (``benchmarks/bench_status.py`` and tests/core/test_estimates.py)."""

from __future__ import annotations

import numpy as np

from fairwatch.core.config import CoreConfig
from fairwatch.core.estimates import RateEstimator, Status
from fairwatch.core.groupframe import population_strata, status_families
from fairwatch.core.layout import GENUINE, IMPOSTOR, GroupKey
from fairwatch.testing.oracles import two_phase_strata


def _wrong(status: np.ndarray, truth: float, target: float) -> np.ndarray:
    return ((status == Status.OK) & (truth >= target)) | ((status == Status.ABOVE_TARGET) & (truth <= target))


def _one_look_status(estimates, target: float, min_comparisons: int) -> np.ndarray:
    # the rule before: each rate's own fixed-sample interval against its target
    low = np.array([e.low for e in estimates])
    high = np.array([e.high for e in estimates])
    enough = np.array([e.n >= max(1, min_comparisons) for e in estimates])
    status = np.where(low > target, Status.ABOVE_TARGET, np.where(high <= target, Status.OK, Status.INSUFFICIENT))
    return np.where(enough, status, Status.INSUFFICIENT)


def status_looks(groups: int, impostors: int, genuine: int, target_fmr: float, fmr_factor: float, target_fnmr: float,
                 fnmr_factor: float, pi: float, window: int | None, cv: float, runs: int, looks: int, seed: int,
                 lag: int = 0) -> dict:
    """Simulate ``runs`` deployments of ``groups`` groups (plus the overall row) over ``looks`` looks;
    the arguments and the result's keys are described in ``benchmarks/bench_status.py``. With
    ``lag`` > 0 a look's verified non-matches arrive ``lag`` looks after its matches."""
    rng = np.random.default_rng(seed)
    fmr, fnmr = target_fmr * fmr_factor, target_fnmr * fnmr_factor
    keys = [GroupKey(f"run{r}", "a", "verification", *(("race", f"g{g}") if g < groups else ("*", "*")))
            for r in range(runs) for g in range(groups + 1)]
    config = CoreConfig(target_fmr=target_fmr, target_fnmr=target_fnmr)
    estimator = RateEstimator(config)
    history = np.zeros((looks, runs, groups, 12))
    late = np.zeros((looks, runs, groups, 12))  # verified non-matches, counted `lag` looks later
    ever = np.zeros(runs, bool)
    ever_one_look = np.zeros(runs, bool)
    for look in range(looks):
        size = runs * groups
        if cv > 0:
            shape = 1 / cv**2
            look_fmr = np.clip(fmr * rng.gamma(shape, 1 / shape, size), 0, 1)
            look_fnmr = np.clip(fnmr * rng.gamma(shape, 1 / shape, size), 0, 1)
        else:
            look_fmr, look_fnmr = fmr, fnmr
        now, later = two_phase_strata(rng, size, impostors, look_fmr, genuine, look_fnmr, pi)
        history[look], late[look] = now.reshape(runs, groups, 12), later.reshape(runs, groups, 12)
        first = 0 if window is None else max(0, look + 1 - window)
        counts = history[first:look + 1].sum(axis=0) + late[first:max(first, look + 1 - lag)].sum(axis=0)
        rows = np.concatenate([counts, counts.sum(axis=1, keepdims=True)], axis=1).reshape(-1, 12)
        family = status_families(keys, rows, config)
        strata = population_strata(rows)
        for block, name, target, truth in ((IMPOSTOR, "fmr", target_fmr, fmr), (GENUINE, "fnmr", target_fnmr, fnmr)):
            estimates = estimator.estimate(rows[:, block], target, *strata[name], family=family)
            status = np.array([e.status for e in estimates])
            ever |= _wrong(status, truth, target).reshape(runs, groups + 1).any(axis=1)
            one_look = _one_look_status(estimates, target, config.min_comparisons)
            ever_one_look |= _wrong(one_look, truth, target).reshape(runs, groups + 1).any(axis=1)
            if look == looks - 1:
                judged = np.isin(status, [Status.OK, Status.ABOVE_TARGET])
                judged_one_look = np.isin(one_look, [Status.OK, Status.ABOVE_TARGET])
                if name == "fmr":
                    last, last_one_look = judged, judged_one_look
                else:
                    last, last_one_look = np.concatenate([last, judged]), np.concatenate([last_one_look, judged_one_look])
    return {"ever_wrong": float(ever.mean()), "ever_wrong_one_look": float(ever_one_look.mean()),
            "judged_last_look": float(last.mean()), "judged_last_look_one_look": float(last_one_look.mean()),
            "family": int(family[0])}
