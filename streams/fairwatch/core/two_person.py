"""Two-person verification of acted-on identifications: was each one confirmed by two distinct people?

The EU AI Act (Regulation (EU) 2024/1689, Art. 14(5)) asks that no action be taken on a remote
biometric identification unless at least two natural persons with the competence and authority to
do so separately verified and confirmed it. A verified outcome may say who verified the result
(``verifiers``, pseudonymous ids) and whether action was taken on it (``action_taken``)
(:mod:`fairwatch.contracts.records`). For each deployment, over the identification searches of a
window whose counted verdict (the latest revision of the primary verdict) records an action:

* ``confirmed``: verified by at least two distinct ids (a repeated id counts once);
* ``single``: by one;
* ``unrecorded``: the verdict names no verifiers, so compliance cannot be shown;

and the share confirmed, with a Clopper-Pearson interval: read as the rate at which the
deployment's process confirms acted-on identifications, of which this window's actions are a
sample. Every acted-on identification that is not ``confirmed`` is listed for the auditor (its
event id, the distinct verifiers, the verdict's truth). A window without a recorded action says so
(``status`` ``no_actions``): nothing shows compliance, and nothing shows its absence.

Searches whose verdict records no action (absent, or ``false``) are not judged: the rule is about
actions. 1:1 verification is not an identification and is not judged either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from fairwatch.core.intervals import clopper_pearson

__all__ = ["ActedVerdict", "TwoPersonCompliance", "two_person_compliance"]


@dataclass(frozen=True, slots=True)
class ActedVerdict:
    """An identification search whose counted verdict records an action."""

    deployment: str
    algorithm: str
    event_id: str
    truth: str
    verifiers: Sequence[str]  # as recorded, repeats kept; empty when none were named

    @property
    def distinct(self) -> int:
        return len(set(self.verifiers))

    @property
    def kind(self) -> str:
        """``confirmed``, ``single`` or ``unrecorded``."""
        return "unrecorded" if not self.verifiers else "single" if self.distinct < 2 else "confirmed"


@dataclass(frozen=True)
class TwoPersonCompliance:
    """One deployment's acted-on identifications of a window (module docstring)."""

    deployment: str
    acted: int
    confirmed: int
    single: int
    unrecorded: int
    share: float | None
    low: float
    high: float
    confidence: float
    exceptions: list[ActedVerdict]  # every acted-on identification not confirmed by two people

    @property
    def status(self) -> str:
        """``no_actions`` (nothing to judge), ``compliant`` (every action confirmed) or ``exceptions``."""
        return "no_actions" if self.acted == 0 else "compliant" if self.confirmed == self.acted else "exceptions"

    def to_dict(self) -> dict:
        return {"deployment": self.deployment, "status": self.status, "acted": self.acted,
                "confirmed": self.confirmed, "single": self.single, "unrecorded": self.unrecorded,
                "share": self.share, "share_low": self.low, "share_high": self.high, "confidence": self.confidence,
                "exceptions": [{"event_id": v.event_id, "algorithm": v.algorithm, "truth": v.truth,
                                "verifiers": sorted(set(v.verifiers)), "kind": v.kind} for v in self.exceptions]}


def two_person_compliance(verdicts: Iterable[ActedVerdict], deployments: Iterable[str] = (),
                          confidence: float = 0.95) -> list[TwoPersonCompliance]:
    """Per deployment (those of ``verdicts``, and ``deployments`` even without any action), sorted.

    >>> acted = [ActedVerdict("gate", "a1", "s-1", "genuine", ["v1", "v2"]),
    ...          ActedVerdict("gate", "a1", "s-2", "genuine", ["v1", "v1"]),
    ...          ActedVerdict("gate", "a1", "s-3", "impostor", [])]
    >>> [c] = two_person_compliance(acted)
    >>> c.status, c.acted, c.confirmed, c.single, c.unrecorded, round(c.share, 3)
    ('exceptions', 3, 1, 1, 1, 0.333)
    >>> [(v.event_id, v.kind) for v in c.exceptions]
    [('s-2', 'single'), ('s-3', 'unrecorded')]
    """
    by_deployment: dict[str, list[ActedVerdict]] = {d: [] for d in deployments}
    for verdict in verdicts:
        by_deployment.setdefault(verdict.deployment, []).append(verdict)
    out = []
    for deployment in sorted(by_deployment):
        mine = sorted(by_deployment[deployment], key=lambda v: v.event_id)
        kinds = [v.kind for v in mine]
        confirmed = kinds.count("confirmed")
        low, high = clopper_pearson(confirmed, len(mine), confidence)
        out.append(TwoPersonCompliance(
            deployment, len(mine), confirmed, kinds.count("single"), kinds.count("unrecorded"),
            confirmed / len(mine) if mine else None, float(low), float(high), confidence,
            [v for v in mine if v.kind != "confirmed"]))
    return out
