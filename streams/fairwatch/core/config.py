"""Settings of the statistics core. Plain data; the CLI, the worker and tests build it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

DAY_SECONDS = 86_400
# a verdict (or review) may be stamped up to this long before its event's time: reads of verdicts
# from a time on start this much earlier
VERDICT_CLOCK_SKEW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """How outcomes are joined, grouped and judged.

    Parameters
    ----------
    bucket_seconds
        Width of the event-time buckets counts are kept in (any window is a sum of buckets).
    ttl_seconds
        An unpaired event or outcome is dropped (and counted as expired) after this long.
    intersections
        Attribute sets counted as intersections beside every single attribute, e.g.
        ``(("sex", "race"),)`` gives groups such as ``sex&race = F&Black``. Order is kept.
    confidence
        Level of the per-group intervals.
    target_fmr
        Intended false match rate of the deployment, if it declares one: used for the
        ``insufficient`` rule and for realized-vs-intended comparisons.
    target_fnmr
        The same for the false non-match rate.
    min_comparisons
        Fewer comparisons than this in a population gives status ``insufficient`` whatever
        the target (a floor for groups of a deployment without a declared target).
    fdr_alpha, ir_alpha, garbe_alpha
        Weights of the FMR term in FDR, IR and GARBE (ISO/IEC 19795-10 drafts; 0.5 by default).
    policy_ratio
        The highest max/min ratio of a rate across the groups of an attribute set that the
        deployment's policy allows (a policy file's ``policy_ratio``); None when it sets none.
    ratio_floor_fmr, ratio_floor_fnmr
        Declared floors of the rates in the ratio differentials (max/min, Max/GeoMean, IR): each
        rate, and each bound of its interval, counts as at least the floor there (a policy file's
        ``ratio_floor``). With a floor every ratio has a finite upper bound, also when a group has
        no error; without one a ratio whose smallest rate may be 0 has none. None: no floor.
    """

    bucket_seconds: int = 60
    ttl_seconds: int = 30 * DAY_SECONDS
    intersections: tuple[tuple[str, ...], ...] = field(default=())
    confidence: float = 0.95
    target_fmr: float | None = None
    target_fnmr: float | None = None
    min_comparisons: int = 30
    fdr_alpha: float = 0.5
    ir_alpha: float = 0.5
    garbe_alpha: float = 0.5
    policy_ratio: float | None = None
    ratio_floor_fmr: float | None = None
    ratio_floor_fnmr: float | None = None

    def __post_init__(self) -> None:
        if self.bucket_seconds <= 0 or DAY_SECONDS % self.bucket_seconds:
            raise ValueError(f"bucket_seconds must divide a day, got {self.bucket_seconds}")
        if self.ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {self.ttl_seconds}")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")
        if self.policy_ratio is not None and not self.policy_ratio >= 1:
            raise ValueError(f"policy_ratio must be at least 1, got {self.policy_ratio}")
        for name in ("target_fmr", "target_fnmr", "ratio_floor_fmr", "ratio_floor_fnmr"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        for name in ("fdr_alpha", "ir_alpha", "garbe_alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for combo in self.intersections:
            if len(combo) < 2 or len(set(combo)) != len(combo):
                raise ValueError(f"an intersection needs two or more distinct attributes, got {combo}")
