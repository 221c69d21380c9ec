"""What a policy covers in a store: detection is never silently absent.

A policy whose deployment, algorithms or attribute sets match nothing the store has counted would
run no detector and say nothing; an auditor would then read "no alert" for a window holding a
drift. :func:`policy_coverage` reads what ``group_counts`` holds and either says which groups the
policy watches or raises :class:`PolicyMismatch` naming the value and the nearest known ones.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from fairwatch.detect.policy import Policy
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_counts import counted_deployments, counted_groups

__all__ = ["Coverage", "PolicyMismatch", "policy_coverage"]


class PolicyMismatch(ValueError):
    """The policy names a deployment, algorithm or attribute set the store has not counted."""


@dataclass(frozen=True)
class Coverage:
    """The groups a policy watches in a store, per attribute set."""

    source: str
    deployment: str
    algorithms: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]  # attribute set -> its group labels

    def describe(self) -> str:
        sets = "; ".join(f"{name} ({', '.join(labels)})" for name, labels in self.groups.items())
        return (f"policy {self.source} (deployment {self.deployment}, algorithms {', '.join(self.algorithms)}):"
                f" {sum(len(labels) for labels in self.groups.values())} groups: {sets}")

    def to_dict(self) -> dict:
        return {"policy": self.source, "deployment": self.deployment, "algorithms": list(self.algorithms),
                "groups": {name: list(labels) for name, labels in self.groups.items()}}


def _unknown(kind: str, value: str, known: list[str]) -> PolicyMismatch:
    near = difflib.get_close_matches(value, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    listed = ", ".join(sorted(known)[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
    return PolicyMismatch(f"{kind} {value!r} is not in the store (known: {listed}){hint}")


def policy_coverage(store: Store, policy: Policy) -> Coverage:
    """The groups ``policy`` watches among those counted in ``store``, or :class:`PolicyMismatch`."""
    prefix = f"{policy.source}: "
    deployments = counted_deployments(store)
    if policy.deployment not in deployments:
        raise PolicyMismatch(prefix + str(_unknown("deployment", policy.deployment, deployments)))
    rows = counted_groups(store, policy.deployment)
    algorithms = sorted({algorithm for algorithm, _, _ in rows})
    for algorithm in policy.algorithms or ():
        if algorithm not in algorithms:
            raise PolicyMismatch(prefix + str(_unknown("algorithm", algorithm, algorithms)))
    watched = set(policy.algorithms or algorithms)
    counted: dict[str, set[str]] = {}
    for algorithm, attribute, label in rows:
        if algorithm in watched and attribute != "*":
            counted.setdefault(attribute, set()).add(label)
    for name in policy.attribute_sets:
        if name not in counted:
            mismatch = _unknown("attribute set", name, sorted(counted))
            if "&" in name:  # an intersection is counted only when the worker or replay is told to
                mismatch = PolicyMismatch(f"{mismatch}; intersections are counted when the worker or replay runs"
                                          f" with --intersections {name} (FAIRWATCH_INTERSECTIONS)")
            raise PolicyMismatch(prefix + str(mismatch))
    groups = {name: tuple(sorted(counted[name])) for name in policy.attribute_sets}
    return Coverage(policy.source, policy.deployment, tuple(sorted(watched)), groups)
