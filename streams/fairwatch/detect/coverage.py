"""What a policy covers in a store: detection is never silently absent.

A policy whose deployment, algorithms or attribute sets match nothing the store has counted would
run no detector and say nothing; an auditor would then read "no alert" for a window holding a
drift. :func:`policy_coverage` reads what ``group_counts`` holds and either says which groups the
policy watches or raises :class:`PolicyMismatch` naming the value and the nearest known ones.
"""

from __future__ import annotations

import difflib
import shlex
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
        if not self.groups:
            return (f"policy {self.source} (deployment {self.deployment}): label_backlog only, no verified outcome"
                    " counted yet")
        sets = "; ".join(f"{name} ({', '.join(labels)})" for name, labels in self.groups.items())
        return (f"policy {self.source} (deployment {self.deployment}, algorithms {', '.join(self.algorithms)}):"
                f" {sum(len(labels) for labels in self.groups.values())} groups counted in the store: {sets}")

    def to_dict(self) -> dict:
        return {"policy": self.source, "deployment": self.deployment, "algorithms": list(self.algorithms),
                "groups": {name: list(labels) for name, labels in self.groups.items()}}


def _unknown(kind: str, value: str, known: list[str], taken: set[str] = frozenset()) -> PolicyMismatch:
    near = difflib.get_close_matches(value, [k for k in known if k not in taken], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    listed = ", ".join(sorted(known)[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
    return PolicyMismatch(f"{kind} {value!r} is not in the store (known: {listed}){hint}")


def policy_coverage(store: Store, policy: Policy, other_policies: set[str] = frozenset()) -> Coverage:
    """The groups ``policy`` watches among those counted in ``store``, or :class:`PolicyMismatch`
    (``other_policies``: deployments that have a policy of their own, never suggested)."""
    prefix = f"{policy.source}: "
    deployments = counted_deployments(store)
    if policy.deployment not in deployments:
        if policy.label_backlog is not None and store.query(
                "SELECT count() FROM match_events WHERE deployment = %(d)s", {"d": policy.deployment})[0][0]:
            # matches without any verified outcome: the backlog rule still applies (the worst backlog)
            return Coverage(policy.source, policy.deployment, (), {})
        raise PolicyMismatch(prefix + str(_unknown("deployment", policy.deployment, deployments, other_policies)))
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
    missing = [name for name in policy.attribute_sets if name not in counted]
    if missing:
        same = {frozenset(name.split("&")): name for name in counted if "&" in name}
        reasons = []
        for name in missing:
            if "&" not in name:
                reasons.append(str(_unknown("attribute set", name, sorted(counted))))
            elif frozenset(name.split("&")) in same:  # the same intersection, counted in another order
                reasons.append(f"intersection {name!r} is counted as {same[frozenset(name.split('&'))]!r}:"
                               f" write it in that order")
            else:  # an intersection is counted only when the worker or replay is told to
                reasons.append(f"intersection {name!r} is not counted: run the worker or replay with"
                               f" --intersections {shlex.quote(name)} (FAIRWATCH_INTERSECTIONS)")
        raise PolicyMismatch(prefix + "; ".join(reasons))
    groups = {name: tuple(sorted(counted[name])) for name in policy.attribute_sets}
    return Coverage(policy.source, policy.deployment, tuple(sorted(watched)), groups)
